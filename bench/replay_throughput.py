"""Replay throughput: a year of one-minute data for the example site through ``alumon replay``.

The data: every reading of the example site's devices (74 per minute, 32 of which analytics uses), polled
once a minute (the site's devices get
``poll_interval_s: 60``, its rolling KPI window one hour), one day simulated by the plant model
(``alumon.sim.plant``) and repeated for the year with the counters running on, wrapping at their register
span with the edge's ``rollover`` flag as they would live. Written once to a CSV, not timed.

Figures (one JSON line each):
* replay throughput in readings/s of ``alumon replay --every 3600`` (a KPI evaluation per hour: rolling
  1 h, shift, day, month and year windows, the CEMS minutes and hours, the alerts), wall clock from start
  to exit of the command, JSON output written to a file;
* the baseline measured in the same run: Arrow's CSV reader alone on the same file (the ceiling of reading),
  and the share of it replay reaches;
* the year-to-date 铝液交流电耗 of potline 1 at the end of the replay against the plant model's design value
  (a throughput figure is worthless if the numbers are wrong).

Usage: ``python bench/replay_throughput.py [--days 365] [--every 3600]``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import yaml
from figures import emit

from alumon.config import Site, load_site
from alumon.profiles import Kind
from alumon.sim.plant import NORMAL_AC_KWH_PER_T, PlantModel
from analytics.kpis import KpiEngine
from analytics.limits import Limits
from analytics.replay_input import open_arrow_csv

REPO = Path(__file__).resolve().parent.parent
MINUTE_S = 60
T0_S = 1_767_196_800  # 2026-01-01T00:00:00Z: a calendar year


def bench_site(tmp: Path) -> Site:
    data = yaml.safe_load((REPO / "examples/guangxi-demo/site.yaml").read_text())
    for device in data["devices"]:
        device["poll_interval_s"] = float(MINUTE_S)
    data["analytics"]["kpi_window_s"] = 3600
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


def write_year(site: Site, days: int, path: Path) -> int:
    """The CSV of every reading the site's devices publish; returns its number of rows."""
    model = PlantModel(site, "normal")
    paths = sorted(f"{device}.{quantity}" for device, quantity in model.values)  # every reading of every device
    day = np.empty((1440, len(paths)))
    for m in range(1440):
        model.step(T0_S + m * MINUTE_S)
        day[m] = [model.values[tuple(p.split(".", 1))] for p in paths]  # type: ignore[index]
    minutes = days * 1440
    values = np.tile(day, (days, 1))
    steps = np.zeros(values.shape, dtype=np.int8)
    for j, p in enumerate(paths):
        device, quantity = p.split(".", 1)
        field = site.profile_of(device).field(quantity)
        if field.kind is not Kind.COUNTER:
            continue
        increments = np.diff(day[:, j], append=2 * day[-1, j] - day[-2, j])  # the day's last step repeats
        total = day[0, j] + np.concatenate(([0.0], np.cumsum(np.tile(increments, days))[:-1]))
        span = float(field.modulus) * field.scale
        wraps = np.floor(total / span)
        values[:, j] = total - wraps * span
        steps[1:, j] = np.diff(wraps) > 0
    t = np.repeat(np.arange(minutes, dtype=np.int64) * MINUTE_S * 1000 + T0_S * 1000, len(paths))
    table = pa.table({
        "time": pc.strftime(pa.array(t, pa.timestamp("ms")), format="%Y-%m-%dT%H:%M:%SZ"),
        "device": pa.DictionaryArray.from_arrays(np.tile(np.arange(len(paths), dtype=np.int32), minutes),
                                                 [p.split(".", 1)[0] for p in paths]),
        "quantity": pa.DictionaryArray.from_arrays(np.tile(np.arange(len(paths), dtype=np.int32), minutes),
                                                   [p.split(".", 1)[1] for p in paths]),
        "value": pa.array(values.ravel().round(4)),
        "quality": pa.DictionaryArray.from_arrays(np.zeros(minutes * len(paths), dtype=np.int32), ["good"]),
        "flags": pa.DictionaryArray.from_arrays(steps.ravel().astype(np.int32), ["", "rollover"]),
    })
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    return table.num_rows


def vm_hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def readings_per_minute(site: Site) -> int:
    return len(PlantModel(site, "normal").values)


def arrow_ceiling(path: Path) -> tuple[float, int]:
    """Arrow's streaming CSV reader alone, the reader replay opens: (seconds, rows)."""
    began = time.perf_counter()
    rows = 0
    for batch in open_arrow_csv(path):
        rows += batch.num_rows
    return time.perf_counter() - began, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--every", type=float, default=3600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alumon-bench-replay-") as d:
        tmp = Path(d)
        site = bench_site(tmp)
        csv_path = tmp / "year.csv"
        rows = write_year(site, args.days, csv_path)
        arrow_s, arrow_rows = arrow_ceiling(csv_path)
        assert arrow_rows == rows
        out = tmp / "kpis.jsonl"
        began = time.perf_counter()
        with subprocess.Popen(
                [sys.executable, "-m", "alumon", "replay", "--site", str(site.path), "--input", str(csv_path),
                 "--every", str(args.every), "--output", str(out)], stderr=subprocess.PIPE, text=True) as proc:
            peak_mb = 0.0
            while proc.poll() is None:  # the child's own high-water mark (ru_maxrss would count the fork)
                peak_mb = max(peak_mb, vm_hwm_mb(proc.pid))
                time.sleep(0.5)
            stderr = proc.stderr.read() if proc.stderr else ""
        replay_s = time.perf_counter() - began
        if proc.returncode != 0:
            sys.exit(f"replay failed: {stderr}")
        replayed = int(re.search(r"replayed (\d+) readings", stderr).group(1))  # type: ignore[union-attr]
        assert replayed == rows, (replayed, rows)
        year = None
        records = 0
        with out.open() as fh:
            for line in fh:
                records += 1
                if '"al_liquid_ac"' in line and '"year"' in line and '"potline-1"' in line:
                    year = json.loads(line)
        extra = {"days": args.days, "every_s": args.every, "csv_mb": round(csv_path.stat().st_size / 2**20)}
        used = rows * len(KpiEngine(site, Limits.for_site(site.config)).needed_readings()) // readings_per_minute(site)
        emit("replay", "replay_throughput", rows / replay_s, "readings/s", readings=rows, seconds=round(replay_s, 1),
             **extra)
        emit("replay", "replay_throughput_used_readings", used / replay_s, "readings/s", readings=used, **extra)
        emit("replay", "arrow_csv_ceiling", arrow_rows / arrow_s, "readings/s", seconds=round(arrow_s, 1), **extra)
        emit("replay", "share_of_ceiling", (rows / replay_s) / (arrow_rows / arrow_s), "ratio", **extra)
        emit("replay", "kpi_records_written", records, "records", **extra)
        emit("replay", "peak_rss", peak_mb, "MB", **extra)
        assert year is not None, "no year-to-date al_liquid_ac for potline-1"
        emit("replay", "year_al_liquid_ac_potline_1", year["value"], "kWh/t", design=NORMAL_AC_KWH_PER_T,
             completeness=year["completeness"], **extra)


if __name__ == "__main__":
    main()
