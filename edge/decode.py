"""Turn the registers of one read into readings: decode, scale, check the plausible range.

String fields (nameplate, serial number, firmware) are not time series: they are returned separately by
``request_texts`` and published in the device status, not in telemetry."""

from __future__ import annotations

from collections.abc import Callable

from alumon.codec import INTEGER_TYPES, DataType, DecodeError, decode, decode_string
from alumon.profiles import DeviceProfile, Kind, RegisterField
from alumon.telemetry import Quality, Reading
from edge.plan import ReadRequest

# Called with a counter field and its raw value (int for integer types); returns a flag such as "rollover".
CounterCheck = Callable[[RegisterField, int | float], str | None]


def field_reading(profile: DeviceProfile, f: RegisterField, registers: list[int], request_address: int,
                  counter_check: CounterCheck | None = None) -> Reading:
    lo = profile.wire_address(f) - request_address
    try:
        raw = decode(registers[lo:lo + f.width], f.type, profile.order_of(f))
    except DecodeError:
        return Reading(value=None, quality=Quality.BAD, unit=f.unit)
    if f.bit is not None:
        raw = (int(raw) >> f.bit) & 1
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
    numeric = [f for f in request.fields if f.type is not DataType.STRING]
    if registers is None or len(registers) < request.count:
        return {f.name: Reading(value=None, quality=failure, unit=f.unit) for f in numeric}
    return {f.name: field_reading(profile, f, registers, request.address, counter_check) for f in numeric}


def request_texts(profile: DeviceProfile, request: ReadRequest, registers: list[int]) -> dict[str, str]:
    """The string fields of a successful read; one that is not text is left out (and logged by the caller)."""
    texts: dict[str, str] = {}
    for f in request.fields:
        if f.type is DataType.STRING:
            lo = profile.wire_address(f) - request.address
            try:
                texts[f.name] = decode_string(registers[lo:lo + f.width], profile.order_of(f))
            except DecodeError:
                continue
    return texts
