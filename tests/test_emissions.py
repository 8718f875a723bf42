"""HJ 75-2017 Appendix A conversions, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.emissions import (
    CorrectionError,
    emission_rate_kg_h,
    excess_air,
    excess_air_correct,
    o2_correct,
    ppm_to_mgm3,
    to_dry,
    to_standard,
)


def test_wet_to_dry() -> None:
    # A2: 20 mg/m3 wet at 25 % moisture -> 20 / (1 - 0.25) = 26.666...
    assert to_dry(20.0, 25.0) == pytest.approx(26.6667, abs=1e-4)
    assert to_dry(20.0, 0.0) == 20.0


def test_o2_reference_correction() -> None:
    # A9: measured at 4 % O2, reference 8 %: 26.667 × (21 - 8)/(21 - 4) = 26.667 × 13/17 = 20.392
    assert o2_correct(26.6667, 4.0, 8.0) == pytest.approx(20.392, abs=1e-3)


def test_o2_correction_refused_at_21_percent() -> None:
    with pytest.raises(CorrectionError, match="≥ 21"):
        o2_correct(3.0, 21.0, 11.0)


def test_ppm_factors_and_rate() -> None:
    # A3: SO2 64.06/22.4 = 2.86; NO2 46.005/22.4 = 2.05
    assert ppm_to_mgm3(10, "SO2") == pytest.approx(28.6)
    assert ppm_to_mgm3(10, "NO2") == pytest.approx(20.5)
    # 30 mg/m3 × 600 000 m3/h × 1e-6 = 18 kg/h
    assert emission_rate_kg_h(30.0, 600_000.0) == pytest.approx(18.0)


def test_actual_to_standard_conditions() -> None:
    # A1: 20 mg/m3 measured at 160 °C and 100 kPa absolute: 20 × 101325/100000 × 433.15/273.15 = 32.135
    assert to_standard(20.0, 160.0, 100_000.0) == pytest.approx(32.135, abs=1e-3)
    assert to_standard(20.0, 0.0, 101_325.0) == pytest.approx(20.0)


def test_excess_air() -> None:
    # A8: O2 6 % -> α = 21/15 = 1.4; A7 to α_ref 1.4 leaves it, to α_ref 1.2: × 1.4/1.2 = 1.1667
    assert excess_air(6.0) == pytest.approx(1.4)
    assert excess_air_correct(30.0, 6.0, 1.2) == pytest.approx(35.0)
    with pytest.raises(CorrectionError):
        excess_air(21.0)


def test_arrays_mark_impossible_samples_nan() -> None:
    # The same formulas on a stack's samples: the sample at 21 % O2 or 100 % moisture becomes NaN (flag D).
    c = np.array([26.6667, 26.6667, 20.0])
    assert np.allclose(o2_correct(c, np.array([4.0, 21.0, 8.0]), 8.0), [20.392, np.nan, 20.0], atol=1e-3,
                       equal_nan=True)
    assert np.allclose(to_dry(np.array([20.0, 20.0]), np.array([25.0, 100.0])), [26.6667, np.nan], atol=1e-4,
                       equal_nan=True)
    assert np.allclose(to_standard(np.array([20.0, 20.0]), np.array([160.0, 160.0]), np.array([100_000.0, 0.0])),
                       [32.135, np.nan], atol=1e-3, equal_nan=True)
    assert np.allclose(excess_air_correct(np.array([30.0, 30.0]), np.array([6.0, 21.0]), 1.2), [35.0, np.nan],
                       equal_nan=True)
