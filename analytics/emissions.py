"""HJ 75-2017 Appendix A conversions (standards.md §4.1), as small pure functions.

Each works on a float or on a numpy array of samples. A scalar outside a formula's domain raises
``CorrectionError`` saying why; in an array the same samples become NaN (the caller flags them D, unusable),
so a stack's hour is corrected in one vectorised pass.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

# A3: mg/m3 = M / 22.4 × ppm at standard conditions (limits.yaml cems_rules.conversions.ppm_to_mgm3)
PPM_TO_MGM3 = {"SO2": 2.86, "NO": 1.34, "NO2": 2.05}
STANDARD_PRESSURE_PA = 101_325.0
STANDARD_TEMPERATURE_K = 273.15

Values = TypeVar("Values", float, npt.NDArray[np.float64])


class CorrectionError(ValueError):
    pass


def _within(result: Any, ok: Any, why: str, *args: Any) -> Any:
    """The result where ``ok``; a scalar outside the domain raises (``why`` formatted with ``args``), an array
    gets NaN there."""
    if np.ndim(result) == 0:
        if not bool(ok):
            raise CorrectionError(why.format(*args))
        return float(result)
    return np.where(ok, result, np.nan)


def to_dry(c_wet: Values, moisture_pct: Values) -> Values:
    """A2: C_dry = C_wet / (1 − Xsw/100)."""
    ok = (moisture_pct >= 0) & (moisture_pct < 100)
    with np.errstate(divide="ignore", invalid="ignore"):
        dry = np.divide(c_wet, 1.0 - np.asarray(moisture_pct) / 100.0)
    return _within(dry, ok, "moisture {} % outside 0..100", moisture_pct)  # type: ignore[no-any-return]


def o2_correct(c: Values, o2_pct: Values, o2_ref_pct: float) -> Values:
    """A9: C_ref = C × (21 − O2_ref) / (21 − O2). Refused at O2 ≥ 21 % (the factor explodes)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        corrected = np.multiply(c, (21.0 - o2_ref_pct) / (21.0 - np.asarray(o2_pct)))
    return _within(corrected, np.asarray(o2_pct) < 21.0,  # type: ignore[no-any-return]
                   "O2 {} % ≥ 21 %: reference-O2 correction is undefined", o2_pct)


def ppm_to_mgm3(ppm: Values, gas: str) -> Values:
    return ppm * PPM_TO_MGM3[gas]


def to_standard(c_actual: Values, temperature_c: Values, absolute_pressure_pa: Values) -> Values:
    """A1: C_std = C_act × 101325 / (Ba + Ps) × (273 + ts) / 273 (the gas is compressed to 0 °C, 101.325 kPa,
    so the same mass occupies less volume and the concentration rises when the flue is hot)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.multiply(c_actual, STANDARD_PRESSURE_PA / np.asarray(absolute_pressure_pa)
                          * (STANDARD_TEMPERATURE_K + np.asarray(temperature_c)) / STANDARD_TEMPERATURE_K)
    return _within(std, np.asarray(absolute_pressure_pa) > 0,  # type: ignore[no-any-return]
                   "absolute pressure {} Pa must be positive", absolute_pressure_pa)


def excess_air(o2_pct: Values) -> Values:
    """A8: α = 21 / (21 − O2)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.divide(21.0, 21.0 - np.asarray(o2_pct))
    return _within(alpha, np.asarray(o2_pct) < 21.0,  # type: ignore[no-any-return]
                   "O2 {} % ≥ 21 %: excess-air coefficient is undefined", o2_pct)


def excess_air_correct(c: Values, o2_pct: Values, alpha_ref: float) -> Values:
    """A7: C_ref = C × α / α_ref."""
    return c * excess_air(o2_pct) / alpha_ref


def emission_rate_kg_h(c_mgm3: Values, flow_m3h: Values) -> Values:
    """G = C (mg/m3, std dry) × Q (m3/h, std dry) × 1e-6."""
    return c_mgm3 * flow_m3h * 1e-6
