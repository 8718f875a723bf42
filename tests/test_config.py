"""Site config validation: every problem reported with its key path and line, in one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alumon.config import SiteConfigError, load_site
from tests.conftest import EXAMPLE_SITE, REPO, write_site

THREE_MISTAKES = REPO / "tests" / "cases" / "three-mistakes.yaml"


def test_example_site_is_valid() -> None:
    site = load_site(EXAMPLE_SITE)
    assert site.id == "gx-demo"
    assert len(site.config.devices) == 11
    assert {u.kind for u in site.config.process_units} == {"potline", "alumina_refinery", "cems_stack"}
    assert site.profile_of("pl1-ac-meter").profile == "cn-multifunction-u32"


def test_three_mistakes_reported_with_paths_and_lines() -> None:
    env = {"ALUMON_TEST_SMTP_USER": "someone"}
    with pytest.raises(SiteConfigError) as info:
        load_site(THREE_MISTAKES, environ=env)
    problems = {p.path: p for p in info.value.problems}
    assert set(problems) == {"devices[0].timeout_s", "devices[2].profile", "connections.smtp.password_env"}
    assert "crucible-scales" in problems["devices[2].profile"].message
    assert "ALUMON_TEST_SMTP_PASSWORD_MISSING" in problems["connections.smtp.password_env"].message
    lines = THREE_MISTAKES.read_text().splitlines()
    for p in problems.values():
        assert p.line is not None
        key = p.path.rsplit(".", 1)[-1]
        assert key in lines[p.line - 1], (p, lines[p.line - 1])


def test_cli_check_exits_nonzero_and_prints_all_three() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alumon", "config", "check", str(THREE_MISTAKES)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "ALUMON_TEST_SMTP_USER": "u", "COLUMNS": "200"},
    )
    assert result.returncode == 2
    for needle in ("devices[0].timeout_s", "devices[2].profile", "connections.smtp.password_env", "line "):
        assert needle in result.stderr


def test_cli_check_ok_on_example() -> None:
    result = subprocess.run([sys.executable, "-m", "alumon", "config", "check", str(EXAMPLE_SITE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "11 devices" in result.stdout


def test_schema_errors_carry_paths(tmp_path: Path) -> None:
    bad = write_site(tmp_path / "bad.yaml", devices=[
        {"id": "Bad Id", "profile": "eastron-sdm630", "transport": {"type": "tcp", "host": "h"}},
        {"id": "m2", "profile": "eastron-sdm630", "transport": {"type": "serial"}},
    ])
    with pytest.raises(SiteConfigError) as info:
        load_site(bad)
    paths = {p.path for p in info.value.problems}
    assert "devices[0].id" in paths
    assert any(p.startswith("devices[1].transport") for p in paths)
    assert all(p.line is not None for p in info.value.problems)


def test_potroom_o2_correction_refused(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(EXAMPLE_SITE.read_text())
    for unit in data["process_units"]:
        if unit["id"] == "potroom-stack":
            unit["correction"] = {"type": "o2_ref", "o2_ref_pct": 11}
    bad = tmp_path / "o2.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(SiteConfigError) as info:
        load_site(bad)
    (problem,) = info.value.problems
    assert problem.path.startswith("process_units[3]")
    assert "potroom_gas_treatment" in problem.message


def test_unknown_reading_reference(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(EXAMPLE_SITE.read_text())
    data["process_units"][0]["ac_energy"] = "pl1-ac-meter.no_such_quantity"
    data["process_units"][0]["metal_tapped"] = "pl1-rectifier.line_current_ka"
    bad = tmp_path / "ref.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(SiteConfigError) as info:
        load_site(bad)
    messages = {p.path: p.message for p in info.value.problems}
    assert "no quantity 'no_such_quantity'" in messages["process_units[0].ac_energy"]
    assert "must be a counter" in messages["process_units[0].metal_tapped"]


@pytest.mark.parametrize(("influxdb", "ingest", "message"), [
    ({"api": "v1", "bucket": "b"}, {}, "`bucket` illegal with `api: v1`"),
    ({"api": "v2", "org": "o", "bucket": "b", "username_env": "X"}, {}, "`username_env` illegal with `api: v2`"),
    ({"api": "v2", "org": "o"}, {}, "`bucket` required with `api: v2`"),
    ({}, {"buffer_full": "drop_everything"}, "ingest.buffer_full"),
    ({}, {"shared_group": "a/b"}, "ingest.shared_group"),
])
def test_influx_api_and_ingest_settings_refused(tmp_path: Path, influxdb: dict[str, str], ingest: dict[str, str],
                                                 message: str) -> None:
    bad = write_site(tmp_path / "bad.yaml", connections__influxdb=influxdb, ingest=ingest)
    with pytest.raises(SiteConfigError) as info:
        load_site(bad)
    assert message in str(info.value)


def test_v2_connection_accepted(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path / "ok.yaml", connections__influxdb={
        "api": "v2", "url": "https://eu-central-1-1.aws.cloud2.influxdata.com", "org": "plant", "bucket": "alumon"}))
    assert (site.config.connections.influxdb.api, site.config.connections.influxdb.bucket) == ("v2", "alumon")


def test_alert_rule_changes_are_checked(tmp_path: Path) -> None:
    path = write_site(tmp_path / "site.yaml", alerts={"rules": [
        {"name": "energy_above_level3", "pending_s": 300},  # a change to a default rule: fine
        {"name": "energy_above_levl3", "pending_s": 300}]})  # a typo: neither a default nor a complete rule
    with pytest.raises(SiteConfigError) as info:
        load_site(path)
    assert "alerts.rules[1].name: 'energy_above_levl3' is not a default rule" in str(info.value)
    path = write_site(tmp_path / "site2.yaml", alerts={"rules": [
        {"name": "own", "limit": {"kind": "setting", "value": 5, "name": "n", "unit": "u"}}]})
    with pytest.raises(SiteConfigError) as info:
        load_site(path)
    assert "alerts.rules[0].limit: a setting limit needs source" in str(info.value)
