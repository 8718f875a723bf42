"""Poll planning: coalesce a profile's fields into the fewest Modbus reads.

Fields of the same function are merged while the hole between them is at most ``max_gap`` registers and the
read stays within ``max_registers_per_read`` (125, the protocol limit for FC03/FC04).
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
            b = a + f.count
            if group and a - end <= profile.max_gap and b - start <= profile.max_registers_per_read:
                group.append(f)
                end = max(end, b)
                continue
            if group:
                requests.append(ReadRequest(function, start, end - start, tuple(group)))
            group, start, end = [f], a, b
        if group:
            requests.append(ReadRequest(function, start, end - start, tuple(group)))
    return requests
