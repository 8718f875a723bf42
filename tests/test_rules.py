"""Alert state machine: pending time, one incident per episode, hysteresis, completeness, historical data."""

from __future__ import annotations

from pathlib import Path

from alumon.alert import AlertState
from analytics.kpi_row import KpiRow
from analytics.limits import Limits
from analytics.rules import RuleEngine
from analytics.state import EpisodeFile


def row(t_s: int, value: float, completeness: float = 1.0, kpi: str = "al_liquid_ac") -> KpiRow:
    return KpiRow(t_s * 1000, "potline-1", kpi, "rolling_60s", value, "kWh/t", completeness, "", "src")


def level3_changes(engine: RuleEngine, rows: list[KpiRow], historical: bool = False) -> list[tuple[int, str]]:
    out = []
    for r in rows:
        for a in engine.evaluate([r], historical):
            if a.rule == "energy_above_level3":
                out.append((r.t_ms // 1000, a.state.value))
    return out


def engine() -> RuleEngine:
    return RuleEngine("gx-demo", Limits(), pending_s=10, min_completeness=0.8)


def test_fires_after_pending_and_once_per_episode() -> None:
    e = engine()
    changes = level3_changes(e, [row(t, 13600) for t in range(0, 60, 5)])
    assert changes == [(10, "firing")]  # pending from t=0, fires at t=10, stays firing: one incident


def test_dip_before_pending_elapses_does_not_fire() -> None:
    e = engine()
    assert level3_changes(e, [row(0, 13600), row(5, 13300), row(10, 13600), row(15, 13600)]) == []


def test_hysteresis_and_resolution() -> None:
    e = engine()
    # Fires at 10; hovering between the reset level (13350 × 0.99 = 13216.5) and the limit does not resolve;
    # below 13216.5 it resolves, exactly once.
    values = [13600, 13600, 13600, 13300, 13400, 13300, 13250, 13200, 13100, 13600]
    changes = level3_changes(e, [row(5 * i, v) for i, v in enumerate(values)])
    assert changes == [(10, "firing"), (35, "resolved")]
    alerts = [a for r in [row(100, 13600), row(110, 13600)] for a in e.evaluate([r])
              if a.rule == "energy_above_level3"]
    assert [a.state for a in alerts] == [AlertState.FIRING]  # a new episode gets a new incident id


def test_low_completeness_and_historical_never_fire() -> None:
    assert level3_changes(engine(), [row(t, 14000, completeness=0.5) for t in range(0, 60, 5)]) == []
    assert level3_changes(engine(), [row(t, 14000) for t in range(0, 60, 5)], historical=True) == []


def test_restart_mid_incident_does_not_fire_again(tmp_path: Path) -> None:
    state = EpisodeFile(tmp_path / "episodes.json")
    first = RuleEngine("gx-demo", Limits(), pending_s=10, min_completeness=0.8, state=state)
    assert level3_changes(first, [row(0, 13600), row(10, 13600)]) == [(10, "firing")]
    restarted = RuleEngine("gx-demo", Limits(), pending_s=10, min_completeness=0.8, state=state)
    assert level3_changes(restarted, [row(20, 13600), row(30, 13600)]) == []  # still the same incident
    resolved = [a for a in restarted.evaluate([row(40, 12800)]) if a.rule == "energy_above_level3"]
    assert [(a.state, a.id) for a in resolved] == [
        (AlertState.RESOLVED, "gx-demo-energy_above_level3-potline-1-19700101T000000Z")]
    assert RuleEngine("gx-demo", Limits(), 10, 0.8, state=state).episodes == {}


def test_alert_carries_limit_source_and_incident() -> None:
    e = engine()
    alerts = [a for t in (0, 10) for a in e.evaluate([row(t, 13600)]) if a.rule == "energy_above_level3"]
    (a,) = alerts
    assert a.limit == 13350 and "GB 21346-2022" in a.limit_source
    assert a.id == "gx-demo-energy_above_level3-potline-1-19700101T000000Z"


def test_alumina_projection_is_judged_by_the_refinery_process() -> None:
    # 400 kgce/t projected for the year: above Bayer level 1 (340) but within other-process level 1 (550).
    def projected(t_s: int, process: str, unit: str) -> KpiRow:
        return KpiRow(t_s * 1000, unit, "comprehensive_energy_projected", "year", 400.0, "kgce/t", 1.0, "",
                      "projection", estimated=True, extra=(("period_end_ms", 1), ("process", process)))

    e = engine()
    fired = {(a.unit_process, a.limit) for t in (0, 20)  # past the 10 s pending time
             for a in e.evaluate([projected(t, "bayer", "ref-b"), projected(t, "other_process", "ref-o")])}
    assert fired == {("ref-b", 340.0)}
