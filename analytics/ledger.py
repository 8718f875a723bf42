"""Counter ledger: each counter's good increments and covered time per minute and per hour, so indicators
over long windows (rolling 24 h, shift, calendar day, month-to-date, year-to-date) are sums of buckets
instead of a year of raw samples in memory.

Each increment between two consecutive good samples belongs to the minute of the later sample, with the
same rules as ``analytics.enpi.counter_delta`` (rollover adds the span back, a reset or a step backwards adds
nothing, a gap longer than ``max_gap_ms`` adds neither energy nor coverage). Every tick recomputes the minutes
the series store still holds raw samples for, so late data (an edge spool replay) lands in the right minute
and recomputing gives the same buckets: the ledger is idempotent. Hours are the sums of their minutes; a
minute leaves memory after ``keep_minutes_ms``, its hour stays for a year and a day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.enpi import CounterDelta
from analytics.series import STEP_RESET, STEP_ROLLOVER

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
KEEP_HOURS_MS = 367 * 24 * HOUR_MS


@dataclass
class CounterLedger:
    keep_minutes_ms: int = 26 * HOUR_MS
    minutes: dict[int, tuple[float, int]] = field(default_factory=dict)  # minute index -> (delta, covered ms)
    hours: dict[int, tuple[float, int]] = field(default_factory=dict)  # hour index -> (delta, covered ms)

    def recompute(self, t_ms: npt.NDArray[np.int64], values: npt.NDArray[np.floating[Any]],
                  steps: npt.NDArray[np.int8], from_ms: int, to_ms: int, max_gap_ms: int, wrap_span: float) -> None:
        """Rebuild the minutes in [from_ms, to_ms) (from_ms on a minute boundary) from the good samples given,
        which must include the last one before from_ms when there is one."""
        first, last = from_ms // MINUTE_MS, (to_ms - 1) // MINUTE_MS
        for m in range(first, last + 1):
            self.minutes.pop(m, None)
        if len(t_ms) >= 2:
            dt = np.diff(t_ms)
            dv = np.diff(values)
            s = steps[1:]
            dv = np.where(s == STEP_ROLLOVER, dv + wrap_span, dv)
            inside = (t_ms[1:] >= from_ms) & (t_ms[1:] < to_ms)
            short = dt <= max_gap_ms
            usable = inside & short & (s != STEP_RESET) & (dv >= 0)
            minute = t_ms[1:] // MINUTE_MS
            idx = (minute - first).astype(np.int64)
            n = last - first + 1
            deltas = np.bincount(idx[usable], weights=dv[usable], minlength=n)
            covered = np.bincount(idx[inside & short], weights=dt[inside & short], minlength=n)
            for i in np.flatnonzero((deltas != 0) | (covered != 0)).tolist():
                self.minutes[first + i] = (float(deltas[i]), int(covered[i]))
        for h in range(from_ms // HOUR_MS, (to_ms - 1) // HOUR_MS + 1):
            self._rebuild_hour(h)

    def _rebuild_hour(self, hour: int) -> None:
        m0 = hour * 60
        parts = [self.minutes[m] for m in range(m0, m0 + 60) if m in self.minutes]
        if parts:
            self.hours[hour] = (sum(p[0] for p in parts), sum(p[1] for p in parts))
        else:
            self.hours.pop(hour, None)

    def prune(self, now_ms: int) -> None:
        oldest_minute = (now_ms - self.keep_minutes_ms) // MINUTE_MS
        for m in [m for m in self.minutes if m < oldest_minute]:
            del self.minutes[m]
        oldest_hour = (now_ms - KEEP_HOURS_MS) // HOUR_MS
        for h in [h for h in self.hours if h < oldest_hour]:
            del self.hours[h]

    def total(self, start_ms: int, end_ms: int) -> CounterDelta:
        """Increments and coverage of the minutes from start_ms (a minute boundary) up to end_ms: whole hours
        from the hour buckets, the ragged ends from the minute buckets."""
        m_start, m_end = start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS)  # [m_start, m_end)
        h_start, h_end = -(-m_start // 60), m_end // 60  # whole hours inside
        delta, covered = 0.0, 0
        if h_start >= h_end:
            for m in range(m_start, m_end):
                d, c = self.minutes.get(m, (0.0, 0))
                delta, covered = delta + d, covered + c
            return CounterDelta(delta, covered)
        for m in [*range(m_start, h_start * 60), *range(h_end * 60, m_end)]:
            d, c = self.minutes.get(m, (0.0, 0))
            delta, covered = delta + d, covered + c
        for h in range(h_start, h_end):
            d, c = self.hours.get(h, (0.0, 0))
            delta, covered = delta + d, covered + c
        return CounterDelta(delta, covered)

    def to_json(self) -> dict[str, Any]:
        return {"minutes": {str(k): v for k, v in self.minutes.items()},
                "hours": {str(k): v for k, v in self.hours.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], keep_minutes_ms: int) -> CounterLedger:
        return cls(keep_minutes_ms,
                   {int(k): (float(v[0]), int(v[1])) for k, v in data.get("minutes", {}).items()},
                   {int(k): (float(v[0]), int(v[1])) for k, v in data.get("hours", {}).items()})
