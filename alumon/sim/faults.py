"""Faults the simulator can inject into a device for a while: the edge's failure isolation is tested
against these, through real Modbus stacks, not against mocks.

Written on the command line as ``DEVICE:KIND:START_S:DURATION_S`` (seconds after the simulator starts),
e.g. ``pl2-scale:silent:10:30``.

``silent``, ``exception`` and ``garbled`` act on the device's frames while the window lasts. ``rollover`` is
a meter whose totaliser wraps as a real one does: every unsigned integer counter of the device that counts (a
meter's reverse energy on an importing feeder never gets near its top and is left alone) is served with
a constant offset in register counts, ``(raw + offset) mod wrap`` (the profile's ``rollover``, else 2**bits),
chosen when the simulator starts from the plant model's forecast so that at START_S the register is
DURATION_S/2 seconds of counting below its wrap: it passes through zero in the middle of the window and
counts on from there. The offset never changes, so the energy the register meters is continuous (no jump
at START_S, which would be a huge forward step no meter makes) and the true values (``--trace``) are those
of the plant model; only the register wraps, once (the next wrap is a full register span later). Float
totalisers do not wrap, so a ``rollover`` on a device without an unsigned integer counter is refused, as is
a second one on the same device.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    SILENT = "silent"  # the device stops answering (the master times out)
    EXCEPTION = "exception"  # it answers every read with exception code 4 (device failure)
    GARBLED = "garbled"  # its frames arrive corrupted (RTU: bad CRC; TCP: a wrong transaction id)
    ROLLOVER = "rollover"  # its unsigned integer counters wrap through zero in the middle of the window


FRAME_FAULTS = frozenset({FaultKind.SILENT, FaultKind.EXCEPTION, FaultKind.GARBLED})


@dataclass(frozen=True)
class SimFault:
    device: str
    kind: FaultKind
    start_s: float
    duration_s: float

    def active(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.start_s + self.duration_s


def active_fault(faults: list[SimFault], elapsed_s: float) -> FaultKind | None:
    """The fault acting on the device's frames now (a rollover acts on its registers, not its frames)."""
    for f in faults:
        if f.kind in FRAME_FAULTS and f.active(elapsed_s):
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
