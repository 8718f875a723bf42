"""Polls one Modbus TCP device on a fixed schedule. Each device has its own task and connection, so a
device that hangs, refuses or answers garbage only ever delays itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from alumon.config import Device, TcpTransport
from alumon.profiles import DeviceProfile, RegisterField, RegisterFunction
from alumon.telemetry import Quality, Reading
from edge.counters import CounterTracker
from edge.decode import request_readings
from edge.plan import ReadRequest, plan_reads

log = logging.getLogger("alumon.edge.poller")


@dataclass
class PollResult:
    device: str
    poll_time: float  # unix seconds, the scheduled poll instant
    readings: dict[str, Reading]
    ok: bool
    reason: str = ""


@dataclass
class DeviceHealth:
    polls_ok: int = 0
    polls_failed: int = 0
    missed_cycles: int = 0
    failing: bool = False
    reason: str = ""
    extra: dict[str, int] = field(default_factory=dict)


class DevicePoller:
    def __init__(self, device: Device, profile: DeviceProfile, on_result: Callable[[PollResult], None]):
        if not isinstance(device.transport, TcpTransport):
            raise ValueError(f"{device.id}: only Modbus TCP is supported by this poller")
        self.device = device
        self.profile = profile
        self.requests = plan_reads(profile)
        self.on_result = on_result
        self.health = DeviceHealth()
        self.counters = CounterTracker()
        self.transport = device.transport
        self._client: AsyncModbusTcpClient | None = None  # made inside the event loop (pymodbus needs one)

    @property
    def client(self) -> AsyncModbusTcpClient:
        if self._client is None:
            self._client = AsyncModbusTcpClient(self.transport.host, port=self.transport.port,
                                                timeout=self.device.timeout_s, retries=self.device.retries)
        return self._client

    async def _read(self, req: ReadRequest) -> list[int] | str:
        """Registers, or the reason the read failed."""
        if req.function is RegisterFunction.HOLDING:
            rr = await self.client.read_holding_registers(req.address, count=req.count,
                                                          device_id=self.device.unit_id)
        else:
            rr = await self.client.read_input_registers(req.address, count=req.count, device_id=self.device.unit_id)
        if rr.isError():
            return f"exception code {getattr(rr, 'exception_code', '?')} at {req.function.value} {req.address}"
        if len(rr.registers) < req.count:
            return f"short response: {len(rr.registers)} of {req.count} registers"
        return list(rr.registers)

    async def poll_once(self, poll_time: float) -> PollResult:
        readings: dict[str, Reading] = {}
        reason = ""
        if not self.client.connected:
            try:
                await asyncio.wait_for(self.client.connect(), timeout=self.device.timeout_s)
            except (TimeoutError, OSError, ModbusException) as exc:
                reason = f"connect failed: {type(exc).__name__}"
            if not self.client.connected and not reason:
                reason = "connect failed"
        for req in self.requests:
            if reason:  # skip the rest of this device's cycle, as a half-duplex bus would have to
                readings.update(request_readings(self.profile, req, None, Quality.STALE))
                continue
            try:
                result = await asyncio.wait_for(self._read(req), timeout=self.device.timeout_s * 2)
            except (TimeoutError, OSError, ModbusException) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:200]
                self.client.close()  # a stuck session never recovers its transaction ids: start afresh
                readings.update(request_readings(self.profile, req, None, Quality.STALE))
                continue
            if isinstance(result, str):
                reason = result
                readings.update(request_readings(self.profile, req, None, Quality.BAD))
            else:
                readings.update(request_readings(self.profile, req, result, counter_check=self._counter_flag))
        return PollResult(self.device.id, poll_time, readings, ok=not reason, reason=reason)

    def _counter_flag(self, f: RegisterField, raw: int | float) -> str | None:
        if isinstance(raw, int):
            return self.counters.observe(self.device.id, f.name, raw, f.modulus)
        return self.counters.observe_float(self.device.id, f.name, raw)

    def _track(self, result: PollResult) -> None:
        h = self.health
        if result.ok:
            h.polls_ok += 1
            if h.failing:
                log.info("%s: recovered", self.device.id)
            h.failing, h.reason = False, ""
        else:
            h.polls_failed += 1
            if not h.failing:
                log.warning("%s: failing: %s", self.device.id, result.reason)
            h.failing, h.reason = True, result.reason

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.device.poll_interval_s
        next_t = (time.time() // interval + 1) * interval  # a fixed grid: no drift over months
        try:
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
        finally:
            self.client.close()
