"""Circuit breaker per device: a device that keeps failing is left alone, probed with growing back-off.

On a shared RS-485 bus a dead meter costs (1 + retries) timeouts every cycle, time stolen from every other
device on the bus. After ``failures_to_open`` failed polls in a row the breaker opens: polls are skipped (the
device reports stale readings with the reason) until the back-off expires, then one half-open poll decides:
success closes the breaker, failure reopens it with twice the back-off, up to ``backoff_max_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"  # polled every cycle
    OPEN = "open"  # skipped until the next probe
    HALF_OPEN = "half_open"  # this cycle's poll is the probe


@dataclass
class CircuitBreaker:
    failures_to_open: int
    first_backoff_s: float
    backoff_max_s: float
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    backoff_s: float = 0.0
    next_probe: float = 0.0  # unix seconds
    times_opened: int = 0

    def allows(self, now: float) -> bool:
        """Whether this cycle may touch the device (moves OPEN to HALF_OPEN when the back-off is over)."""
        if self.state is BreakerState.OPEN and now >= self.next_probe:
            self.state = BreakerState.HALF_OPEN
        return self.state is not BreakerState.OPEN

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.state, self.consecutive_failures, self.backoff_s = BreakerState.CLOSED, 0, 0.0
            return
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self._open(now, min(self.backoff_s * 2, self.backoff_max_s))
        elif self.state is BreakerState.CLOSED and self.consecutive_failures >= self.failures_to_open:
            self._open(now, min(self.first_backoff_s, self.backoff_max_s))

    def _open(self, now: float, backoff_s: float) -> None:
        self.state, self.backoff_s, self.next_probe = BreakerState.OPEN, backoff_s, now + backoff_s
        self.times_opened += 1
