"""HJ 75-2017 Appendix A conversions, computed by hand."""

from __future__ import annotations

import pytest

from analytics.emissions import CorrectionError, emission_rate_kg_h, o2_correct, ppm_to_mgm3, to_dry


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
