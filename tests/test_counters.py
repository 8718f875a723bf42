"""Counter rollover and reset: flagged at the edge in integer space, turned into the right delta downstream."""

from __future__ import annotations

import numpy as np
import pytest

from alumon.codec import DataType, WordOrder, encode
from alumon.config import BUILTIN_PROFILES_DIR
from alumon.profiles import RegisterField, load_profiles
from alumon.profiles import counter_modulus as modulus_of
from alumon.telemetry import Quality, Reading, TelemetryMessage
from analytics.enpi import counter_delta
from analytics.series import Series, SeriesStore
from edge.counters import RESET, ROLLOVER, CounterTracker, classify_step
from edge.decode import request_readings
from edge.plan import plan_reads

PROFILE = load_profiles(BUILTIN_PROFILES_DIR)["cn-multifunction-u32"]


def test_classify_by_hand() -> None:
    m32 = 2**32
    # 4 294 967 000 -> 200: wrapped step 200 + 4 294 967 296 - 4 294 967 000 = 496 counts: a rollover.
    assert classify_step(4_294_967_000, 200, m32) == ROLLOVER
    # 1 000 000 -> 5: the wrapped step would be ~4.29e9 counts: a reset (meter replaced or cleared).
    assert classify_step(1_000_000, 5, m32) == RESET
    # A meter that wraps at 99 999 999.99 kWh (rollover 10 000 000 000 hundredths): 9 999 999 990 -> 15.
    assert classify_step(9_999_999_990, 15, 10_000_000_000) == ROLLOVER
    assert classify_step(10, 11, m32) is None
    assert modulus_of(None, 2) == m32 and modulus_of(100, 2) == 100


def readings_for(raw: int, tracker: CounterTracker) -> Reading:
    (req,) = [r for r in plan_reads(PROFILE) if any(f.name == "forward_active_kwh" for f in r.fields)]
    regs = [0] * req.count
    offset = PROFILE.wire_address(PROFILE.field("forward_active_kwh")) - req.address
    regs[offset:offset + 2] = encode(raw, DataType.U32, WordOrder.CDAB)

    def check(f: RegisterField, value: int | float) -> str | None:
        assert isinstance(value, int)  # decoded in integer space, never via float
        return tracker.observe("pl1-ac-meter", f.name, value, f.modulus)

    return request_readings(PROFILE, req, regs, counter_check=check)["forward_active_kwh"]


def test_rollover_through_edge_and_analytics() -> None:
    tracker = CounterTracker()
    raws = [4_294_967_280, 4_294_967_290, 10, 20]  # wraps between the 2nd and 3rd poll
    readings = [readings_for(r, tracker) for r in raws]
    assert [r.flags for r in readings] == [[], [], [ROLLOVER], []]
    assert readings[2].quality is Quality.GOOD and readings[2].value == pytest.approx(1.0)  # 10 × 0.1 kWh

    store = SeriesStore({"pl1-ac-meter.forward_active_kwh"})
    for i, reading in enumerate(readings):
        store.add_message(TelemetryMessage.model_validate({
            "v": 1, "site": "gx-demo", "device": "pl1-ac-meter", "seq": i, "ts": f"2026-11-24T00:00:0{i}Z",
            "readings": {"forward_active_kwh": reading.model_dump()}}))
    t, v, steps = store.series["pl1-ac-meter.forward_active_kwh"].counter_window(0, 2**62)
    span = 2**32 * 0.1
    d = counter_delta(t, v, 3000, steps, span)
    # Counts: 10 + (6 + 10) + 10 = 36 counts × 0.1 kWh = 3.6 kWh, not -429 496 727 kWh.
    assert d.delta == pytest.approx(3.6)


def test_reset_contributes_nothing_even_when_upwards() -> None:
    tracker = CounterTracker()
    assert [readings_for(r, tracker).flags for r in (5_000_000, 5_000_100, 300, 400)] == [[], [], [RESET], []]
    store = SeriesStore({"m.q"})
    t = [0, 1000, 2000, 3000]
    for ts, value, flags in zip(t, [500.0, 510.0, 30.0, 40.0], [[], [], [RESET], []], strict=True):
        store.series["m.q"].add(ts, value, True, flags)
    tt, vv, ss = store.series["m.q"].counter_window(0, 10_000)
    assert counter_delta(tt, vv, 3000, ss, 0.0).delta == pytest.approx(20.0)  # 10 before + 10 after the reset


def test_series_keeps_time_order_through_growth_inserts_and_trims() -> None:
    # Appends past the initial capacity, a late sample inserted in place, a redelivered one dropped, a bulk
    # extend, a trim: the window sees exactly the good samples, in order, once each.
    s = Series()
    for ms in range(0, 200_000, 1000):
        s.add(ms, float(ms), True)
    s.add(500, 0.5, True)  # late
    s.add(1000, 99.0, True)  # redelivered: the first one stays
    s.add(2500, None, True)  # no value: not good
    s.extend(np.arange(200_000, 300_000, 1000), np.arange(200.0, 300.0), np.ones(100, bool), np.zeros(100, np.int8))
    times, values = s.window(0, 3000)
    assert times.tolist() == [0, 500, 1000, 2000] and values.tolist() == [0.0, 0.5, 1000.0, 2000.0]
    s.trim(150_000)
    times, _ = s.window(0, 10**9)
    assert times[0] == 150_000 and times[-1] == 299_000 and len(times) == 150 and bool(np.all(np.diff(times) > 0))
