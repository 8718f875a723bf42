"""HJ 75-2017 Appendix A conversions (standards.md §4.1), as small pure functions."""

from __future__ import annotations

# A3: mg/m3 = M / 22.4 × ppm at standard conditions (limits.yaml cems_rules.conversions.ppm_to_mgm3)
PPM_TO_MGM3 = {"SO2": 2.86, "NO": 1.34, "NO2": 2.05}


class CorrectionError(ValueError):
    pass


def to_dry(c_wet: float, moisture_pct: float) -> float:
    """A2: C_dry = C_wet / (1 − Xsw/100)."""
    if not 0 <= moisture_pct < 100:
        raise CorrectionError(f"moisture {moisture_pct} % outside 0..100")
    return c_wet / (1.0 - moisture_pct / 100.0)


def o2_correct(c: float, o2_pct: float, o2_ref_pct: float) -> float:
    """A9: C_ref = C × (21 − O2_ref) / (21 − O2). Refused at O2 ≥ 21 % (the factor explodes)."""
    if o2_pct >= 21.0:
        raise CorrectionError(f"O2 {o2_pct} % ≥ 21 %: reference-O2 correction is undefined")
    return c * (21.0 - o2_ref_pct) / (21.0 - o2_pct)


def ppm_to_mgm3(ppm: float, gas: str) -> float:
    return ppm * PPM_TO_MGM3[gas]


STANDARD_PRESSURE_PA = 101_325.0
STANDARD_TEMPERATURE_K = 273.15


def to_standard(c_actual: float, temperature_c: float, absolute_pressure_pa: float) -> float:
    """A1: C_std = C_act × 101325 / (Ba + Ps) × (273 + ts) / 273 (the gas is compressed to 0 °C, 101.325 kPa,
    so the same mass occupies less volume and the concentration rises when the flue is hot)."""
    if absolute_pressure_pa <= 0:
        raise CorrectionError(f"absolute pressure {absolute_pressure_pa} Pa must be positive")
    return (c_actual * STANDARD_PRESSURE_PA / absolute_pressure_pa
            * (STANDARD_TEMPERATURE_K + temperature_c) / STANDARD_TEMPERATURE_K)


def excess_air(o2_pct: float) -> float:
    """A8: α = 21 / (21 − O2)."""
    if o2_pct >= 21.0:
        raise CorrectionError(f"O2 {o2_pct} % ≥ 21 %: excess-air coefficient is undefined")
    return 21.0 / (21.0 - o2_pct)


def excess_air_correct(c: float, o2_pct: float, alpha_ref: float) -> float:
    """A7: C_ref = C × α / α_ref."""
    return c * excess_air(o2_pct) / alpha_ref


def emission_rate_kg_h(c_mgm3: float, flow_m3h: float) -> float:
    """G = C (mg/m3, std dry) × Q (m3/h, std dry) × 1e-6."""
    return c_mgm3 * flow_m3h * 1e-6
