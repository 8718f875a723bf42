"""Ingest's self-metrics: totals since start (counters) and figures over the last reporting interval
(rate, lag, batch size, write latency), published on the metrics topic and served to Prometheus.

Where each message ends up, exactly once: ``received`` = written directly + buffered on disk + dead-lettered
+ still pending (in memory, unacknowledged). Points: ``buffered`` ones are ``written`` later when the buffer
drains, unless the ``buffer_full`` policy ``dropped`` them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from alumon.prometheus import exposition

HELP = {
    "received_messages": "MQTT messages received on the telemetry topics",
    "written_points": "points InfluxDB accepted (directly or drained from the disk buffer)",
    "buffered_points": "points committed to the disk buffer while InfluxDB was down or behind",
    "dropped_points": "points the buffer_full policy discarded",
    "dead_lettered_messages": "messages refused (schema, unknown device, ...) and kept as dead letters",
    "rejected_lines": "lines InfluxDB refused (partial write or unusable batch)",
    "write_failures": "write attempts that failed and will be retried",
    "buffer_depth_points": "points waiting in the disk buffer",
    "buffer_depth_bytes": "bytes of line protocol waiting in the disk buffer",
    "pending_messages": "messages received and not yet written or buffered (unacknowledged)",
    "write_rate_points_per_s": "points written per second over the last interval",
    "lag_s": "now minus the newest reading time written, at the last write",
    "max_lag_s": "largest lag over the last interval",
    "batch_points_mean": "mean points per write over the last interval",
    "batch_points_max": "largest write over the last interval",
    "write_latency_ms_mean": "mean InfluxDB write time over the last interval",
    "write_latency_ms_max": "slowest InfluxDB write over the last interval",
}


@dataclass
class _Interval:
    started: float = field(default_factory=time.monotonic)
    points: int = 0
    writes: int = 0
    batch_max: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    lag_max_s: float = 0.0


class IngestMetrics:
    COUNTERS = ("received_messages", "written_points", "buffered_points", "dropped_points",
                "dead_lettered_messages", "rejected_lines", "write_failures")

    def __init__(self) -> None:
        self.totals: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        self.lag_s = 0.0
        self._interval = _Interval()
        self._last: dict[str, float] = self._figures(self._interval, time.monotonic())
        self._lock = threading.Lock()  # the network thread counts receipts, the writer thread the rest

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.totals[name] += n

    def written(self, points: int, latency_s: float, newest_ms: int | None) -> None:
        """A write InfluxDB accepted: its size, how long it took and how old its newest reading was."""
        with self._lock:
            self.totals["written_points"] += points
            i = self._interval
            i.points, i.writes, i.batch_max = i.points + points, i.writes + 1, max(i.batch_max, points)
            ms = latency_s * 1000.0
            i.latency_sum_ms, i.latency_max_ms = i.latency_sum_ms + ms, max(i.latency_max_ms, ms)
            if newest_ms is not None:
                self.lag_s = max(0.0, time.time() - newest_ms / 1000.0)
                i.lag_max_s = max(i.lag_max_s, self.lag_s)

    def roll(self) -> None:
        """Close the reporting interval: its figures become the ones reported until the next roll."""
        with self._lock:
            now = time.monotonic()
            self._last = self._figures(self._interval, now)
            self._interval = _Interval(started=now)

    def _figures(self, i: _Interval, now: float) -> dict[str, float]:
        elapsed = max(now - i.started, 1e-9)
        return {"write_rate_points_per_s": i.points / elapsed, "max_lag_s": i.lag_max_s,
                "batch_points_mean": i.points / i.writes if i.writes else 0.0, "batch_points_max": i.batch_max,
                "write_latency_ms_mean": i.latency_sum_ms / i.writes if i.writes else 0.0,
                "write_latency_ms_max": i.latency_max_ms}

    def gauges(self, buffer_points: int, buffer_bytes: int, pending: int) -> dict[str, float]:
        with self._lock:
            return {"buffer_depth_points": buffer_points, "buffer_depth_bytes": buffer_bytes,
                    "pending_messages": pending, "lag_s": self.lag_s, **self._last}

    def snapshot(self, gauges: dict[str, float]) -> dict[str, Any]:
        """The metrics topic's JSON body."""
        with self._lock:
            totals = dict(self.totals)
        return {**totals, **{k: round(v, 3) for k, v in gauges.items()}}

    def prometheus(self, gauges: dict[str, float], labels: dict[str, str]) -> str:
        with self._lock:
            totals = dict(self.totals)
        return exposition("alumon_ingest", totals, gauges, labels, HELP)
