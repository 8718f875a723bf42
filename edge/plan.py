"""Poll planning: coalesce a profile's fields into the fewest Modbus reads.

Fields of the same function are merged while the hole between them is at most ``max_gap`` registers and the
read stays within ``max_registers_per_read`` (125, the protocol limit for FC03/FC04; 2000 bits for coils and
discrete inputs). A profile with ``one_field_per_request`` gets exactly one read per field.
"""

from __future__ import annotations

from dataclasses import dataclass

from alumon.profiles import DeviceProfile, RegisterField, RegisterFunction


@dataclass(frozen=True)
class ReadRequest:
    function: RegisterFunction
    address: int
    count: int
    fields: tuple[RegisterField, ...]


def plan_reads(profile: DeviceProfile) -> list[ReadRequest]:
    requests: list[ReadRequest] = []
    by_function: dict[RegisterFunction, list[RegisterField]] = {}
    for f in profile.fields:
        by_function.setdefault(profile.function_of(f), []).append(f)
    for function, fields in by_function.items():
        fields = sorted(fields, key=profile.wire_address)
        group: list[RegisterField] = []
        start = end = 0
        for f in fields:
            a = profile.wire_address(f)
            b = a + f.width
            mergeable = not profile.one_field_per_request and a - end <= profile.max_gap
            if group and mergeable and b - start <= profile.max_per_read(function):
                group.append(f)
                end = max(end, b)
                continue
            if group:
                requests.append(ReadRequest(function, start, end - start, tuple(group)))
            group, start, end = [f], a, b
        if group:
            requests.append(ReadRequest(function, start, end - start, tuple(group)))
    return requests
