"""Counter integrity at the edge: a counter that goes backwards is either a rollover (it wrapped at its
register width or the meter's configured maximum) or a reset (meter replaced, cleared, or a bad read). Both
are flagged on the reading so analytics never turns them into a huge negative or positive delta.

Decision rule: going from ``old`` to ``new < old``, the wrapped step is ``new + modulus - old``. A wrap is
only believed when that step is small (under ``ROLLOVER_MAX_FRACTION`` of the modulus), i.e. the counter was
close to its top; any other backwards step is a reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLLOVER = "rollover"
RESET = "reset"
ROLLOVER_MAX_FRACTION = 0.05


def classify_step(old: int, new: int, modulus: int) -> str | None:
    """None for a normal step, else ``rollover`` or ``reset``."""
    if new >= old:
        return None
    wrapped = new + modulus - old
    return ROLLOVER if 0 <= wrapped < modulus * ROLLOVER_MAX_FRACTION else RESET


@dataclass
class CounterTracker:
    """Last raw value per (device, quantity); lives as long as the agent (a restart starts afresh, and the
    first reading after it carries no flag)."""

    last: dict[tuple[str, str], int] = field(default_factory=dict)

    last_float: dict[tuple[str, str], float] = field(default_factory=dict)

    def observe(self, device: str, quantity: str, raw: int, modulus: int) -> str | None:
        key = (device, quantity)
        old = self.last.get(key)
        self.last[key] = raw
        return None if old is None else classify_step(old, raw, modulus)

    def observe_float(self, device: str, quantity: str, value: float) -> str | None:
        """Float totalisers do not wrap: any step backwards is a reset."""
        key = (device, quantity)
        old = self.last_float.get(key)
        self.last_float[key] = value
        return RESET if old is not None and value < old else None
