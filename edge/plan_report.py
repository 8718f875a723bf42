"""``alumon edge plan``: what the poller will do per device each cycle, and whether it fits the interval."""

from __future__ import annotations

from dataclasses import dataclass, replace

from alumon.config import RtuOverTcpTransport, RtuTransport, Site
from edge.plan import plan_reads

TCP_REQUEST_S = 0.010  # typical Modbus TCP round trip to a meter or gateway on a plant LAN


@dataclass(frozen=True)
class DevicePlan:
    device: str
    requests: int
    registers: int
    predicted_cycle_s: float
    worst_cycle_s: float  # the device does not answer: connect or first request times out, with retries
    interval_s: float
    line: str
    line_devices: int = 1
    line_cycle_s: float = 0.0  # a serial bus: every device on it polled once, one after the other

    @property
    def fits(self) -> bool:
        return max(self.predicted_cycle_s, self.line_cycle_s) <= self.interval_s

    @property
    def warning(self) -> str:
        if self.predicted_cycle_s > self.interval_s:
            return f"cycle {self.predicted_cycle_s:.3f} s does not fit the {self.interval_s:g} s interval"
        if self.line_cycle_s > self.interval_s:
            return (f"its bus {self.line} needs {self.line_cycle_s:.3f} s to poll its {self.line_devices} devices "
                    f"once: does not fit the {self.interval_s:g} s interval")
        return ""


def rtu_request_s(count: int, baudrate: int, bits: bool = False) -> float:
    """Request (8 bytes) + response (5 + 2·count bytes, or one byte per 8 bits), 11 bits per character, plus
    3.5-character gaps and a typical 10 ms device turnaround."""
    data = (count + 7) // 8 if bits else 2 * count
    chars = 8 + 5 + data + 2 * 3.5
    return chars * 11 / baudrate + 0.010


def plan_site(site: Site) -> list[DevicePlan]:
    """Plans per device; devices sharing a serial bus also get the bus's time for one round of all of them."""
    plans = [_device_plan(site, dev.id) for dev in site.config.devices]
    bus_time: dict[str, float] = {}
    bus_devices: dict[str, int] = {}
    for dev, plan in zip(site.config.devices, plans, strict=True):
        if dev.shares_line:
            own = plan.predicted_cycle_s + plan.requests * dev.inter_request_delay_s
            bus_time[plan.line] = bus_time.get(plan.line, 0.0) + own
            bus_devices[plan.line] = bus_devices.get(plan.line, 0) + 1
    return [replace(p, line_devices=bus_devices[p.line], line_cycle_s=bus_time[p.line]) if p.line in bus_time else p
            for p in plans]


def _device_plan(site: Site, device_id: str) -> DevicePlan:
    dev = site.config.device(device_id)
    reads = plan_reads(site.profile_of(dev.id))
    if isinstance(dev.transport, RtuTransport | RtuOverTcpTransport):
        per = [rtu_request_s(r.count, dev.transport.baudrate, r.function.is_bits) for r in reads]
    else:
        per = [TCP_REQUEST_S for _ in reads]
    worst = dev.timeout_s * (2 + dev.retries)  # connect + first request and its retries; the rest is skipped
    return DevicePlan(dev.id, len(reads), sum(r.count for r in reads), sum(per), worst, dev.poll_interval_s,
                      dev.transport.line)
