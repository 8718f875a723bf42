"""Turn the registers of one read into readings: decode, scale, check the plausible range."""

from __future__ import annotations

from collections.abc import Callable

from alumon.codec import INTEGER_TYPES, DecodeError, decode
from alumon.profiles import DeviceProfile, Kind, RegisterField
from alumon.telemetry import Quality, Reading
from edge.plan import ReadRequest

# Called with a counter field and its raw value (int for integer types); returns a flag such as "rollover".
CounterCheck = Callable[[RegisterField, int | float], str | None]


def field_reading(profile: DeviceProfile, f: RegisterField, registers: list[int], request_address: int,
                  counter_check: CounterCheck | None = None) -> Reading:
    lo = profile.wire_address(f) - request_address
    try:
        raw = decode(registers[lo:lo + f.count], f.type, profile.order_of(f))
    except DecodeError:
        return Reading(value=None, quality=Quality.BAD, unit=f.unit)
    if f.type in INTEGER_TYPES:
        value = f.to_engineering(int(raw))  # scale after integer decoding: no float rounding of counters
    else:
        value = f.to_engineering(raw)
        if value != value or value in (float("inf"), float("-inf")):
            return Reading(value=None, quality=Quality.BAD, unit=f.unit)
    if f.range is not None and not f.range[0] <= value <= f.range[1]:
        return Reading(value=value, quality=Quality.OUT_OF_RANGE, unit=f.unit)
    flag = counter_check(f, raw) if counter_check is not None and f.kind is Kind.COUNTER else None
    return Reading(value=value, quality=Quality.GOOD, unit=f.unit, flags=[flag] if flag else [])


def request_readings(profile: DeviceProfile, request: ReadRequest, registers: list[int] | None,
                     failure: Quality = Quality.STALE, counter_check: CounterCheck | None = None) -> dict[str, Reading]:
    """Readings for every field of a request; ``registers`` None means the read failed."""
    if registers is None or len(registers) < request.count:
        return {f.name: Reading(value=None, quality=failure, unit=f.unit) for f in request.fields}
    return {f.name: field_reading(profile, f, registers, request.address, counter_check) for f in request.fields}
