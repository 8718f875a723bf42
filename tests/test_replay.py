"""`alumon replay`: the live code path offline. Same data -> same KPIs as live, by hand and by parity."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from alumon.config import Site, SiteConfigError, load_site
from alumon.influx import InfluxClient
from alumon.stack import Server
from alumon.telemetry import Reading, TelemetryMessage
from analytics.kpis import KpiEngine
from analytics.limits import Limits
from analytics.replay import kpi_record, replay_csv, with_grid
from analytics.replay_input import ReplayInputError, csv_time_span, read_csv_rows
from analytics.series import STEP_RESET, STEP_ROLLOVER, SeriesStore
from ingest.lines import message_lines
from tests.conftest import write_site

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def site(tmp: Path) -> Site:
    path = write_site(tmp / "site.yaml", analytics={
        "kpi_window_s": 60, "evaluate_every_s": 5, "min_completeness": 0.75, "alert_pending_s": 10})
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dev in data["devices"]:
        if dev["id"] == "cems-calciner":
            dev["poll_interval_s"] = 10.0  # as write_cems_csv's data: the source is not stale between samples
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_site(path)


def write_csv(path: Path, seconds: int, kwh_per_s: float = 480.0, t_per_s: float = 0.0369) -> Path:
    """Potline-1 counters once a second; from 100 s on the energy rate rises so kWh/t passes level 3."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "device", "quantity", "value", "quality"])
        energy, metal = 1_000_000.0, 37.0
        for s in range(seconds):
            ts = (T0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")
            w.writerow([ts, "pl1-ac-meter", "forward_active_kwh", f"{energy:.1f}", "good"])
            w.writerow([ts, "pl1-scale", "metal_tapped_t", f"{metal:.4f}", "good"])
            energy += kwh_per_s * (1.1 if s >= 100 else 1.0)
            metal += t_per_s
    return path


def records(s: Site, csv_path: Path) -> list[dict[str, object]]:
    out = io.BytesIO()
    replay_csv(s, csv_path, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def messages_of(site_id: str, csv_path: Path) -> list[TelemetryMessage]:
    """What the edge sent live: one message per device and poll time, built with the reference CSV reader."""
    grouped: dict[tuple[int, str], dict[str, Reading]] = {}
    for _line, t_ms, device, quantity, value, quality, step in read_csv_rows(csv_path):
        flags = [f for f, code in (("rollover", STEP_ROLLOVER), ("reset", STEP_RESET)) if step == code]
        grouped.setdefault((t_ms, device), {})[quantity] = Reading(value=value, quality=quality, flags=flags)
    return [TelemetryMessage(v=1, site=site_id, device=device, seq=0, ts=datetime.fromtimestamp(t / 1000, UTC),
                             readings=readings) for (t, device), readings in grouped.items()]


def test_hand_computed_kwh_per_tonne(tmp_path: Path) -> None:
    s = site(tmp_path)
    recs = [r for r in records(s, write_csv(tmp_path / "r.csv", 90)) if r.get("kpi") == "al_liquid_ac"]
    # At 00:01:05 the window [00:00:05, 00:01:05) holds samples 5..64 s: 59 one-second steps.
    # 59 × 480 kWh / (59 × 0.0369 t) = 480 / 0.0369 = 13 008.13 kWh/t, completeness 59/60.
    rec = next(r for r in recs if r["time"] == "2026-11-24T00:01:05.000Z")
    assert rec["value"] == pytest.approx(13008.13, abs=0.01)
    assert rec["completeness"] == pytest.approx(59 / 60, abs=1e-4)
    assert rec["level"] == "level3" and rec["benchmark_met"] is False
    assert "GB 21346-2022" in str(rec["limit_source"])
    assert {"time", "kpi", "unit_process", "window", "value", "unit", "completeness", "level", "benchmark_met",
            "limit_source"} <= set(rec)


def test_replay_emits_the_alerts(tmp_path: Path) -> None:
    s = site(tmp_path)
    recs = records(s, write_csv(tmp_path / "r.csv", 240))
    alerts = [r for r in recs if "incident" in r]
    # 13 008 × 1.1 = 14 309 kWh/t once the window is past 100 s: level 3 fires (pending 10 s) exactly once.
    assert [(a["rule"], a["state"]) for a in alerts if a["rule"] == "energy_above_level3"] == [
        ("energy_above_level3", "firing")]


def test_live_and_replay_agree(tmp_path: Path) -> None:
    assert_live_equals_replay(site(tmp_path), write_csv(tmp_path / "r.csv", 150))


def test_live_and_replay_agree_on_hourly_means(tmp_path: Path) -> None:
    s = site(tmp_path)
    live = assert_live_equals_replay(s, write_cems_csv(tmp_path / "cems.csv"))
    assert sum(1 for r in live if r["kpi"] == "so2_hourly") == 4  # 2 hours × 2 stacks


def assert_live_equals_replay(s: Site, csv_path: Path) -> list[dict[str, object]]:
    messages = messages_of(s.id, csv_path)
    # Live: messages arrive 80 ms after their poll time; the service evaluates at wall-clock grid points.
    engine = KpiEngine(s, Limits.for_site(s.config))
    store = SeriesStore(engine.needed_readings())
    live: list[dict[str, object]] = []
    pending = list(messages)
    grid = (messages[0].ts_ms // 5000 + 1) * 5000
    while pending:
        while pending and pending[0].ts_ms + 80 <= grid:
            store.add_message(pending.pop(0))
        live += [kpi_record(r) for r in engine.evaluate(store, grid)]
        grid += 5000
    replayed = [r for r in records(s, csv_path) if "kpi" in r and not str(r["kpi"]).endswith("_monthly_compliance")]
    assert replayed == live
    return live


def test_cli(tmp_path: Path) -> None:
    s_file = write_site(tmp_path / "site.yaml")
    out = tmp_path / "kpis.jsonl"
    result = subprocess.run([sys.executable, "-m", "alumon", "replay", "--site", str(s_file), "--input",
                             str(write_csv(tmp_path / "r.csv", 120)), "--output", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "replayed 240 readings" in result.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert any(r.get("kpi") == "al_liquid_ac" for r in lines)


def test_bad_csv_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,device,quantity,value,quality\n2026-11-24T00:00:00,pl1-scale,metal_tapped_t,1,good\n")
    result = subprocess.run([sys.executable, "-m", "alumon", "replay", "--site", str(write_site(tmp_path / "s.yaml")),
                             "--input", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "line 2" in result.stderr and "UTC offset" in result.stderr


def write_cems_csv(path: Path) -> Path:
    """Calciner DAS every 10 s. Hour 0: SO2 35 mg/m3 wet, 25 % moisture, 4 % O2, flag N. Hour 1: 20 minutes
    of calibration (flag C, span gas 99 mg/m3), then 40 minutes at 20 mg/m3. Then 30 s into hour 2."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "device", "quantity", "value", "quality"])
        for s in range(0, 2 * 3600 + 40, 10):
            ts = (T0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")
            calibrating = 3600 <= s < 3600 + 20 * 60
            so2 = 35.0 if s < 3600 else (99.0 if calibrating else 20.0)
            for quantity, value in (("so2_mgm3", so2), ("o2_pct", 4.0), ("moisture_pct", 25.0),
                                    ("das_flag", 5 if calibrating else 0), ("flow_m3h", 600_000.0)):
                w.writerow([ts, "cems-calciner", quantity, value, "good"])
    return path


def test_valid_hourly_means_exceedance_and_compliance(tmp_path: Path) -> None:
    s = site(tmp_path)
    recs = records(s, write_cems_csv(tmp_path / "cems.csv"))
    hourly = {r["time"]: r for r in recs if r.get("kpi") == "so2_hourly" and r["unit_process"] == "calciner-stack"}
    h0, h1 = hourly["2026-11-24T00:00:00.000Z"], hourly["2026-11-24T01:00:00.000Z"]
    # Hour 0: 35 / (1 - 0.25) = 46.667 dry; × (21 - 8)/(21 - 4) = 13/17 -> 35.686 mg/m3 > 35: one exceedance hour.
    assert h0["value"] == pytest.approx(35.686, abs=1e-3)
    assert (h0["valid"], h0["flag"], h0["exceeded"], h0["valid_minutes"], h0["limit"]) == (True, "N", True, 60, 35.0)
    # Hour 1: 40 valid minutes < 45 -> invalid, flagged C (calibration), never an exceedance; the span-gas
    # values are excluded: 20 / 0.75 × 13/17 = 20.392.
    assert (h1["valid"], h1["flag"], h1["exceeded"], h1["valid_minutes"]) == (False, "C", False, 40)
    assert h1["value"] == pytest.approx(20.392, abs=1e-3)
    # Every applicable limit: ultra-low 35 (exceeded), GB 25465 special 100 and Table 5 400 (not exceeded).
    assert (h0["limit_ultra_low"], h0["exceeded_ultra_low"]) == (35.0, True)
    assert (h0["limit_special"], h0["exceeded_special"], h0["limit_normal"], h0["exceeded_normal"]) == (
        100.0, False, 400.0, False)
    assert "GB 25465-2010" in str(h0["limit_source"]) and "Table 6" in str(h0["limit_source"])
    # Hourly emission (HJ 212 Cou): 35.686 mg/m3 × 600 000 m3/h × 1e-6 = 21.412 kg/h over 60 valid minutes;
    # hour 1: 40 valid minutes × 20.392 × 0.6 / 60 = 8.157 kg.
    assert h0["emission_kg"] == pytest.approx(21.412, abs=1e-3)
    assert h1["emission_kg"] == pytest.approx(8.157, abs=1e-3)
    minutes_ = [r for r in recs if r.get("kpi") == "so2_minute" and r["unit_process"] == "calciner-stack"]
    assert len(minutes_) == 120  # every completed minute exactly once
    assert [r["flag"] for r in minutes_[60:80]] == ["C"] * 20 and minutes_[80]["flag"] == "N"
    alerts = [r for r in recs if r.get("rule") == "emission_hourly_above_ultra_low"]
    assert [(a["state"], a["time"]) for a in alerts] == [("firing", "2026-11-24T00:00:00.000Z")]
    # Early warning: 15 valid minutes into hour 0 its running mean (35.686) is already over 35; it clears once
    # 15 valid minutes of hour 1 (after the 20-minute calibration) average 20.392.
    warnings = [(r["state"], r["time"]) for r in recs if r.get("rule") == "emission_hour_heading_over"
                and r["unit_process"] == "calciner-stack"]
    assert warnings == [("firing", "2026-11-24T00:15:00.000Z"), ("resolved", "2026-11-24T01:35:00.000Z")]
    (month,) = [r for r in recs if r.get("kpi") == "so2_monthly_compliance" and r["unit_process"] == "calciner-stack"]
    # The potroom stack sent nothing: its hours are reported invalid (H), not silently absent.
    potroom = [r for r in recs if r.get("kpi") == "so2_hourly" and r["unit_process"] == "potroom-stack"]
    assert potroom and all((r["valid"], r["flag"], r["value"]) == (False, "H", None) for r in potroom)
    assert (month["valid_hours"], month["exceedance_hours"], month["value"], month["met"]) == (1, 1, 0.0, False)
    assert month["time"] == "2026-11-01T00:00:00.000Z" and month["level"] == "not_compliant"


def test_ppm_at_actual_conditions_converted_in_hj75_order(tmp_path: Path) -> None:
    data = yaml.safe_load(write_site(tmp_path / "base.yaml").read_text())
    for unit in data["process_units"]:
        if unit["id"] == "calciner-stack":
            unit["units"] = {"so2": "ppm"}
            unit["conditions"] = "actual"
    path = tmp_path / "ppm.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    s = load_site(path)
    csv_path = tmp_path / "ppm.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "device", "quantity", "value", "quality"])
        for sec in range(0, 70):
            ts = (T0 + timedelta(seconds=sec)).isoformat().replace("+00:00", "Z")
            for quantity, value in (("so2_mgm3", 10.0), ("temperature_c", 160.0), ("pressure_kpa", 100.0),
                                    ("moisture_pct", 25.0), ("o2_pct", 4.0), ("das_flag", 0)):
                w.writerow([ts, "cems-calciner", quantity, value, "good"])
    recs = [r for r in records(s, csv_path)
            if r.get("kpi") == "so2_corrected" and r["unit_process"] == "calciner-stack"]
    # 10 ppm × 2.86 = 28.6 mg/m3 (A3); × 101325/100000 × 433.15/273.15 (A1) = 45.953; / 0.75 (A2) = 61.271;
    # × 13/17 (A9) = 46.855 mg/m3
    expected = 10 * 2.86 * 101325 / 100000 * (273.15 + 160) / 273.15 / 0.75 * 13 / 17
    assert recs and all(r["value"] == pytest.approx(expected, rel=1e-9) for r in recs)
    assert expected == pytest.approx(46.855, abs=1e-3)


def test_ppm_for_particulate_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(write_site(tmp_path / "base.yaml").read_text())
    data["process_units"][4]["units"] = {"pm": "ppm"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(SiteConfigError, match="only so2 and nox"):
        load_site(path)


def test_rollover_flag_keeps_the_energy_across_a_wrap(tmp_path: Path) -> None:
    # pl1-ac-meter.forward_active_kwh is a u32 × 0.1 kWh: it wraps at 429 496 729.6 kWh. The meter passes the
    # wrap at 00:00:30; with the edge's rollover flag the 480 kWh of that second count, without it they are lost.
    s = site(tmp_path)
    span = 2**32 * 0.1

    def run(with_flag: bool) -> dict[str, object]:
        path = tmp_path / f"wrap_{with_flag}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["time", "device", "quantity", "value", "quality", "flags"])
            energy, metal = span - 30 * 480.0 + 100.0, 37.0
            for sec in range(70):
                ts = (T0 + timedelta(seconds=sec)).isoformat().replace("+00:00", "Z")
                wrapped = sec == 30
                flag = "rollover" if wrapped and with_flag else ""
                w.writerow([ts, "pl1-ac-meter", "forward_active_kwh", f"{energy:.1f}", "good", flag])
                w.writerow([ts, "pl1-scale", "metal_tapped_t", f"{metal:.4f}", "good", ""])
                energy = (energy + 480.0) % span
                metal += 0.0369
        return next(r for r in records(s, path) if r.get("kpi") == "al_liquid_ac"
                    and r["time"] == "2026-11-24T00:01:05.000Z")

    # Window [00:00:05, 00:01:05): 59 steps of 480 kWh and 0.0369 t. With the flag: 480 / 0.0369 = 13 008.13.
    assert run(True)["value"] == pytest.approx(13008.13, abs=0.01)
    # Without: the wrap step looks like a reset (a step backwards) and adds nothing: 58 × 480 / (59 × 0.0369).
    assert run(False)["value"] == pytest.approx(58 * 480 / (59 * 0.0369), abs=0.01)


def test_bad_rows_are_named_by_line(tmp_path: Path) -> None:
    s = site(tmp_path)
    header = "time,device,quantity,value,quality\n"
    good = "2026-11-24T00:00:00Z,pl1-scale,metal_tapped_t,1,good\n"
    cases = {
        "2026-11-24T00:00:01Z,pl1-scale,metal_tapped_t,2,grand\n": "line 3: 'grand' is not a valid Quality",
        "2026-11-24T00:00:01Z,pl1-scale,metal_tapped_t,two,good\n": "line 3: could not convert string to float",
        "2026-11-24T00:00:01+08:00,pl1-scale,metal_tapped_t,2,good\n": "time order",
    }
    for row, message in cases.items():
        path = tmp_path / "bad.csv"
        path.write_text(header + good + row)
        with pytest.raises(ReplayInputError, match=message):
            replay_csv(s, path, io.BytesIO())


def test_progress_reports_every_row_and_the_time_reached(tmp_path: Path) -> None:
    s = site(tmp_path)
    path = write_csv(tmp_path / "r.csv", 120)
    calls: list[tuple[int, int]] = []
    n = replay_csv(s, path, io.BytesIO(), lambda rows, last_ms: calls.append((rows, last_ms)))
    assert n == 240 and sum(rows for rows, _ in calls) == 240
    assert csv_time_span(path) == (int(T0.timestamp() * 1000), int(T0.timestamp() * 1000) + 119_000)
    assert calls[-1][1] == int(T0.timestamp() * 1000) + 119_000


def test_coarser_grid_keeps_every_minute_and_hour(tmp_path: Path) -> None:
    # --every 3600 on the CEMS case: the same hourly means and minute values as the live 5 s grid over the two
    # hours both cover (the coarse grid also closes hour 2, which the data leaves after 40 s).
    s = site(tmp_path)
    path = write_cems_csv(tmp_path / "cems.csv")

    def closed(recs: list[dict[str, object]]) -> list[dict[str, object]]:
        return [r for r in recs if r.get("window") in ("hour", "minute") and str(r["time"]) < "2026-11-24T02"]

    fine = closed(records(s, path))
    out = io.BytesIO()
    replay_csv(with_grid(s, 3600), path, out)
    coarse = closed([json.loads(x) for x in out.getvalue().splitlines()])
    # The CSV has the calciner's SO2 only: its 120 minutes, and 2 hours × 3 pollutants × 2 stacks (most invalid).
    assert sorted(map(str, coarse)) == sorted(map(str, fine)) and len(fine) == 120 + 2 * 3 * 2


def test_replay_from_influxdb_equals_replay_from_csv(tmp_path: Path, influxd: Server,
                                                     influx_db: InfluxClient) -> None:
    s_file = write_site(tmp_path / "site.yaml", analytics={
        "kpi_window_s": 60, "evaluate_every_s": 5, "min_completeness": 0.75, "alert_pending_s": 10},
        connections__influxdb={"url": f"http://127.0.0.1:{influxd.port}", "database": influx_db.database})
    s = load_site(s_file)
    csv_path = write_cems_csv(tmp_path / "cems.csv")
    lines = [line for msg in messages_of(s.id, csv_path) for line in message_lines(msg)]
    for i in range(0, len(lines), 5000):
        assert influx_db.write_lines(lines[i:i + 5000]) is None
    from_csv = records(s, csv_path)
    out = tmp_path / "from_influx.jsonl"
    result = subprocess.run([sys.executable, "-m", "alumon", "replay", "--site", str(s_file),
                             "--from", "2026-11-24T00:00:00Z", "--to", "2026-11-24T11:00:00+08:00",
                             "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"replayed {len(lines)} readings" in result.stderr
    from_influx = [json.loads(x) for x in out.read_text().splitlines()]
    assert from_influx == from_csv and len(from_csv) > 1000


def test_a_stale_scale_raises_one_data_quality_alert_and_no_energy_alert(tmp_path: Path) -> None:
    """Potline 1 at 12 737 kWh/t (below every limit); the crucible scale goes quiet from 50 s to 110 s. With
    the metal counter frozen the window's kWh/t climbs past the benchmark and level 3, which without
    inhibition would raise both; instead one source_stale alert fires, holds them, and resolves."""
    path = tmp_path / "stale.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "device", "quantity", "value", "quality"])
        energy, metal = 1_000_000.0, 37.0
        for s in range(200):
            ts = (T0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")
            w.writerow([ts, "pl1-ac-meter", "forward_active_kwh", f"{energy:.1f}", "good"])
            if not 50 <= s < 110:
                w.writerow([ts, "pl1-scale", "metal_tapped_t", f"{metal:.4f}", "good"])
            energy += 470.0
            metal += 0.0369
    recs = records(site(tmp_path), path)
    values = [float(str(r["value"])) for r in recs
              if r.get("kpi") == "al_liquid_ac" and float(str(r["completeness"])) >= 0.75]
    assert max(values) > 13350  # the frozen counter does push the KPI over level 3
    alerts = [(r["rule"], r["state"], r["time"]) for r in recs if "incident" in r and r["unit_process"] == "potline-1"]
    # Last reading at 49 s: the 55 s evaluation counts 6 missed polls (> 5); back at 110 s, clear at 115 s.
    assert alerts == [("source_stale", "firing", "2026-11-24T00:00:55.000Z"),
                      ("source_stale", "resolved", "2026-11-24T00:01:55.000Z")]
