"""EnPI arithmetic by hand: counter deltas, gaps, resets, completeness and level classification."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.enpi import CounterDelta, classify_al_liquid_ac, counter_delta, ratio
from analytics.limits import Limits

WINDOW_MS = 60_000


def seconds(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int64) * 1000


def test_one_minute_potline_window() -> None:
    # Samples every second for 60 s (61 samples, 60 one-second intervals).
    t = seconds(61)
    energy = 1_000_000 + 480.0 * np.arange(61)  # 480 kWh per second (≈ 1.73 GW·s … a 480 MW potline × 3.6)
    metal = 37.0 + 0.0369 * np.arange(61)  # 0.0369 t per second
    e = counter_delta(t, energy, max_gap_ms=3000)
    m = counter_delta(t, metal, max_gap_ms=3000)
    # ΔE = 60 × 480 = 28 800 kWh; Δm = 60 × 0.0369 = 2.214 t; 28 800 / 2.214 = 13 008.13 kWh/t
    assert e.delta == pytest.approx(28_800)
    assert m.delta == pytest.approx(2.214)
    r = ratio(e, m, WINDOW_MS)
    assert r.value == pytest.approx(13_008.13, abs=0.01)
    assert r.completeness == 1.0


def test_gap_lowers_completeness_and_adds_no_energy() -> None:
    # A 20 s hole: samples at 0..20 s and 40..60 s. Coverage = 20 + 20 = 40 s of 60 -> 0.667.
    t = np.concatenate([seconds(21), seconds(21, start=40)])
    energy = 480.0 * (t / 1000)
    e = counter_delta(t, energy, max_gap_ms=3000)
    assert e.covered_ms == 40_000
    assert e.delta == pytest.approx(40 * 480.0)  # the 9 600 kWh across the hole are not attributed
    assert ratio(e, CounterDelta(3.0, 60_000), WINDOW_MS).completeness == pytest.approx(40 / 60)


def test_reset_contributes_nothing() -> None:
    # 100, 110, 120, then the meter is replaced and restarts at 5, 15: deltas 10 + 10 + (reset: 0) + 10 = 30.
    t = seconds(5)
    e = counter_delta(t, np.array([100.0, 110.0, 120.0, 5.0, 15.0]), max_gap_ms=3000)
    assert e.delta == 30.0
    assert e.covered_ms == 4000


@pytest.mark.parametrize(("value", "level", "benchmark"), [
    (12950, "level1", True), (12950.1, "level2", True), (13000, "level2", True), (13000.1, "level3", False),
    (13350, "level3", False), (13351, "above_level3", False)])
def test_classification_boundaries(value: float, level: str, benchmark: bool) -> None:
    c = classify_al_liquid_ac(value, Limits())
    assert (c.level, c.benchmark_met) == (level, benchmark)
    assert "GB 21346-2022" in c.limit_source and "1609" in c.limit_source


@given(st.integers(2, 200), st.floats(0.1, 1000), st.floats(0.001, 10), st.integers(1, 199))
def test_splitting_a_window_keeps_the_ratio(n: int, e_rate: float, m_rate: float, cut: int) -> None:
    cut = min(cut, n - 1)
    t = seconds(n + 1)
    energy = e_rate * np.arange(n + 1)
    metal = m_rate * np.arange(n + 1)
    whole = ratio(counter_delta(t, energy, 3000), counter_delta(t, metal, 3000), n * 1000)
    a_e, b_e = counter_delta(t[:cut + 1], energy[:cut + 1], 3000), counter_delta(t[cut:], energy[cut:], 3000)
    a_m, b_m = counter_delta(t[:cut + 1], metal[:cut + 1], 3000), counter_delta(t[cut:], metal[cut:], 3000)
    combined = (a_e.delta + b_e.delta) / (a_m.delta + b_m.delta)
    assert whole.value == pytest.approx(combined, rel=1e-9)
    # Unit change: the same energy in MWh gives the same kWh/t after × 1000.
    mwh = counter_delta(t, energy / 1000, 3000)
    assert whole.value == pytest.approx(mwh.delta * 1000 / whole.denominator, rel=1e-9)
