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


def emission_rate_kg_h(c_mgm3: float, flow_m3h: float) -> float:
    """G = C (mg/m3, std dry) × Q (m3/h, std dry) × 1e-6."""
    return c_mgm3 * flow_m3h * 1e-6
