"""Alert rules and their state machine: pending time, one incident per episode, hysteresis, resolve delay,
flap damping, reminders, data-quality inhibition, rules from config, completeness, historical data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alumon.alert import AlertState
from alumon.config import AlertRuleSpec
from analytics.alert_engine import RuleEngine
from analytics.kpi_row import KpiRow
from analytics.limits import Limits
from analytics.rules import RuleConfigError, load_rules
from analytics.state import EpisodeFile

LEVEL3 = "energy_above_level3"


def row(t_s: float, value: float, completeness: float = 1.0, kpi: str = "al_liquid_ac",
        unit: str = "potline-1") -> KpiRow:
    return KpiRow(int(t_s * 1000), unit, kpi, "rolling_60s", value, "kWh/t", completeness, "", "src")


def engine(*overrides: AlertRuleSpec, state: EpisodeFile | None = None, repeat_s: float = 0.0) -> RuleEngine:
    return RuleEngine("gx-demo", Limits(), pending_s=10, min_completeness=0.8, rules=load_rules(overrides),
                      state=state, repeat_s=repeat_s)


def immediate() -> AlertRuleSpec:
    """Level 3 resolving as soon as the value is under the reset level (no resolve delay, no flap damping)."""
    return AlertRuleSpec(name=LEVEL3, resolve_after_s=0, flap_window_s=0)


def changes(e: RuleEngine, rows: list[KpiRow], rule: str = LEVEL3, historical: bool = False) -> list[tuple[int, str]]:
    return [(r.t_ms // 1000, a.state.value) for r in rows for a in e.evaluate([r], historical) if a.rule == rule]


def test_fires_after_pending_and_once_per_episode() -> None:
    assert changes(engine(), [row(t, 13600) for t in range(0, 60, 5)]) == [(10, "firing")]


def test_dip_before_pending_elapses_does_not_fire() -> None:
    assert changes(engine(), [row(0, 13600), row(5, 13300), row(10, 13600), row(15, 13600)]) == []


def test_hysteresis_and_resolution() -> None:
    e = engine(immediate())
    # Fires at 10; hovering between the reset level (13350 × 0.99 = 13216.5) and the limit does not resolve;
    # below 13216.5 it resolves, exactly once.
    values = [13600, 13600, 13600, 13300, 13400, 13300, 13250, 13200, 13100, 13600]
    assert changes(e, [row(5 * i, v) for i, v in enumerate(values)]) == [(10, "firing"), (35, "resolved")]
    # Above again from 45 s: a new episode, pending from 45, fires at the next evaluation past 10 s.
    assert changes(e, [row(100, 13600), row(110, 13600)]) == [(100, "firing")]


def test_resolve_delay_and_minimum_firing_time() -> None:
    e = engine(AlertRuleSpec(name=LEVEL3, resolve_after_s=30, min_firing_s=0, flap_window_s=0))
    # Clear from 20 s on: resolved once it has been clear for 30 s (at 50), not before.
    assert changes(e, [row(t, 13600 if t < 20 else 13000) for t in range(0, 80, 5)]) == [
        (10, "firing"), (50, "resolved")]
    e = engine(AlertRuleSpec(name=LEVEL3, resolve_after_s=0, min_firing_s=120, flap_window_s=0))
    assert changes(e, [row(t, 13600 if t < 20 else 13000) for t in range(0, 200, 5)]) == [
        (10, "firing"), (130, "resolved")]  # fired at 10, lasts at least 120 s


def test_flapping_signal_is_one_incident() -> None:
    # 10 minutes swinging across the limit every 20 s (13 600 <-> 13 000), then steady at 12 800.
    signal = [row(t, 13600 if (t // 20) % 2 == 0 else 13000) for t in range(0, 600, 5)]
    signal += [row(t, 12800) for t in range(600, 1400, 5)]
    undamped = engine(immediate())
    assert len([c for c in changes(undamped, signal) if c[1] == "firing"]) > 10  # the storm we prevent
    damped = engine()  # the default rule: resolve after 60 s clear, flap damping over 600 s
    # Resolves once fewer than 4 crossings remain in the last 600 s: the 4th-last crossing was at 520 s.
    assert changes(damped, signal) == [(10, "firing"), (1120, "resolved")]


def test_reminders_for_a_long_incident() -> None:
    e = engine(repeat_s=600)
    alerts = [a for t in range(0, 2000, 5) for a in e.evaluate([row(t, 13600)]) if a.rule == LEVEL3]
    assert [(a.state.value, a.reminder, int(a.last_seen.timestamp())) for a in alerts] == [
        ("firing", 0, 10), ("firing", 1, 610), ("firing", 2, 1210), ("firing", 3, 1810)]
    assert len({a.id for a in alerts}) == 1


def test_low_completeness_and_historical_never_fire() -> None:
    assert changes(engine(), [row(t, 14000, completeness=0.5) for t in range(0, 60, 5)]) == []
    assert changes(engine(), [row(t, 14000) for t in range(0, 60, 5)], historical=True) == []


def test_restart_mid_incident_does_not_fire_again(tmp_path: Path) -> None:
    state = EpisodeFile(tmp_path / "episodes.json")
    first = engine(immediate(), state=state)
    assert changes(first, [row(0, 13600), row(10, 13600)]) == [(10, "firing")]
    restarted = engine(immediate(), state=state)
    assert changes(restarted, [row(20, 13600), row(30, 13600)]) == []  # still the same incident
    resolved = [a for a in restarted.evaluate([row(40, 12800)]) if a.rule == LEVEL3]
    assert [(a.state, a.id) for a in resolved] == [
        (AlertState.RESOLVED, "gx-demo-energy_above_level3-potline-1-19700101T000000Z")]
    assert (LEVEL3, "potline-1", "al_liquid_ac") not in engine(state=state).episodes


def test_episode_file_of_the_previous_release_keeps_its_incident(tmp_path: Path) -> None:
    path = tmp_path / "episodes.json"
    path.write_text(json.dumps({f"{LEVEL3}|potline-1": {
        "pending_since": "2026-11-24T08:00:00+00:00", "incident": "gx-demo-old-incident", "first_value": 13600.0}}))
    e = engine(state=EpisodeFile(path))
    assert e.episodes[(LEVEL3, "potline-1", "")].incident == "gx-demo-old-incident"


def test_alert_carries_limit_source_and_incident() -> None:
    e = engine()
    (a,) = [a for t in (0, 10) for a in e.evaluate([row(t, 13600)]) if a.rule == LEVEL3]
    assert a.limit == 13350 and "GB 21346-2022" in a.limit_source
    assert a.id == "gx-demo-energy_above_level3-potline-1-19700101T000000Z"
    assert a.description_zh.startswith("铝液交流电耗") and a.completeness == 1.0


def test_alumina_projection_is_judged_by_the_refinery_process() -> None:
    # 400 kgce/t projected for the year: above Bayer level 1 (340) but within other-process level 1 (550).
    def projected(t_s: int, process: str, unit: str) -> KpiRow:
        return KpiRow(t_s * 1000, unit, "comprehensive_energy_projected", "year", 400.0, "kgce/t", 1.0, "",
                      "projection", estimated=True, extra=(("period_end_ms", 1), ("process", process)))

    e = engine()
    fired = {(a.unit_process, a.limit) for t in (0, 20)  # past the 10 s pending time
             for a in e.evaluate([projected(t, "bayer", "ref-b"), projected(t, "other_process", "ref-o")])}
    assert fired == {("ref-b", 340.0)}


def test_one_rule_for_every_pollutant_with_its_own_limit_and_incident() -> None:
    e = engine()
    rows = [KpiRow(0, "calciner-stack", kpi, "rolling_60s", v, "mg/m3", 1.0, "", "src")
            for kpi, v in (("so2_corrected", 40.0), ("nox_corrected", 60.0), ("pm_corrected", 5.0))]
    e.evaluate(rows)
    fired = e.evaluate([r._replace(t_ms=20_000) for r in rows])
    assert sorted((a.kpi, a.limit, a.id.rsplit("-", 1)[0]) for a in fired) == [
        ("nox_corrected", 50.0, "gx-demo-emission_above_ultra_low-calciner-stack-nox"),
        ("so2_corrected", 35.0, "gx-demo-emission_above_ultra_low-calciner-stack-so2")]
    assert {a.description_en.split(" ")[1] for a in fired} == {"SO₂", "NOx"}


def dq(t_s: float, missed: float, unit: str = "potline-1", kpi: str = "source_missed_polls") -> KpiRow:
    return KpiRow(int(t_s * 1000), unit, kpi, "live", missed, "polls", 1.0, "", "alumon data quality",
                  extra=(("source", "pl1-scale.metal_tapped_t"),))


def test_stale_source_holds_the_units_limit_alerts() -> None:
    e = engine()
    out = []
    for t in range(0, 120, 5):
        stale = 30 <= t < 90
        out += e.evaluate([dq(t, 20 if stale else 0), row(t, 13600 if t >= 25 else 13000),
                           row(t, 13600 if t >= 25 else 13000, unit="potline-2")])
    seen = [(a.rule, a.unit_process, a.state.value, a.last_seen.second + 60 * a.last_seen.minute) for a in out]
    # potline-1: pending from 25, but its scale is stale from 30: the data-quality alert fires and the
    # pending level-3/benchmark episodes are dropped; once the source is back (90) they start afresh.
    assert ("source_stale", "potline-1", "firing", 30) in seen
    assert ("source_stale", "potline-1", "resolved", 90) in seen
    p1 = [s for s in seen if s[1] == "potline-1" and s[0] != "source_stale"]
    assert p1 == [(LEVEL3, "potline-1", "firing", 100), ("energy_above_benchmark", "potline-1", "firing", 100)]
    p2 = [s for s in seen if s[1] == "potline-2"]  # another unit is not held
    assert p2 == [(LEVEL3, "potline-2", "firing", 35), ("energy_above_benchmark", "potline-2", "firing", 35)]
    (stale_alert,) = [a for a in out if a.rule == "source_stale" and a.state is AlertState.FIRING]
    assert stale_alert.suppresses == ("energy_above_benchmark", LEVEL3)
    assert "holds energy_above_benchmark, energy_above_level3" in stale_alert.summary


def test_stale_analyser_of_one_pollutant_holds_only_its_alerts() -> None:
    e = engine()
    out = []
    for t in range(0, 60, 5):
        out += e.evaluate([dq(t, 20, "calciner-stack", "nox_source_missed_polls"),
                           dq(t, 0, "calciner-stack", "so2_source_missed_polls"),
                           *(KpiRow(t * 1000, "calciner-stack", kpi, "rolling_60s", v, "mg/m3", 1, "", "")
                             for kpi, v in (("so2_corrected", 40.0), ("nox_corrected", 60.0)))])
    assert sorted((a.rule, a.kpi) for a in out) == [
        ("emission_above_ultra_low", "so2_corrected"), ("source_stale", "nox_source_missed_polls")]


def test_site_rules_change_the_defaults_or_add_rules() -> None:
    rules = load_rules([AlertRuleSpec(name="energy_above_benchmark", enabled=False),
                        AlertRuleSpec(name=LEVEL3, pending_s=600, severity="warning")])
    names = {r.name: r for r in rules.rules}
    assert "energy_above_benchmark" not in names
    assert (names[LEVEL3].pending_s, names[LEVEL3].severity.value, names[LEVEL3].reset_ratio) == (600, "warning", 0.99)
    with pytest.raises(RuleConfigError, match="'my_rule' is not a default rule, so it needs kpi, limit"):
        load_rules([AlertRuleSpec(name="my_rule")])
    own = load_rules([AlertRuleSpec.model_validate({
        "name": "pl1_current_high", "kpi": "line_current_mean", "severity": "info", "audience": "engineers",
        "limit": {"kind": "setting", "value": 420, "name": "rectifier rating", "unit": "kA",
                  "source": "rectifier nameplate"},
        "description_zh": "系列电流高", "description_en": "line current high"})])
    assert own.rules[-1].name == "pl1_current_high"
    with pytest.raises(ValueError, match="a setting limit needs source"):
        AlertRuleSpec.model_validate({"name": "x", "limit": {"kind": "setting", "value": 1, "name": "n", "unit": "u"}})


def test_projections_warn_before_the_month_or_year_ends() -> None:
    def projected(t_s: int, window: str, value: float) -> KpiRow:
        return KpiRow(t_s * 1000, "potline-1", "al_liquid_ac_projected", window, value, "kWh/t", 1.0, "",
                      "projection", estimated=True)

    e = engine()
    fired = {(a.rule, a.limit) for t in (0, 20) for a in e.evaluate(
        [projected(t, "month", 13400.0), projected(t, "year", 13100.0)])}
    # The month heads above level 3 (13 350), the year above the benchmark (13 000): one warning each.
    assert fired == {("energy_month_projected_above_level3", 13350.0),
                     ("energy_year_projected_above_benchmark", 13000.0)}


def test_a_change_not_committed_is_derived_again_after_a_crash(tmp_path: Path) -> None:
    """The service commits episodes after dispatching: a crash in between repeats the same change, same id."""
    state = EpisodeFile(tmp_path / "episodes.json")
    live = engine(immediate(), state=state)
    live.autocommit = False
    live.evaluate([row(0, 13600)])
    live.commit()  # the pending episode is saved at the end of its tick
    (fired,) = [a for a in live.evaluate([row(10, 13600)]) if a.rule == LEVEL3]
    # ... the process dies here, before commit()
    again = engine(immediate(), state=state)
    (refired,) = [a for a in again.evaluate([row(11, 13600)]) if a.rule == LEVEL3]
    assert (refired.id, refired.state) == (fired.id, AlertState.FIRING)
