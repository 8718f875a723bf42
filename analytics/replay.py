"""``alumon replay``: recompute every KPI (and the alerts they raise) offline from recorded readings.

Readings come in time-ordered column batches (``analytics.replay_input``: CSV or InfluxDB) and go into the
same ``SeriesStore``, ``KpiEngine`` and ``RuleEngine`` the live service uses, evaluated on the same grid:
at grid point g the store holds exactly the readings taken before g, as it does live (windows end
exclusive). With the site's own ``evaluate_every_s`` live and replay give identical numbers on the same
data. ``every_s`` coarsens the grid for long replays (a year at 1 h is 8 760 evaluations instead of 6.3
million at 5 s): rolling windows, periods, CEMS minutes and hours are still all computed; only how often
the rolling window is sampled and the alerts' pending time resolution change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from alumon.config import Site
from alumon.telemetry import format_ts
from analytics.alert_engine import RuleEngine
from analytics.compliance import MonthlyCompliance
from analytics.kpi_row import KpiRow
from analytics.kpis import KpiEngine
from analytics.limits import Limits
from analytics.replay_input import ReadingBatch, ReplayInputError, csv_batches
from analytics.series import SeriesStore

Progress = Callable[[int, int], None]  # (rows read since the last call, last reading time in ms)


@lru_cache(maxsize=4096)
def _iso_ms(t_ms: int) -> str:
    return format_ts(datetime.fromtimestamp(t_ms / 1000, UTC))  # many rows of an evaluation share a time


def kpi_record(row: KpiRow) -> dict[str, Any]:
    record = {"time": _iso_ms(row.t_ms), "kpi": row.kpi,
              "unit_process": row.unit_process, "window": row.window, "value": row.value, "unit": row.unit,
              "completeness": round(row.completeness, 4), "level": row.level or None,
              "benchmark_met": row.benchmark_met, "limit_source": row.limit_source}
    record.update(row.extra)
    return record


def with_grid(site: Site, every_s: float | None) -> Site:
    """The site evaluated every ``every_s`` seconds instead of its own ``evaluate_every_s``."""
    if every_s is None:
        return site
    analytics = site.config.analytics.model_copy(update={"evaluate_every_s": every_s})
    return replace(site, config=site.config.model_copy(update={"analytics": analytics}))


def replay(site: Site, batches: Callable[[list[str]], Iterable[ReadingBatch]],
           write: Callable[[dict[str, Any]], object], progress: Progress | None = None) -> int:
    """Feed the batches (opened with the paths analytics uses), evaluate on the grid, write one record per
    KPI row and per alert state change. Returns the number of rows read."""
    limits = Limits.for_site(site.config)
    engine = KpiEngine(site, limits)
    store = SeriesStore(engine.needed_readings())
    paths = sorted(store.wanted)
    settings = site.config.analytics
    rules = RuleEngine.for_site(site.config, limits, reminders=False)  # reminders are for mailboxes
    monthly = MonthlyCompliance(limits)
    every_ms = int(settings.evaluate_every_s * 1000)
    next_eval: int | None = None
    rows_read = 0
    last_ms = -(2**62)

    def evaluate(g: int) -> None:
        rows = engine.evaluate(store, g)
        for row in rows:
            write(kpi_record(row))
            if row.kpi.endswith("_hourly"):
                for closed in monthly.add(row):
                    write(kpi_record(closed))
        for alert in rules.evaluate(rows):
            write({"time": format_ts(alert.last_seen), "incident": alert.id, "rule": alert.rule,
                   "unit_process": alert.unit_process, "state": alert.state.value, "value": alert.value,
                   "limit": alert.limit, "limit_source": alert.limit_source})
        store.trim(g - engine.retention_ms)

    for batch in batches(paths):
        rows_read += batch.rows
        t = batch.t_ms
        if len(t):
            backwards = np.flatnonzero(np.diff(t, prepend=last_ms) < 0)
            if len(backwards):
                bad = int(t[backwards[0]])
                raise ReplayInputError(f"readings must be in time order: {_iso_ms(bad)} comes after "
                                       f"{_iso_ms(last_ms if backwards[0] == 0 else int(t[backwards[0] - 1]))}")
            if next_eval is None:
                next_eval = (int(t[0]) // every_ms + 1) * every_ms
            done = 0
            while next_eval <= t[-1]:
                upto = int(np.searchsorted(t, next_eval, side="left"))  # readings taken before the grid point
                _add(store, paths, batch, done, upto)
                done = upto
                evaluate(next_eval)
                next_eval += every_ms
            _add(store, paths, batch, done, len(t))
            last_ms = int(t[-1])
        if progress is not None:
            progress(batch.rows, last_ms)
    if next_eval is not None:
        while next_eval <= last_ms + every_ms:  # through the grid point that follows the last reading
            evaluate(next_eval)
            next_eval += every_ms
    for current in monthly.month_to_date():
        write(kpi_record(current))
    return rows_read


def _add(store: SeriesStore, paths: list[str], batch: ReadingBatch, lo: int, hi: int) -> None:
    """Readings lo..hi of the batch into their series."""
    s = slice(lo, hi)
    store.add_columns(paths, batch.t_ms[s], batch.path[s], batch.value[s], batch.good[s], batch.step[s])


def replay_csv(site: Site, input_path: Path, output: BinaryIO, progress: Progress | None = None) -> int:
    return replay(site, lambda paths: csv_batches(input_path, paths), json_lines(output), progress)


def json_lines(output: BinaryIO) -> Callable[[dict[str, Any]], object]:
    """One UTF-8 JSON object per line (orjson: a year of KPI records is millions of lines)."""
    return lambda rec: output.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
