"""Turn the registers of one read into readings: decode, scale, check the plausible range."""

from __future__ import annotations

from alumon.codec import INTEGER_TYPES, DecodeError, decode
from alumon.profiles import DeviceProfile, RegisterField
from alumon.telemetry import Quality, Reading
from edge.plan import ReadRequest


def field_reading(profile: DeviceProfile, f: RegisterField, registers: list[int], request_address: int) -> Reading:
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
    return Reading(value=value, quality=Quality.GOOD, unit=f.unit)


def request_readings(profile: DeviceProfile, request: ReadRequest, registers: list[int] | None,
                     failure: Quality = Quality.STALE) -> dict[str, Reading]:
    """Readings for every field of a request; ``registers`` None means the read failed."""
    if registers is None or len(registers) < request.count:
        return {f.name: Reading(value=None, quality=failure, unit=f.unit) for f in request.fields}
    return {f.name: field_reading(profile, f, registers, request.address) for f in request.fields}
