"""Counter ledger: each counter's good increments and covered time per minute and per hour, so indicators
over long windows (rolling 24 h, shift, calendar day, month-to-date, year-to-date) are sums of buckets
instead of a year of raw samples in memory.

Each increment between two consecutive good samples belongs to the minute of the later sample, with the
same rules as ``analytics.enpi.counter_delta`` (rollover adds the span back, a reset or a step backwards adds
nothing, a gap longer than ``max_gap_ms`` adds neither energy nor coverage). Every tick recomputes the minutes
the series store still holds raw samples for, so late data (an edge spool replay) lands in the right minute
and recomputing gives the same buckets: the ledger is idempotent. Hours are the sums of their minutes, UTC
days of their hours and weeks of their days, so a year to date adds about 100 buckets, not 525 600; a
minute leaves memory after ``keep_minutes_ms``, its hour, day and week stay for a year and a day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.enpi import CounterDelta
from analytics.series import STEP_RESET, STEP_ROLLOVER

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
KEEP_HOURS_MS = 367 * DAY_MS


@dataclass
class CounterLedger:
    keep_minutes_ms: int = 26 * HOUR_MS
    minutes: dict[int, tuple[float, int]] = field(default_factory=dict)  # minute index -> (delta, covered ms)
    hours: dict[int, tuple[float, int]] = field(default_factory=dict)  # hour index -> (delta, covered ms)
    days: dict[int, tuple[float, int]] = field(default_factory=dict)  # UTC day index -> sums of its hours
    weeks: dict[int, tuple[float, int]] = field(default_factory=dict)  # 7-day index since the epoch -> its days
    _pruned_ms: int = 0

    def recompute(self, t_ms: npt.NDArray[np.int64], values: npt.NDArray[np.floating[Any]],
                  steps: npt.NDArray[np.int8], from_ms: int, to_ms: int, max_gap_ms: int, wrap_span: float) -> None:
        """Rebuild the minutes in [from_ms, to_ms) (from_ms on a minute boundary) from the good samples given,
        which must include the last one before from_ms when there is one."""
        first, last = from_ms // MINUTE_MS, (to_ms - 1) // MINUTE_MS
        n = last - first + 1
        deltas: npt.NDArray[np.float64] = np.zeros(n)
        covered: npt.NDArray[np.float64] = np.zeros(n)
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
            deltas = np.bincount(idx[usable], weights=dv[usable], minlength=n).astype(np.float64)
            covered = np.bincount(idx[inside & short], weights=dt[inside & short], minlength=n).astype(np.float64)
        minutes = self.minutes
        for m, d, c in zip(range(first, last + 1), deltas.tolist(), covered.astype(np.int64).tolist(), strict=True):
            if d or c:
                minutes[m] = (d, c)
            else:
                minutes.pop(m, None)
        for h in range(from_ms // HOUR_MS, (to_ms - 1) // HOUR_MS + 1):
            _rebuild(self.hours, h, self.minutes, 60)
        for d in range(from_ms // DAY_MS, (to_ms - 1) // DAY_MS + 1):
            _rebuild(self.days, d, self.hours, 24)
        for w in range(from_ms // WEEK_MS, (to_ms - 1) // WEEK_MS + 1):
            _rebuild(self.weeks, w, self.days, 7)

    def prune(self, now_ms: int) -> None:
        if now_ms - self._pruned_ms < DAY_MS:
            return  # memory, not correctness: once a day is enough, and a tick must not walk a year of hours
        self._pruned_ms = now_ms
        oldest_minute = (now_ms - self.keep_minutes_ms) // MINUTE_MS
        for m in [m for m in self.minutes if m < oldest_minute]:
            del self.minutes[m]
        oldest_hour = (now_ms - KEEP_HOURS_MS) // HOUR_MS
        for h in [h for h in self.hours if h < oldest_hour]:
            del self.hours[h]
        for d in [d for d in self.days if d < oldest_hour // 24]:
            del self.days[d]
        for w in [w for w in self.weeks if w < oldest_hour // (24 * 7)]:
            del self.weeks[w]

    def total(self, start_ms: int, end_ms: int) -> CounterDelta:
        """Increments and coverage of the minutes from start_ms (a minute boundary) up to end_ms: whole weeks
        from the week buckets, whole days, hours and minutes at the ragged ends from theirs."""
        delta, covered = self._sum(0, start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS))
        return CounterDelta(delta, covered)

    def _sum(self, level: int, first: int, end: int) -> tuple[float, int]:
        """Sum of the buckets [first, end) of a level (minutes, hours, days, weeks), coarser where possible."""
        buckets, per_coarser = _LEVELS[level](self), _PER_COARSER[level]
        if per_coarser == 0:
            return _add(buckets, range(first, end))
        inner_first, inner_end = -(-first // per_coarser), end // per_coarser
        if inner_first >= inner_end:
            return _add(buckets, range(first, end))
        d1, c1 = _add(buckets, range(first, inner_first * per_coarser))
        d2, c2 = self._sum(level + 1, inner_first, inner_end)
        d3, c3 = _add(buckets, range(inner_end * per_coarser, end))
        return d1 + d2 + d3, c1 + c2 + c3

    def to_json(self) -> dict[str, Any]:
        return {"minutes": {str(k): v for k, v in self.minutes.items()},
                "hours": {str(k): v for k, v in self.hours.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], keep_minutes_ms: int) -> CounterLedger:
        ledger = cls(keep_minutes_ms,
                     {int(k): (float(v[0]), int(v[1])) for k, v in data.get("minutes", {}).items()},
                     {int(k): (float(v[0]), int(v[1])) for k, v in data.get("hours", {}).items()})
        for d in {h // 24 for h in ledger.hours}:
            _rebuild(ledger.days, d, ledger.hours, 24)
        for w in {d // 7 for d in ledger.days}:
            _rebuild(ledger.weeks, w, ledger.days, 7)
        return ledger


Buckets = dict[int, tuple[float, int]]
_LEVELS: tuple[Callable[[CounterLedger], Buckets], ...] = (
    lambda g: g.minutes, lambda g: g.hours, lambda g: g.days, lambda g: g.weeks)
_PER_COARSER = (60, 24, 7, 0)  # buckets of a level in one bucket of the next (0: the coarsest)


def _add(buckets: Buckets, indices: range) -> tuple[float, int]:
    delta, covered = 0.0, 0
    for i in indices:
        d, c = buckets.get(i, (0.0, 0))
        delta, covered = delta + d, covered + c
    return delta, covered


def _rebuild(coarse: Buckets, index: int, fine: Buckets, per: int) -> None:
    """Bucket ``index`` of a coarser level as the sum of its ``per`` finer buckets."""
    parts = [fine[i] for i in range(index * per, index * per + per) if i in fine]
    if parts:
        coarse[index] = (sum(p[0] for p in parts), sum(p[1] for p in parts))
    else:
        coarse.pop(index, None)
