"""Polls one device on a fixed schedule through its line. Each device has its own task, so a device that
hangs, refuses or answers garbage only ever delays itself and, on a shared serial bus, is put behind a
circuit breaker so it stops stealing the bus from its neighbours."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from alumon.config import Device
from alumon.profiles import DeviceProfile, RegisterField
from alumon.telemetry import Quality, Reading
from edge.breaker import BreakerState, CircuitBreaker
from edge.counters import CounterTracker
from edge.decode import request_readings, request_texts
from edge.lines import ModbusLine, ReadFailure
from edge.plan import ReadRequest, plan_reads

log = logging.getLogger("alumon.edge.poller")

# A device that answered with an exception code, a short or a garbled frame gave *bad* data; one that gave
# nothing (timeout, refused, dropped, skipped by the breaker) leaves its last value *stale*.
_FAILURE_QUALITY = {"exception": Quality.BAD, "short": Quality.BAD, "garbled": Quality.BAD}


@dataclass
class PollResult:
    device: str
    poll_time: float  # unix seconds, the scheduled poll instant
    readings: dict[str, Reading]
    ok: bool
    reason: str = ""
    state: BreakerState = BreakerState.CLOSED
    skipped: bool = False  # the breaker kept this cycle off the device


@dataclass
class DeviceHealth:
    polls_ok: int = 0
    polls_failed: int = 0
    polls_skipped: int = 0  # cycles the breaker kept off the device
    missed_cycles: int = 0  # grid slots skipped because a cycle overran
    last_cycle_s: float = 0.0
    max_cycle_s: float = 0.0
    reason: str = ""
    failures: Counter[str] = field(default_factory=Counter)  # by kind: timeout, exception, short, io, connect
    identity: dict[str, str] = field(default_factory=dict)  # string fields: model, serial number, firmware


class DevicePoller:
    def __init__(self, device: Device, profile: DeviceProfile, line: ModbusLine,
                 on_result: Callable[[PollResult], None]):
        self.device = device
        self.profile = profile
        self.line = line
        self.requests = plan_reads(profile)
        self.on_result = on_result
        self.health = DeviceHealth()
        self.counters = CounterTracker()
        self.breaker = CircuitBreaker(device.failures_to_open, first_backoff_s=max(2 * device.poll_interval_s, 2.0),
                                      backoff_max_s=device.backoff_max_s)

    def _stale(self, requests: list[ReadRequest], quality: Quality = Quality.STALE) -> dict[str, Reading]:
        out: dict[str, Reading] = {}
        for req in requests:
            out.update(request_readings(self.profile, req, None, quality))
        return out

    async def poll_once(self, poll_time: float) -> PollResult:
        if not self.breaker.allows(time.time()):
            self.health.polls_skipped += 1
            wait = max(0.0, self.breaker.next_probe - time.time())
            reason = (f"circuit open after {self.breaker.consecutive_failures} failed polls "
                      f"({self.health.reason}); next probe in {wait:.0f} s")
            return PollResult(self.device.id, poll_time, self._stale(self.requests), False, reason,
                              self.breaker.state, skipped=True)
        readings: dict[str, Reading] = {}
        reasons: list[str] = []
        started = time.monotonic()
        async with self.line.lock:  # uncontended for a TCP device; the bus turn for a serial one
            for i, req in enumerate(self.requests):
                try:
                    registers = await self.line.read(req, self.device)
                except ReadFailure as failure:
                    self.health.failures[failure.kind] += 1
                    reasons.append(str(failure))
                    readings.update(self._stale([req], _FAILURE_QUALITY.get(failure.kind, Quality.STALE)))
                    if failure.kind == "exception":
                        continue  # the device is there: its other blocks may still read fine
                    readings.update(self._stale(self.requests[i + 1:]))  # silent: do not wait on it again
                    break
                readings.update(request_readings(self.profile, req, registers, counter_check=self._counter_flag))
                self.health.identity.update(request_texts(self.profile, req, registers))
        cycle = time.monotonic() - started
        self.health.last_cycle_s, self.health.max_cycle_s = cycle, max(self.health.max_cycle_s, cycle)
        ok = not reasons
        self.breaker.record(ok, time.time())
        return PollResult(self.device.id, poll_time, readings, ok, "; ".join(reasons)[:300], self.breaker.state)

    def _counter_flag(self, f: RegisterField, raw: int | float) -> str | None:
        if isinstance(raw, int):
            return self.counters.observe(self.device.id, f.name, raw, f.modulus)
        return self.counters.observe_float(self.device.id, f.name, raw)

    def _track(self, result: PollResult) -> None:
        h = self.health
        if result.ok:
            if h.reason:
                log.info("%s: recovered", self.device.id)
            h.polls_ok += 1
            h.reason = ""
            return
        if not result.skipped:
            h.polls_failed += 1
            if not h.reason:
                log.warning("%s: failing: %s", self.device.id, result.reason)
            h.reason = result.reason

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.device.poll_interval_s
        next_t = (time.time() // interval + 1) * interval  # a fixed grid: no drift over months
        while not stop.is_set():
            delay = next_t - time.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    break
                except TimeoutError:
                    pass
            result = await self.poll_once(next_t)
            self._track(result)
            self.on_result(result)
            next_t += interval
            behind = time.time() - next_t
            if behind > 0:  # the cycle overran: skip the missed slots rather than burst
                missed = int(behind // interval) + 1
                self.health.missed_cycles += missed
                next_t += missed * interval
