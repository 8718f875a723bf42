"""CEMS validity (HJ 75-2017 §12, HJ 212-2017 data flags): minute values, valid hourly means, exceedance
hours and monthly compliance. Pure functions on arrays, shared by live evaluation and replay.

Flags (standards.md §5.2, table 8): N normal and S set value are valid; F stopped, M maintenance, C
calibration, D fault, T over range, B communication are not. alumon adds H ("insufficient valid data") for an
hour with too few valid minutes, as public HJ 212 implementations do. An hour is valid with at least
``min_valid_minutes`` valid minutes (limits.yaml cems_rules: 45, to verify). Hours whose source was stopped
(F) are never exceedances.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DAS_FLAG_CODES = {0: "N", 1: "F", 2: "M", 3: "S", 4: "D", 5: "C", 6: "T", 7: "B"}  # profile cems-das
VALID_FLAGS = frozenset({"N", "S"})
INSUFFICIENT = "H"
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def flag_of_code(code: float | None) -> str:
    if code is None or code != code:
        return "B"  # no flag from the DAS: treat as a communication failure
    return DAS_FLAG_CODES.get(int(code), "D")


@dataclass(frozen=True)
class Minute:
    start_ms: int
    value: float | None  # mean of the minute's valid samples
    flag: str

    @property
    def valid(self) -> bool:
        return self.flag in VALID_FLAGS and self.value is not None


def minutes(t_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64], flags: list[str]) -> list[Minute]:
    """Group samples into calendar minutes; a minute takes its samples' most common flag, and its value is
    the mean of its valid samples."""
    out: list[Minute] = []
    if len(t_ms) == 0:
        return out
    keys = t_ms // MINUTE_MS
    for key in np.unique(keys):
        idx = np.nonzero(keys == key)[0]
        f = Counter(flags[i] for i in idx).most_common(1)[0][0]
        good = [values[i] for i in idx if flags[i] in VALID_FLAGS and values[i] == values[i]]
        out.append(Minute(int(key) * MINUTE_MS, float(np.mean(good)) if good else None, f))
    return out


@dataclass(frozen=True)
class Hour:
    start_ms: int
    mean: float | None  # mean of the valid minutes (None when there is none)
    valid_minutes: int
    valid: bool
    flag: str  # N for a valid hour, else the dominant invalid flag, or H when minutes are simply missing
    exceeded: bool  # valid and above the limit

    @property
    def stopped(self) -> bool:
        return self.flag == "F"


def hour(start_ms: int, mins: list[Minute], limit: float | None, min_valid_minutes: int) -> Hour:
    inside = [m for m in mins if start_ms <= m.start_ms < start_ms + HOUR_MS]
    good = [m.value for m in inside if m.valid and m.value is not None]
    mean = float(np.mean(good)) if good else None
    if len(good) >= min_valid_minutes:
        exceeded = limit is not None and mean is not None and mean > limit
        return Hour(start_ms, mean, len(good), True, "N", exceeded)
    bad = Counter(m.flag for m in inside if not m.valid)
    flag = bad.most_common(1)[0][0] if bad and sum(bad.values()) >= 60 - min_valid_minutes else INSUFFICIENT
    return Hour(start_ms, mean, len(good), False, flag, False)


@dataclass(frozen=True)
class Compliance:
    valid_hours: int
    compliant_hours: int
    exceedance_hours: int
    share: float | None  # compliant / valid; None without valid hours
    met: bool | None  # share ≥ required share (ultra-low template: 95 % of the month's valid hours)


def compliance(hours: list[Hour], min_share: float) -> Compliance:
    valid = [h for h in hours if h.valid]
    exceed = sum(1 for h in valid if h.exceeded)
    share = (len(valid) - exceed) / len(valid) if valid else None
    return Compliance(len(valid), len(valid) - exceed, exceed, share, None if share is None else share >= min_share)
