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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DAS_FLAG_CODES = {0: "N", 1: "F", 2: "M", 3: "S", 4: "D", 5: "C", 6: "T", 7: "B"}  # profile cems-das
VALID_FLAGS = frozenset({"N", "S"})
INSUFFICIENT = "H"
_ALPHABET = np.array(sorted({*DAS_FLAG_CODES.values(), INSUFFICIENT}))  # every flag a sample can carry
_LETTERS: list[str] = _ALPHABET.tolist()
_VALID_CODES = np.isin(_ALPHABET, sorted(VALID_FLAGS))
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Corrected:
    """A pollutant's samples corrected to the limit's reference conditions, with their flags and, where the
    stack measures its flow, the emission rate (kg/h, NaN without a flow reading)."""

    t: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    flags: npt.NDArray[np.str_]
    rate: npt.NDArray[np.float64]

    def between(self, start_ms: int, end_ms: int) -> Corrected:
        i, j = np.searchsorted(self.t, [start_ms, end_ms])
        return Corrected(self.t[i:j], self.value[i:j], self.flags[i:j], self.rate[i:j])


def flags_of_codes(codes: npt.NDArray[np.float64]) -> npt.NDArray[np.str_]:
    """The DAS's numeric flag per sample as its HJ 212 letter: no flag (NaN) is a communication failure (B),
    a code the profile does not define is a fault (D)."""
    out = np.full(len(codes), "D", dtype="<U1")
    out[np.isnan(codes)] = "B"
    for code, letter in DAS_FLAG_CODES.items():
        out[codes == code] = letter
    return out


@dataclass(frozen=True)
class Minute:
    start_ms: int
    value: float | None  # mean of the minute's valid samples
    flag: str
    rate: float | None = None  # mean emission rate (kg/h) of its valid samples that have one

    @property
    def rate_valid(self) -> bool:
        return self.flag in VALID_FLAGS and self.rate is not None

    @property
    def valid(self) -> bool:
        return self.flag in VALID_FLAGS and self.value is not None


def minutes(t_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
            flags: Sequence[str] | npt.NDArray[np.str_], rates: npt.NDArray[np.float64] | None = None) -> list[Minute]:
    """Group samples into calendar minutes; a minute takes its samples' most common flag (on a tie, the one
    seen first), and its value is the mean of its valid samples; with ``rates``, its rate is the mean over
    the valid-flagged samples that have a rate (one pass for concentration and emission rate)."""
    if len(t_ms) == 0:
        return []
    keys, inverse = np.unique(t_ms // MINUTE_MS, return_inverse=True)
    codes = np.searchsorted(_ALPHABET, np.asarray(flags, dtype=_ALPHABET.dtype))
    if not np.array_equal(_ALPHABET[np.minimum(codes, len(_ALPHABET) - 1)], np.asarray(flags)):
        raise ValueError(f"unknown HJ 212 flag in {sorted(set(np.asarray(flags).tolist()))}")
    cells = inverse * len(_ALPHABET) + codes
    counts = np.bincount(cells, minlength=len(keys) * len(_ALPHABET)).reshape(len(keys), len(_ALPHABET))
    first = np.full(len(keys) * len(_ALPHABET), len(codes))
    np.minimum.at(first, cells, np.arange(len(codes)))
    first = first.reshape(counts.shape)
    flag = np.where(counts == counts.max(axis=1, keepdims=True), first, len(codes)).argmin(axis=1)
    valid_flag = _VALID_CODES[codes]
    means, n_valid = _means(inverse, len(keys), values, valid_flag)
    if rates is None:
        return [Minute(k * MINUTE_MS, m if n else None, _LETTERS[f])
                for k, m, n, f in zip(keys.tolist(), means, n_valid, flag.tolist(), strict=True)]
    rate_means, n_rates = _means(inverse, len(keys), rates, valid_flag)
    return [Minute(k * MINUTE_MS, m if n else None, _LETTERS[f], r if nr else None)
            for k, m, n, f, r, nr in zip(keys.tolist(), means, n_valid, flag.tolist(), rate_means, n_rates,
                                         strict=True)]


def _means(inverse: npt.NDArray[np.intp], n_keys: int, values: npt.NDArray[np.float64],
           valid_flag: npt.NDArray[np.bool_]) -> tuple[list[float], list[float]]:
    """Per minute: mean of the values whose flag is valid and which are not NaN, and how many there were."""
    valid = valid_flag & ~np.isnan(values)
    n_valid = np.bincount(inverse, weights=valid, minlength=n_keys)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.bincount(inverse, weights=np.where(valid, values, 0.0), minlength=n_keys) / n_valid
    return means.tolist(), n_valid.tolist()


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
