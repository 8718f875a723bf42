"""``alumon replay``: recompute every KPI (and the alerts they raise) offline from recorded readings.

Input: CSV with a header ``time,device,quantity,value,quality`` (time ISO 8601 UTC, quality as in the
telemetry contract; empty value = no value). Rows are fed in time order into the same ``SeriesStore``,
``KpiEngine`` and ``RuleEngine`` the live service uses, evaluated on the same grid (``evaluate_every_s``),
so live and replay give identical numbers on the same data.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from alumon.config import Site
from alumon.telemetry import Quality, Reading, TelemetryMessage, format_ts
from analytics.compliance import MonthlyCompliance
from analytics.kpi_row import KpiRow
from analytics.kpis import KpiEngine
from analytics.limits import Limits
from analytics.rules import RuleEngine
from analytics.series import SeriesStore

CSV_COLUMNS = ("time", "device", "quantity", "value", "quality")


class ReplayInputError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    t_ms: int
    device: str
    quantity: str
    value: float | None
    quality: Quality


def read_csv(fh: TextIO) -> Iterator[Sample]:
    reader = csv.DictReader(fh)
    if reader.fieldnames is None or tuple(reader.fieldnames[:5]) != CSV_COLUMNS:
        raise ReplayInputError(f"CSV header must start with {','.join(CSV_COLUMNS)}, got {reader.fieldnames}")
    for n, row in enumerate(reader, start=2):
        try:
            ts = datetime.fromisoformat(row["time"].replace("Z", "+00:00"))
            if ts.tzinfo is None:
                raise ValueError("time must carry a UTC offset")
            value = float(row["value"]) if row["value"] not in ("", None) else None
            yield Sample(round(ts.timestamp() * 1000), row["device"], row["quantity"], value,
                         Quality(row["quality"] or "good"))
        except ValueError as exc:
            raise ReplayInputError(f"line {n}: {exc}") from exc


def samples_to_messages(site_id: str, samples: Iterable[Sample]) -> Iterator[TelemetryMessage]:
    """Group consecutive samples of one device and timestamp into a message (what the edge would have sent)."""
    key: tuple[int, str] | None = None
    readings: dict[str, Reading] = {}
    for s in samples:
        if key is not None and (s.t_ms, s.device) != key:
            yield _message(site_id, key, readings)
            readings = {}
        key = (s.t_ms, s.device)
        readings[s.quantity] = Reading(value=s.value, quality=s.quality)
    if key is not None:
        yield _message(site_id, key, readings)


def _message(site_id: str, key: tuple[int, str], readings: dict[str, Reading]) -> TelemetryMessage:
    return TelemetryMessage(v=1, site=site_id, device=key[1], seq=0,
                            ts=datetime.fromtimestamp(key[0] / 1000, UTC), readings=readings)


def kpi_record(row: KpiRow) -> dict[str, Any]:
    return {"time": format_ts(datetime.fromtimestamp(row.t_ms / 1000, UTC)), "kpi": row.kpi,
            "unit_process": row.unit_process, "window": row.window, "value": row.value, "unit": row.unit,
            "completeness": round(row.completeness, 4), "level": row.level or None,
            "benchmark_met": row.benchmark_met, "limit_source": row.limit_source, **dict(row.extra)}


def replay(site: Site, messages: Iterable[TelemetryMessage], write: Callable[[dict[str, Any]], object],
           progress: Callable[[int], None] | None = None) -> int:
    """Feed messages in time order, evaluate on the live grid, write one record per KPI row and per alert
    state change. Returns the number of readings consumed."""
    limits = Limits.for_site(site.config)
    engine = KpiEngine(site, limits)
    store = SeriesStore(engine.needed_readings())
    settings = site.config.analytics
    rules = RuleEngine(site.id, limits, settings.alert_pending_s, settings.min_completeness)
    monthly = MonthlyCompliance(limits)
    every_ms = int(settings.evaluate_every_s * 1000)
    next_eval: int | None = None
    consumed = 0

    def evaluate_until(t_ms: int) -> None:
        nonlocal next_eval
        while next_eval is not None and next_eval <= t_ms:
            rows = engine.evaluate(store, next_eval)
            for row in rows:
                write(kpi_record(row))
                if row.kpi.endswith("_hourly"):
                    for closed in monthly.add(row):
                        write(kpi_record(closed))
            for alert in rules.evaluate(rows):
                write({"time": format_ts(alert.last_seen), "incident": alert.id, "rule": alert.rule,
                       "unit_process": alert.unit_process, "state": alert.state.value, "value": alert.value,
                       "limit": alert.limit, "limit_source": alert.limit_source})
            store.trim(next_eval - engine.retention_ms)
            next_eval += every_ms

    last_ms = 0
    for msg in messages:
        t = msg.ts_ms
        if t < last_ms:
            raise ReplayInputError(f"readings must be in time order: {format_ts(msg.ts)} after a later one")
        if next_eval is None:
            next_eval = (t // every_ms + 1) * every_ms
        evaluate_until(t)  # grid points up to t see the samples before t (windows end exclusive), as live
        store.add_message(msg)
        consumed += len(msg.readings)
        last_ms = t
        if progress is not None:
            progress(len(msg.readings))
    evaluate_until(last_ms + every_ms)  # through the grid point that follows the last reading
    for current in monthly.month_to_date():
        write(kpi_record(current))
    return consumed


def replay_csv(site: Site, input_path: Path, output: TextIO, progress: Callable[[int], None] | None = None) -> int:
    with input_path.open(encoding="utf-8", newline="") as fh:
        return replay(site, samples_to_messages(site.id, read_csv(fh)),
                      lambda rec: output.write(json.dumps(rec, ensure_ascii=False) + "\n"), progress)
