"""Faults the simulator can inject into a device for a while: the edge's failure isolation is tested
against these, through real Modbus stacks, not against mocks.

Written on the command line as ``DEVICE:KIND:START_S:DURATION_S`` (seconds after the simulator starts),
e.g. ``pl2-scale:silent:10:30``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    SILENT = "silent"  # the device stops answering (the master times out)
    EXCEPTION = "exception"  # it answers every read with exception code 4 (device failure)
    GARBLED = "garbled"  # its frames arrive corrupted (RTU: bad CRC; TCP: a wrong transaction id)


@dataclass(frozen=True)
class SimFault:
    device: str
    kind: FaultKind
    start_s: float
    duration_s: float

    def active(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.start_s + self.duration_s


def active_fault(faults: list[SimFault], elapsed_s: float) -> FaultKind | None:
    for f in faults:
        if f.active(elapsed_s):
            return f.kind
    return None


def parse_fault(text: str) -> SimFault:
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"expected DEVICE:KIND:START_S:DURATION_S, got {text!r}")
    device, kind, start, duration = parts
    try:
        fault_kind = FaultKind(kind)
    except ValueError:
        raise ValueError(f"unknown fault {kind!r} (known: {', '.join(k.value for k in FaultKind)})") from None
    return SimFault(device, fault_kind, float(start), float(duration))
