"""Energy performance indicators (numpy): ratios of metered counters over a window, with completeness.

Counter deltas come from consecutive good samples only. A step backwards (meter reset or replacement, or a
rollover the edge did not unwrap) contributes nothing rather than a huge negative or positive delta, and a
gap longer than ``max_gap_ms`` adds neither energy nor coverage: gaps lower completeness, they never invent
energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.limits import Limit, Limits
from analytics.series import STEP_RESET, STEP_ROLLOVER


@dataclass(frozen=True)
class CounterDelta:
    delta: float
    covered_ms: int


def counter_delta(t_ms: npt.NDArray[np.int64], values: npt.NDArray[np.floating[Any]], max_gap_ms: int,
                  steps: npt.NDArray[np.int8] | None = None, wrap_span: float = 0.0) -> CounterDelta:
    """Sum of the counter's increments over consecutive good samples.

    ``steps`` are the edge's flags per sample (see analytics.series): a rollover step adds the counter's span
    (modulus × scale) back, so the energy across the wrap is kept; a reset step contributes nothing."""
    if len(t_ms) < 2:
        return CounterDelta(0.0, 0)
    dt = np.diff(t_ms)
    dv = np.diff(values)
    usable = dt <= max_gap_ms
    if steps is not None:
        s = steps[1:]
        dv = np.where(s == STEP_ROLLOVER, dv + wrap_span, dv)
        usable &= s != STEP_RESET
    usable &= dv >= 0  # an unflagged step backwards is treated as a reset too
    return CounterDelta(float(dv[usable].sum()), int(dt[dt <= max_gap_ms].sum()))


@dataclass(frozen=True)
class RatioResult:
    value: float | None  # None when the denominator did not move
    numerator: float
    denominator: float
    completeness: float  # 0..1, share of the window covered by good data on both sides


def ratio(num: CounterDelta, den: CounterDelta, window_ms: int) -> RatioResult:
    completeness = min(num.covered_ms, den.covered_ms) / window_ms if window_ms > 0 else 0.0
    value = num.delta / den.delta if den.delta > 0 else None
    return RatioResult(value, num.delta, den.delta, min(1.0, completeness))


@dataclass(frozen=True)
class Classification:
    level: str  # level1 | level2 | level3 | above_level3 (the best GB 21346-2022 level met; comparison ≤)
    benchmark_met: bool  # ≤ NDRC benchmark (标杆)
    limit_source: str


def best_level(value: float, levels: list[Limit]) -> str:
    """GB 21346-2022 compares with ≤; levels are given as [level 1, level 2, level 3]."""
    return next((f"level{n}" for n, lim in enumerate(levels, start=1) if value <= lim.value), "above_level3")


def classify_al_liquid_ac(value: float, limits: Limits, indicator: str = "al_liquid_ac") -> Classification:
    levels: list[Limit] = [limits.gb21346_level(indicator, n) for n in (1, 2, 3)]
    benchmark = limits.ndrc("benchmark")  # the NDRC benchmark is defined on 铝液交流电耗 only
    return Classification(best_level(value, levels), value <= benchmark.value,
                          f"{levels[0].source}; {benchmark.source}")
