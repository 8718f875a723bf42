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


Buckets = dict[int, tuple[float, int]]  # bucket index (time // its length) -> (delta, covered ms)
LEVEL_MS = (MINUTE_MS, HOUR_MS, DAY_MS, WEEK_MS)  # minutes, hours, UTC days, 7-day weeks since the epoch
MINUTES, HOURS = 0, 1  # the levels kept on disk; the coarser ones are sums of hours


@dataclass
class CounterLedger:
    keep_minutes_ms: int = 26 * HOUR_MS
    levels: list[Buckets] = field(default_factory=lambda: [{} for _ in LEVEL_MS])
    _pruned_ms: int = 0
    _floors: list[int | None] = field(default_factory=lambda: [None for _ in LEVEL_MS])  # all pruned below

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
        minutes = self.levels[MINUTES]
        index = np.arange(first, last + 1)
        kept = (deltas != 0) | (covered != 0)
        for m in index[~kept].tolist():
            minutes.pop(m, None)
        minutes.update(zip(index[kept].tolist(), zip(deltas[kept].tolist(), covered[kept].astype(np.int64).tolist(),
                                                     strict=True), strict=True))
        for level in range(HOURS, len(LEVEL_MS)):
            for i in range(from_ms // LEVEL_MS[level], (to_ms - 1) // LEVEL_MS[level] + 1):
                self._rebuild(level, i)

    def _rebuild(self, level: int, index: int) -> None:
        """Bucket ``index`` of a level as the sum of its buckets one level finer."""
        per = LEVEL_MS[level] // LEVEL_MS[level - 1]
        delta, covered = _add(self.levels[level - 1], range(index * per, index * per + per))
        if delta or covered:  # neither is ever negative: zero means no finer bucket
            self.levels[level][index] = (delta, covered)
        else:
            self.levels[level].pop(index, None)

    def prune(self, now_ms: int) -> None:
        if now_ms - self._pruned_ms < DAY_MS:
            return  # memory, not correctness: once a day is enough, and a tick must not walk a year of hours
        self._pruned_ms = now_ms
        for level, buckets in enumerate(self.levels):
            oldest = (now_ms - (self.keep_minutes_ms if level == MINUTES else KEEP_HOURS_MS)) // LEVEL_MS[level]
            floor = self._floors[level]
            if floor is None:  # first prune (e.g. after loading from disk): find the oldest bucket once
                floor = min(buckets, default=oldest)
            for i in range(floor, oldest):  # only what aged out since the last prune, not a walk over a year
                buckets.pop(i, None)
            self._floors[level] = max(floor, oldest)

    def total(self, start_ms: int, end_ms: int) -> CounterDelta:
        """Increments and coverage of the minutes from start_ms (a minute boundary) up to end_ms: whole weeks
        from the week buckets, whole days, hours and minutes at the ragged ends from theirs."""
        delta, covered = self._sum(MINUTES, start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS))
        return CounterDelta(delta, covered)

    def _sum(self, level: int, first: int, end: int) -> tuple[float, int]:
        """Sum of the buckets [first, end) of a level, from the next coarser level where whole ones fit."""
        buckets = self.levels[level]
        if level + 1 == len(LEVEL_MS):
            return _add(buckets, range(first, end))
        per_coarser = LEVEL_MS[level + 1] // LEVEL_MS[level]
        inner_first, inner_end = -(-first // per_coarser), end // per_coarser
        if inner_first >= inner_end:
            return _add(buckets, range(first, end))
        d1, c1 = _add(buckets, range(first, inner_first * per_coarser))
        d2, c2 = self._sum(level + 1, inner_first, inner_end)
        d3, c3 = _add(buckets, range(inner_end * per_coarser, end))
        return d1 + d2 + d3, c1 + c2 + c3

    def to_json(self) -> dict[str, Any]:
        return {"minutes": {str(k): v for k, v in self.levels[MINUTES].items()},
                "hours": {str(k): v for k, v in self.levels[HOURS].items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], keep_minutes_ms: int) -> CounterLedger:
        ledger = cls(keep_minutes_ms)
        for level, name in ((MINUTES, "minutes"), (HOURS, "hours")):
            ledger.levels[level] = {int(k): (float(v[0]), int(v[1])) for k, v in data.get(name, {}).items()}
        for level in range(HOURS + 1, len(LEVEL_MS)):
            per = LEVEL_MS[level] // LEVEL_MS[level - 1]
            for i in {j // per for j in ledger.levels[level - 1]}:
                ledger._rebuild(level, i)
        return ledger


def _add(buckets: Buckets, indices: range) -> tuple[float, int]:
    parts = [p for p in map(buckets.get, indices) if p is not None]
    if not parts:
        return 0.0, 0
    deltas, covered = zip(*parts, strict=True)
    return float(sum(deltas)), sum(covered)
