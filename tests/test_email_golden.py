"""Golden files of the rendered alert emails (text and HTML), one per rule kind and language.

A template change shows up here as a diff a reviewer reads; after checking it, regenerate with
``ALUMON_UPDATE_GOLDEN=1 make test PYTEST_ARGS=tests/test_email_golden.py`` and commit the files."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alumon.alert import Alert, AlertState, Audience, Severity
from alumon.config import load_site
from analytics.email import Addressee, Notice, render
from tests.conftest import EXAMPLE_SITE

GOLDEN = Path(__file__).parent / "golden" / "emails"
START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
EVIDENCE = "time_utc,value,unit,completeness,limit\n2026-11-24T08:00:00Z,40.2,mg/m3,1.0000,35\n"


def notice(rule: str, unit: str, kpi: str, value: float, unit_of: str, limit: float, limit_name: str,
           source: str, window: str, zh: str, en: str, *, state: AlertState = AlertState.FIRING,
           severity: Severity = Severity.CRITICAL, kind: str = "limit", reminder: int = 0,
           suppresses: tuple[str, ...] = (), minutes: int = 12, evidence: str = "") -> Notice:
    end = START + timedelta(minutes=minutes)
    return Notice(Alert(
        id=f"gx-demo-{rule}-{unit}-20261124T080000Z", site="gx-demo", rule=rule, unit_process=unit,
        severity=severity, audience=Audience.BOTH, state=state, kpi=kpi, value=value, unit=unit_of, limit=limit,
        limit_name=limit_name, limit_source=source, window=window, first_seen=START, last_seen=end,
        resolved_at=end if state is AlertState.RESOLVED else None, kind=kind, description_zh=zh,
        description_en=en, reminder=reminder, suppresses=suppresses, completeness=0.97), evidence)


LEVEL3 = dict(rule="energy_above_level3", unit="potline-1", kpi="al_liquid_ac", value=13612.4, unit_of="kWh/t",
              limit=13350, limit_name="GB 21346-2022 level 3", window="rolling_3600s",
              source="GB 21346-2022 电解铝和氧化铝单位产品能源消耗限额 §4.1 Table 1 (2022), to_verify",
              zh="铝液交流电耗超过 GB 21346-2022 3级限额",
              en="aluminium-liquid AC energy above GB 21346-2022 level 3")
SO2_HOURLY = dict(rule="emission_hourly_above_ultra_low", unit="calciner-stack", kpi="so2_hourly", value=40.2,
                  unit_of="mg/m3", limit=35, limit_name="ultra-low so2", window="hour",
                  source="Ultra-low emission placeholder PM/SO2/NOx 10/35/50 mg/m3 (2019), to_verify",
                  zh="SO₂ 有效小时均值超过超低排放限值", en="valid hourly mean of SO₂ above the ultra-low limit")

CASES = {
    "energy_level3_firing_regulator_zh": ([notice(**LEVEL3)], "zh", True),  # type: ignore[arg-type]
    "energy_level3_resolved_engineer_en": ([notice(**LEVEL3, state=AlertState.RESOLVED)], "en", False),  # type: ignore[arg-type]
    "energy_benchmark_reminder_engineer_zh": ([notice(
        "energy_above_benchmark", "potline-2", "al_liquid_ac", 13120.0, "kWh/t", 13000, "NDRC benchmark 标杆",
        "国家发展改革委 工业重点领域能效标杆水平和基准水平 (2023)", "rolling_3600s",
        "铝液交流电耗高于国家发改委能效标杆水平", "aluminium-liquid AC energy above the NDRC benchmark",
        severity=Severity.WARNING, reminder=2, minutes=490)], "zh", False),
    "emission_hourly_regulator_zh": ([notice(**SO2_HOURLY, evidence=EVIDENCE)], "zh", True),  # type: ignore[arg-type]
    "alumina_projection_engineer_en": ([notice(
        "alumina_year_projected_above_level1", "refinery", "comprehensive_energy_projected", 352.7, "kgce/t", 340,
        "GB 21346-2022 level 1", "GB 21346-2022 §4.2 Table 2 (2022), to_verify", "year",
        "按近24小时水平推算，全年氧化铝综合能耗将高于 GB 21346-2022 1级（预警）",
        "at the last 24 hours' rate the year's alumina comprehensive energy will end above GB 21346-2022 level 1 "
        "(early warning)", severity=Severity.WARNING)], "en", False),
    "source_stale_engineer_zh": ([notice(
        "source_stale", "potline-1", "source_missed_polls", 12.0, "polls", 5, "5 missed polls",
        "alumon default (alerts.rules source_stale), not a regulatory figure", "live",
        "数据源中断：仪表在多个采集周期内无有效数据（基于该数据源的限值告警暂停）",
        "data source stale: no good reading for several polls (the limit alerts computed from it are suspended)",
        severity=Severity.WARNING, kind="data_quality",
        suppresses=("energy_above_benchmark", "energy_above_level3"))], "zh", False),
    "digest_regulator_zh": ([notice(**LEVEL3), notice(**SO2_HOURLY)], "zh", True),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_email_matches_golden_file(case: str) -> None:
    notices, lang, regulator = CASES[case]
    config = load_site(EXAMPLE_SITE).config
    msg = render(notices, config, Addressee("someone@example.cn", lang, regulator))
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    rendered = {"txt": f"Subject: {msg['Subject']}\n\n{text.get_content()}", "html": html.get_content()}
    for ext, content in rendered.items():
        path = GOLDEN / f"{case}.{ext}"
        if os.environ.get("ALUMON_UPDATE_GOLDEN"):
            path.write_text(content, encoding="utf-8")
        assert path.exists(), f"no golden file {path}: run with ALUMON_UPDATE_GOLDEN=1 and review it"
        assert content == path.read_text(encoding="utf-8"), f"{case}.{ext} differs from its golden file"


def test_the_demo_reads_notice_keys_back_from_long_headers(tmp_path: Path) -> None:
    """A long incident id comes back folded or RFC 2047-encoded: the demo's check must still read it."""
    import mailbox

    from alumon.demo import notices_per_incident, read_emails

    config = load_site(EXAMPLE_SITE).config
    long = notice(**SO2_HOURLY, state=AlertState.RESOLVED)  # type: ignore[arg-type]
    box = mailbox.Maildir(str(tmp_path / "maildir"), create=True)
    box.add(render([long], config, Addressee("someone@example.cn", "zh", True)).as_bytes())
    assert notices_per_incident(read_emails(tmp_path / "maildir")) == {
        long.alert.id: {"someone@example.cn": {"firing": 0, "resolved": 1}}}
