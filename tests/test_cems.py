"""HJ 75 validity by hand: minute flags, the 45-of-60 rule, calibration and stopped hours, compliance."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.cems import HOUR_MS, MINUTE_MS, Minute, compliance, flags_of_codes, hour, minutes


def minute_list(valid: int, value: float, fill_flag: str | None = None) -> list[Minute]:
    """`valid` valid minutes at `value`, the rest of the hour flagged `fill_flag` (or missing)."""
    out = [Minute(i * MINUTE_MS, value, "N") for i in range(valid)]
    if fill_flag is not None:
        out += [Minute(i * MINUTE_MS, value, fill_flag) for i in range(valid, 60)]
    return out


def test_flag_codes() -> None:
    assert flags_of_codes(np.arange(8.0)).tolist() == list("NFMSDCTB")
    assert flags_of_codes(np.array([np.nan, 42.0, 4.5])).tolist() == ["B", "D", "D"]


def test_minutes_group_samples() -> None:
    # Two minutes of 1 s samples: minute 0 all N at 30 mg/m3 except one C sample; minute 1 mostly C.
    t = np.arange(120, dtype=np.int64) * 1000
    v = np.full(120, 30.0)
    v[61:] = 99.0  # values during calibration (span gas) must not enter the mean
    flags = ["N"] * 59 + ["C"] + ["N"] + ["C"] * 59
    (m0, m1) = minutes(t, v, flags)
    assert (m0.flag, m0.value, m0.valid) == ("N", 30.0, True)
    assert (m1.flag, m1.valid) == ("C", False)


def test_minute_emission_rate_uses_valid_samples_that_have_a_rate() -> None:
    # Minute 0: rates 10, 20, NaN (no flow reading), 1000 (flagged M): mean of 10 and 20 = 15 kg/h.
    # Minute 1: concentration NaN on one sample does not hide its rate; no flow at all gives no rate.
    t = np.array([0, 1000, 2000, 3000, 60_000, 61_000], dtype=np.int64)
    v = np.array([30.0, 30.0, 30.0, 30.0, np.nan, 40.0])
    rate = np.array([10.0, 20.0, np.nan, 1000.0, np.nan, np.nan])
    (m0, m1) = minutes(t, v, ["N", "N", "N", "M", "N", "N"], rate)
    assert (m0.value, m0.rate, m0.rate_valid) == (30.0, 15.0, True)
    assert (m1.value, m1.rate, m1.rate_valid) == (40.0, None, False)
    assert minutes(t, v, ["N"] * 6)[0].rate is None  # no rates asked for


def test_44_valid_minutes_is_invalid_and_45_is_valid() -> None:
    h44 = hour(0, minute_list(44, 40.0), limit=35.0, min_valid_minutes=45)
    assert (h44.valid, h44.flag, h44.exceeded, h44.valid_minutes) == (False, "H", False, 44)
    h45 = hour(0, minute_list(45, 40.0), limit=35.0, min_valid_minutes=45)
    assert (h45.valid, h45.flag, h45.exceeded, h45.mean) == (True, "N", True, 40.0)


def test_calibration_and_stopped_hours_are_never_exceedances() -> None:
    cal = hour(0, minute_list(30, 80.0, fill_flag="C"), limit=35.0, min_valid_minutes=45)
    assert (cal.valid, cal.flag, cal.exceeded) == (False, "C", False)
    stopped = hour(0, minute_list(0, 0.0, fill_flag="F"), limit=35.0, min_valid_minutes=45)
    assert stopped.stopped and not stopped.exceeded


def test_monthly_compliance_by_hand() -> None:
    # 720 hours: 700 valid (14 of them above the limit), 20 invalid. Compliance = 686 / 700 = 98.0 % >= 95 %.
    hours = [hour(i * HOUR_MS, [Minute(i * HOUR_MS + m * MINUTE_MS, 50.0 if i < 14 else 20.0, "N")
                                for m in range(60)], 35.0, 45) for i in range(700)]
    hours += [hour(i * HOUR_MS, [], 35.0, 45) for i in range(700, 720)]
    c = compliance(hours, 0.95)
    assert (c.valid_hours, c.exceedance_hours, c.compliant_hours) == (700, 14, 686)
    assert c.share == pytest.approx(0.98) and c.met is True
    assert compliance(hours[:20], 0.95).met is False  # 20 hours, 14 exceedances
    assert compliance([], 0.95).share is None
