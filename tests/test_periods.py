"""Indicators over long windows, computed by hand from the standard's definitions (the arithmetic is in each
test): a potline day with a counter rollover and a 20-minute gap, an alumina day with four energy carriers,
a month-end projection, the Faraday cross-check and a three-potline scorecard. Plus properties: splitting a
window and adding the halves changes nothing, and MWh vs kWh meters give the same kWh/t."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from alumon.config import Site, load_site
from alumon.telemetry import Quality, Reading, TelemetryMessage
from analytics.kpi_row import KpiRow
from analytics.kpis import KpiEngine
from analytics.ledger import CounterLedger
from analytics.limits import Limits
from analytics.series import SeriesStore
from tests.conftest import EXAMPLE_SITE

TZ = ZoneInfo("Asia/Shanghai")
MIN = 60_000
U32_SPAN_KWH = 2**32 * 0.1  # cn-multifunction-u32 forward_active_kwh: u32 counter × 0.1 kWh


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=TZ).timestamp() * 1000)


def make_site(tmp: Path, units: list[str], extra_units: tuple[dict[str, Any], ...] = (),
              extra_devices: tuple[dict[str, Any], ...] = (), **analytics: Any) -> Site:
    """The example site with only the named process units, devices polled every minute, ticks every 10 min."""
    data = yaml.safe_load(EXAMPLE_SITE.read_text())
    data["process_units"] = [u for u in data["process_units"] if u["id"] in units] + list(extra_units)
    data["devices"] += list(extra_devices)
    for dev in data["devices"]:
        dev.update(poll_interval_s=60, timeout_s=1)
    data["analytics"] = {"kpi_window_s": 3600, "evaluate_every_s": 600, **analytics}
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


Feed = Callable[[int], dict[str, dict[str, Reading]]]  # minute timestamp -> device -> readings


def run(site: Site, feed: Feed, start_ms: int, end_ms: int) -> list[KpiRow]:
    """Samples every minute in [start, end), evaluated every 10 minutes as the live service would; returns the
    rows of the evaluation at ``end_ms``."""
    engine = KpiEngine(site, Limits.for_site(site.config))
    store = SeriesStore(engine.needed_readings())
    rows: list[KpiRow] = []
    tick = start_ms + 10 * MIN
    for t in range(start_ms, end_ms, MIN):
        while tick <= t:
            engine.evaluate(store, tick)
            store.trim(tick - engine.retention_ms)
            tick += 10 * MIN
        for device, readings in feed(t).items():
            store.add_message(TelemetryMessage(v=1, site=site.id, device=device, seq=0,
                                               ts=datetime.fromtimestamp(t / 1000, TZ), readings=readings))
    while tick < end_ms:
        engine.evaluate(store, tick)
        store.trim(tick - engine.retention_ms)
        tick += 10 * MIN
    rows = engine.evaluate(store, end_ms)
    return rows


def find(rows: list[KpiRow], unit: str, kpi: str, window: str) -> KpiRow:
    return next(r for r in rows if (r.unit_process, r.kpi, r.window) == (unit, kpi, window))


def good(value: float, *flags: str) -> Reading:
    return Reading(value=value, quality=Quality.GOOD, flags=list(flags))


def test_potline_day_with_rollover_and_a_20_minute_gap(tmp_path: Path) -> None:
    site = make_site(tmp_path, ["potline-1"], period_windows=["day"])
    day0 = local_ms(2026, 11, 24)
    gap = range(local_ms(2026, 11, 24, 10, 1), local_ms(2026, 11, 24, 10, 21), MIN)  # 10:01..10:20 missing
    start_energy = U32_SPAN_KWH - 50_000.0  # the meter wraps after 14 minutes

    def feed(t: int) -> dict[str, dict[str, Reading]]:
        if t in gap:
            return {}
        k = (t - day0) // MIN  # minutes since midnight
        raw = start_energy + 3600.0 * k
        energy = good(raw - U32_SPAN_KWH, "rollover") if raw >= U32_SPAN_KWH and raw - 3600 < U32_SPAN_KWH else (
            good(raw % U32_SPAN_KWH))
        return {"pl1-ac-meter": {"forward_active_kwh": energy},
                "pl1-scale": {"metal_tapped_t": good(1000.0 + 0.27 * k)}}

    rows = run(site, feed, day0, local_ms(2026, 11, 24, 23, 59, 30))
    day = find(rows, "potline-1", "al_liquid_ac", "day")
    # Samples at 00:00..23:59 except 10:01..10:20: 1420 samples, 1419 increments; the one spanning 10:00 ->
    # 10:21 (21 min > 3 polls) is a gap and counts for nothing. 1418 increments of 3600 kWh and 0.27 t, the
    # rollover at 00:14 included (the span is added back): 5 104 800 kWh / 382.86 t = 13 333.33 kWh/t.
    assert day.value == pytest.approx(1418 * 3600.0 / (1418 * 0.27))
    # Coverage: 1418 minutes of the 1439.5 elapsed since local midnight.
    assert day.completeness == pytest.approx(1418 / 1439.5)
    assert day.level == "level3" and day.benchmark_met is False  # 13 000 < 13 333 <= 13 350 (level 3)
    assert dict(day.extra)["indicative"] is True


def test_alumina_day_with_four_carriers(tmp_path: Path) -> None:
    ref = {"id": "refinery-b", "kind": "alumina_refinery", "process": "bayer", "capacity_t_per_year": 1_000_000,
           "alumina_output": "ref-totaliser.alumina_t", "carriers": [
               {"reading": "ref-power.import_kwh", "coefficient": "electricity_equivalent", "scope": "auxiliary"},
               {"reading": "ref-totaliser.natural_gas_nm3", "coefficient": "natural_gas_gasfield"},
               {"reading": "ref-totaliser.steam_t", "coefficient": "steam_low_pressure_legacy"},
               {"reading": "ref-totaliser.coal_t", "coefficient": "raw_coal"}]}
    site = make_site(tmp_path, [], (ref,), period_windows=["day"])
    day0 = local_ms(2026, 11, 24)

    def feed(t: int) -> dict[str, dict[str, Reading]]:
        k = (t - day0) // MIN + 1
        # per minute: 4 t alumina, 1000 kWh, 300 Nm3 gas, 2 t steam, 0.5 t coal
        return {"ref-power": {"import_kwh": good(1000.0 * k)},
                "ref-totaliser": {"alumina_t": good(4.0 * k), "natural_gas_nm3": good(300.0 * k),
                                  "steam_t": good(2.0 * k), "coal_t": good(0.5 * k)}}

    rows = run(site, feed, day0 - MIN, local_ms(2026, 11, 24, 12))
    # Per tonne of alumina (GB/T 2589-2020 coefficients in limits.yaml):
    #   electricity 250 kWh × 0.1229 = 30.725 kgce (auxiliary: comprehensive only)
    #   gas 75 Nm3 × 1.2143 = 91.0725; steam 500 kg × 0.1286 = 64.3; coal 125 kg × 0.7143 = 89.2875
    process = 91.0725 + 64.3 + 89.2875  # 244.66 kgce/t: GB 21346-2022 Bayer process energy level 1 (≤ 310)
    comprehensive = process + 30.725  # 275.385 kgce/t: level 1 (≤ 340)
    assert find(rows, "refinery-b", "process_energy", "day").value == pytest.approx(process)
    c = find(rows, "refinery-b", "comprehensive_energy", "day")
    assert c.value == pytest.approx(comprehensive) and c.level == "level1"
    assert c.completeness == pytest.approx(1.0)  # 720 minutes covered of 720 elapsed


def test_month_end_projection(tmp_path: Path) -> None:
    site = make_site(tmp_path, ["potline-1"], period_windows=["rolling_24h", "month"])
    def feed(t: int) -> dict[str, dict[str, Reading]]:
        k = (t - local_ms(2026, 10, 31, 23, 59)) // MIN  # increment k belongs to minute k - 1 after midnight
        before = min(k, 720)  # the minutes 00:00..11:59 of 1 November at 1300 kWh, then 1400 kWh
        after = k - before
        return {"pl1-ac-meter": {"forward_active_kwh": good(1300.0 * before + 1400.0 * after)},
                "pl1-scale": {"metal_tapped_t": good(0.1 * k)}}

    end = local_ms(2026, 11, 2, 12)
    rows = run(site, feed, local_ms(2026, 10, 31, 23, 59), end)
    mtd = find(rows, "potline-1", "al_liquid_ac", "month")
    # Month to date (36 h): 720 min at 1300 kWh + 1440 min at 1400 kWh over 2160 × 0.1 t
    assert mtd.value == pytest.approx((720 * 1300 + 1440 * 1400) / 216)  # 13 666.67
    projected = find(rows, "potline-1", "al_liquid_ac_projected", "month")
    # Last 24 h: 2 016 000 kWh and 144 t; 28.5 days = 684 h to go until 1 December 00:00 local:
    # (2 952 000 + 2 016 000 / 24 × 684) / (216 + 144 / 24 × 684) = 60 408 000 / 4320 = 13 983.33 kWh/t
    assert projected.value == pytest.approx(60_408_000 / 4320)
    assert projected.estimated and projected.level == "above_level3"
    assert dict(projected.extra)["period_end_ms"] == local_ms(2026, 12, 1)


def test_faraday_estimate_and_production_crosscheck(tmp_path: Path) -> None:
    site = make_site(tmp_path, ["potline-1"], period_windows=["rolling_24h"])
    t0 = local_ms(2026, 11, 24, 8)

    def feed_with(weighed_per_hour: float) -> Feed:
        def feed(t: int) -> dict[str, dict[str, Reading]]:
            k = (t - t0) // MIN
            return {"pl1-rectifier": {"line_current_ka": good(400.0), "series_voltage_v": good(1250.0)},
                    "pl1-ac-meter": {"forward_active_kwh": good(9000.0 * k)},
                    "pl1-scale": {"metal_tapped_t": good(weighed_per_hour / 60 * k)}}
        return feed

    # One hour at 400 kA: 400 kA·h × 0.33557 kg × 300 cells × CE 0.93 = 37 449.612 kg
    faraday_t = 400 * 0.33557 * 300 * 0.93 / 1000
    rows = run(site, feed_with(faraday_t * 1.04), t0, t0 + 60 * MIN + MIN)
    prod = find(rows, "potline-1", "faraday_production", "rolling_24h")
    assert prod.value == pytest.approx(faraday_t) and prod.estimated  # 61 samples a minute apart: one hour
    dc = find(rows, "potline-1", "dc_energy_per_t_estimated", "rolling_24h")
    assert dc.value == pytest.approx(400 * 1250 / (faraday_t))  # 500 000 kWh DC per hour / t per hour
    est = find(rows, "potline-1", "al_liquid_ac_estimated", "rolling_24h")
    assert est.value == pytest.approx(60 * 9000 / faraday_t)  # 540 000 kWh AC per hour / t per hour
    ok = find(rows, "potline-1", "production_deviation", "rolling_24h")
    assert ok.value == pytest.approx(0.04, abs=0.002) and ok.level == "consistent"
    bad = find(run(site, feed_with(faraday_t * 1.08), t0, t0 + 61 * MIN), "potline-1", "production_deviation",
               "rolling_24h")
    assert bad.level == "mismatch" and float(dict(bad.extra)["signed_deviation"]) == pytest.approx(0.08)


def test_scorecard_three_potlines_of_different_capacity(tmp_path: Path) -> None:
    tcp = {"type": "tcp", "host": "127.0.0.1", "port": 15099}
    devices = ({"id": "pl3-ac-meter", "profile": "cn-multifunction-u32", "transport": tcp},
               {"id": "pl3-scale", "profile": "crucible-scale", "transport": dict(tcp, port=15098)})
    pl3 = {"id": "potline-3", "kind": "potline", "cells": 200, "capacity_t_per_year": 300_000,
           "ac_energy": "pl3-ac-meter.forward_active_kwh", "metal_tapped": "pl3-scale.metal_tapped_t"}
    site = make_site(tmp_path, ["potline-1", "potline-2"], (pl3,), devices, period_windows=["year"])
    # potline-1 330 kt/yr at 12 900, potline-2 440 kt/yr at 13 100, potline-3 300 kt/yr at 12 990 kWh/t
    kwh_per_t = {"pl1": 12_900.0, "pl2": 13_100.0, "pl3": 12_990.0}
    t0 = local_ms(2026, 11, 24, 8)

    def feed(t: int) -> dict[str, dict[str, Reading]]:
        k = (t - t0) // MIN
        out: dict[str, dict[str, Reading]] = {}
        for p, rate in kwh_per_t.items():
            out[f"{p}-ac-meter"] = {"forward_active_kwh": good(rate * 0.5 * k)}
            out[f"{p}-scale"] = {"metal_tapped_t": good(0.5 * k)}
        return out

    rows = run(site, feed, t0, t0 + 120 * MIN)
    card = find(rows, site.id, "scorecard_smelter_capacity_at_benchmark", "year")
    # At or below the 13 000 benchmark: potline-1 (330 kt) and potline-3 (300 kt) of 1070 kt = 0.5888 > 0.50
    assert card.value == pytest.approx(630 / 1070)
    assert card.level == "met" and dict(card.extra)["target"] == 0.5 and dict(card.extra)["deadline"] == "2025"
    assert "广西" in card.limit_source  # the seed decision, with its clause


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 500), min_size=3, max_size=200), st.integers(1, 199), st.integers(0, 59))
def test_splitting_a_window_changes_nothing(increments: list[float], cut: int, offset_s: int) -> None:
    t = np.arange(len(increments) + 1, dtype=np.int64) * MIN + offset_s * 1000
    v = np.concatenate(([0.0], np.cumsum(increments)))
    ledger = CounterLedger()
    ledger.recompute(t, v, np.zeros(len(t), dtype=np.int8), 0, int(t[-1]) + 1, 3 * MIN, 0.0)
    split = min(cut, len(increments)) * MIN
    whole = ledger.total(0, int(t[-1]) + 1)
    a, b = ledger.total(0, split), ledger.total(split, int(t[-1]) + 1)
    assert a.delta + b.delta == pytest.approx(whole.delta) == pytest.approx(sum(increments))
    assert a.covered_ms + b.covered_ms == whole.covered_ms


def test_mwh_and_kwh_meters_give_the_same_kwh_per_t(tmp_path: Path) -> None:
    """potroom-aux (SDM630, kWh) against the rectifier's DC energy counter (MWh): a meter reading in MWh
    enters the ratio × 1000, so the same energy gives the same kWh/t."""
    values = []
    for energy_path in ("pl1-ac-meter.forward_active_kwh", "pl1-rectifier.dc_energy_mwh"):
        unit = {"id": "potline-x", "kind": "potline", "cells": 300, "capacity_t_per_year": 1,
                "ac_energy": energy_path, "metal_tapped": "pl1-scale.metal_tapped_t"}
        sub = tmp_path / energy_path.split(".")[0]
        sub.mkdir()
        site = make_site(sub, [], (unit,), period_windows=["day"])
        scale = 1.0 if energy_path.endswith("kwh") else 0.001
        t0 = local_ms(2026, 11, 24, 1)

        def feed(t: int, path: str = energy_path, s: float = scale, t0: int = t0) -> dict[str, dict[str, Reading]]:
            k = (t - t0) // MIN
            device, quantity = path.split(".")
            return {device: {quantity: good(6500.0 * k * s)}, "pl1-scale": {"metal_tapped_t": good(0.5 * k)}}

        values.append(find(run(site, feed, t0, t0 + 30 * MIN), "potline-x", "al_liquid_ac", "day").value)
    assert values[0] == pytest.approx(13_000.0) and values[1] == pytest.approx(values[0])


def test_ledgers_survive_a_restart(tmp_path: Path) -> None:
    site = make_site(tmp_path, ["potline-1"], period_windows=["month"])
    engine = KpiEngine(site, Limits.for_site(site.config))
    store = SeriesStore(engine.needed_readings())
    t0 = local_ms(2026, 11, 24, 8)
    for k in range(90):
        for device, readings in {"pl1-ac-meter": {"forward_active_kwh": good(6500.0 * k)},
                                 "pl1-scale": {"metal_tapped_t": good(0.5 * k)}}.items():
            store.add_message(TelemetryMessage(v=1, site=site.id, device=device, seq=k,
                                               ts=datetime.fromtimestamp((t0 + k * MIN) / 1000, TZ),
                                               readings=readings))
    before = find(engine.evaluate(store, t0 + 90 * MIN), "potline-1", "al_liquid_ac", "month")
    engine.periods.save(tmp_path / "ledgers.json")
    restarted = KpiEngine(site, Limits.for_site(site.config))
    assert restarted.periods.load(tmp_path / "ledgers.json") == len(restarted.periods.ledgers)
    empty = SeriesStore(restarted.needed_readings())  # nothing received since the restart
    after = find(restarted.evaluate(empty, t0 + 90 * MIN), "potline-1", "al_liquid_ac", "month")
    assert after.value == pytest.approx(before.value) == pytest.approx(13_000.0)
    assert after.completeness == pytest.approx(before.completeness)


def test_ledger_forgets_minutes_after_a_day_and_hours_after_a_year() -> None:
    # One increment of 1 kWh per minute for 400 days, pruned as a live service does (every tick; the ledger
    # acts once a day). Kept: minutes of the last 26 h, hours of the last 367 days; a year of hours still
    # sums to 525 600 kWh.
    ledger = CounterLedger(keep_minutes_ms=26 * 60 * MIN)
    day_ms = 1440 * MIN
    t = np.arange(0, 400 * 1440 + 1, dtype=np.int64) * MIN
    v = np.arange(len(t), dtype=np.float64)
    for d in range(400):
        lo, hi = d * 1440, (d + 1) * 1440 + 1
        ledger.recompute(t[lo:hi], v[lo:hi], np.zeros(hi - lo, dtype=np.int8), d * day_ms + MIN,
                         (d + 1) * day_ms + MIN, 2 * MIN, 0.0)
        ledger.prune((d + 1) * day_ms + MIN)
    minutes, hours = ledger.levels[0], ledger.levels[1]
    assert min(minutes) * MIN >= 400 * day_ms + MIN - 26 * 60 * MIN and len(minutes) <= 26 * 60 + 1
    assert min(hours) * 60 * MIN >= 400 * day_ms - 367 * day_ms - 60 * MIN
    end = 400 * day_ms
    assert ledger.total(end - 365 * day_ms, end).delta == pytest.approx(365 * 1440)
    # Restored from disk with old buckets in it, the first prune still finds and drops them.
    restored = CounterLedger.from_json({"minutes": {"0": [1.0, 60_000]}, "hours": {"0": [60.0, 3_600_000]}},
                                       26 * 60 * MIN)
    restored.prune(400 * day_ms)
    assert restored.levels[0] == {} and restored.levels[1] == {} and restored.levels[2] == {}
