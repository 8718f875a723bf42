"""``alumon sim``: pymodbus servers for every device of the site, serving the plant model's values encoded
with the device's own profile (so the edge decodes with the same codec and profile the simulator encoded
with).

One server per line, as in the plant: a Modbus TCP endpoint, a serial port (RTU, e.g. one end of a socat
pseudo-terminal pair) or a serial server's socket (RTU over TCP), each answering for the unit ids of the
devices on it. Faults (``SimFault``) make a device fall silent, answer exception codes or garble its frames
for a while, so the edge's isolation can be tested against real protocol stacks, or make its counters wrap
through zero as a real meter's totaliser does (``rollover``: an offset on the register view, so the metered
energy stays continuous; see alumon.sim.faults)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from alumon.codec import INTEGER_TYPES, DataType, encode, encode_string
from alumon.config import Device, RtuOverTcpTransport, RtuTransport, Site, TcpTransport
from alumon.profiles import DeviceProfile, Kind, RegisterField
from alumon.sim.faults import FaultKind, SimFault, active_fault
from alumon.sim.plant import PlantModel

log = logging.getLogger("alumon.sim")
REFRESH_S = 0.25
UNSIGNED_TYPES = frozenset({DataType.U16, DataType.U32, DataType.U64})


def raw_value(profile: DeviceProfile, name: str, value: float) -> int | float:
    """Engineering value -> the raw number the meter stores (scaled, and wrapped for integer counters)."""
    f = profile.field(name)
    raw = (value - f.offset) / f.scale
    if f.type not in INTEGER_TYPES:
        return raw
    as_int = round(raw)
    if f.type.value.startswith("i"):
        half = 1 << (16 * f.width - 1)
        return max(-half, min(half - 1, as_int))
    return as_int % f.modulus


def wrapping_counters(profile: DeviceProfile) -> list[RegisterField]:
    """The counters a rollover fault wraps: unsigned integer ones (float totalisers do not wrap; the model
    serves signed types clamped, never wrapped)."""
    return [f for f in profile.fields if f.kind is Kind.COUNTER and f.type in UNSIGNED_TYPES]


def register_image(profile: DeviceProfile, values: dict[str, float], size: int,
                   offsets: Mapping[str, int] | None = None) -> list[int]:
    """The registers of a device; ``offsets`` (register counts, per counter) shift a counter's register view
    only, modulo its wrap (a ``rollover`` fault)."""
    offsets = offsets or {}
    image = [0] * size
    for f in profile.fields:
        if f.function is not None and f.function.is_bits:
            continue  # the simulator serves registers only
        if f.type is DataType.STRING:
            regs = encode_string(f"SIM-{profile.profile}"[:2 * f.width], f.width, profile.order_of(f))
        elif f.name not in values:
            continue
        else:
            raw = raw_value(profile, f.name, values[f.name])
            if f.name in offsets:
                raw = (int(raw) + offsets[f.name]) % f.modulus
            regs = encode(raw, f.type, profile.order_of(f))
        start = profile.wire_address(f)
        image[start:start + len(regs)] = regs
    return image


def image_size(profile: DeviceProfile) -> int:
    return max(profile.wire_address(f) + f.width for f in profile.fields) + 8


class SimulatedDevice:
    """A register image refreshed from the model, read by the server through its access hook."""

    def __init__(self, device: Device, profile: DeviceProfile, faults: list[SimFault], started: float,
                 offsets: Mapping[str, int] | None = None):
        self.device_id = device.id
        self.unit_id = device.unit_id
        self.profile = profile
        self.offsets = dict(offsets or {})  # register-count offsets of its counters (a rollover fault)
        self.size = image_size(profile)
        self.image = [0] * self.size
        self.faults = [f for f in faults if f.device == device.id]
        self.started = started
        self.simdevice = SimDevice(
            id=device.unit_id,
            simdata=[SimData(address=0, count=self.size, values=0, datatype=SimType.REGISTERS)],
            action=self._on_access,
        )

    def fault(self) -> FaultKind | None:
        return active_fault(self.faults, time.time() - self.started)

    async def _on_access(self, _fc: int, start_address: int, address: int, count: int,
                         registers: list[int], set_values: Any) -> ExcCodes | None:
        if self.fault() is FaultKind.EXCEPTION:
            return ExcCodes.DEVICE_FAILURE
        if set_values is None:  # reads see the latest image; writes are simply stored by pymodbus
            lo = address - start_address
            registers[lo:lo + count] = self.image[address:address + count]
        return None

    def update(self, model: PlantModel) -> None:
        values = {q: v for (d, q), v in model.values.items() if d == self.device_id}
        self.image = register_image(self.profile, values, self.size, self.offsets)


class SimulatedLine:
    """One server answering for the devices on one line; silent and garbling faults act on its frames."""

    def __init__(self, transport: Any, devices: list[SimulatedDevice]):
        self.devices = {d.unit_id: d for d in devices}
        self.rtu = not isinstance(transport, TcpTransport)
        sims = [d.simdevice for d in devices]
        self.server: ModbusTcpServer | ModbusSerialServer
        if isinstance(transport, RtuTransport):
            self.server = ModbusSerialServer(sims, framer=FramerType.RTU, port=transport.serial_port,
                                             baudrate=transport.baudrate, bytesize=transport.bytesize,
                                             parity=transport.parity, stopbits=transport.stopbits,
                                             trace_packet=self._trace_packet)
        else:
            framer = FramerType.RTU if isinstance(transport, RtuOverTcpTransport) else FramerType.SOCKET
            self.server = ModbusTcpServer(sims, framer=framer, address=(transport.host, transport.port),
                                          trace_packet=self._trace_packet)

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending or not packet:
            return packet
        unit = packet[0] if self.rtu else (packet[6] if len(packet) > 6 else -1)
        device = self.devices.get(unit)
        fault = device.fault() if device is not None else None
        if fault is FaultKind.SILENT:
            return b""  # nothing goes on the wire: the master times out
        if fault is FaultKind.GARBLED:
            return garble(packet, self.rtu)
        return packet


def garble(packet: bytes, rtu: bool) -> bytes:
    """A frame a broken converter or a noisy bus would deliver: for RTU a corrupted payload (the CRC fails);
    for TCP the header of another transaction (the master must notice the id mismatch)."""
    if rtu:
        return packet[:-3] + bytes([packet[-3] ^ 0x5A]) + packet[-2:]
    tid = (int.from_bytes(packet[0:2], "big") + 7919) & 0xFFFF
    return tid.to_bytes(2, "big") + packet[2:]


def rollover_offsets(site: Site, model: PlantModel, faults: list[SimFault]) -> dict[str, dict[str, int]]:
    """Per device with a ``rollover`` fault, the register-count offset of each of its wrapping counters that
    counts, putting the register's wrap in the middle of the fault's window (forecast from ``model``, which
    has taken its first step at the simulator's start)."""
    out: dict[str, dict[str, int]] = {}
    for fault in faults:
        if fault.kind is not FaultKind.ROLLOVER:
            continue
        profile = site.profile_of(fault.device)
        ahead = model.forecast(fault.start_s + fault.duration_s / 2)
        for f in wrapping_counters(profile):
            key = (fault.device, f.name)
            if ahead.get(key, 0.0) > model.values.get(key, 0.0):  # one that does not count never wraps
                out.setdefault(fault.device, {})[f.name] = -int(raw_value(profile, f.name, ahead[key])) % f.modulus
    return out


async def _serve(site: Site, scenario: str, trace_path: Path | None, stop: threading.Event,
                 faults: list[SimFault]) -> None:
    model = PlantModel(site, scenario)
    started = time.time()
    model.step(started)
    offsets = rollover_offsets(site, model, faults)
    devices: list[SimulatedDevice] = []
    by_line: dict[str, tuple[Any, list[SimulatedDevice]]] = {}
    for dev in site.config.devices:
        sim = SimulatedDevice(dev, site.profile_of(dev.id), faults, started, offsets.get(dev.id))
        devices.append(sim)
        by_line.setdefault(dev.transport.line, (dev.transport, []))[1].append(sim)
    lines = [SimulatedLine(transport, sims) for transport, sims in by_line.values()]
    for d in devices:
        d.update(model)
    serve: list[Callable[[], Coroutine[Any, Any, None]]] = [line.server.serve_forever for line in lines]
    tasks = [asyncio.create_task(fn()) for fn in serve]
    log.info("simulating %d devices on %d lines, scenario %s", len(devices), len(lines), scenario)
    trace = trace_path.open("a", encoding="utf-8") if trace_path else None
    next_trace = 0.0
    try:
        while not stop.is_set():
            now = time.time()
            model.step(now)
            for d in devices:
                d.update(model)
            if trace is not None and now >= next_trace:
                next_trace = now + 1.0
                for (device, quantity), value in sorted(model.values.items()):
                    trace.write(json.dumps({"t": round(now, 3), "device": device, "quantity": quantity,
                                            "value": value}) + "\n")
                trace.flush()
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise RuntimeError(f"a Modbus server failed: {t.exception()}")
            await asyncio.sleep(REFRESH_S)
    finally:
        for line in lines:
            await line.server.shutdown()  # type: ignore[no-untyped-call]
        for t in tasks:
            t.cancel()
        if trace is not None:
            trace.close()


def run_simulator(site: Site, scenario: str, trace_path: Path | None, stop: threading.Event,
                  faults: list[SimFault] | None = None) -> None:
    """Serve every device of the site until ``stop`` is set."""
    PlantModel(site, scenario)  # refuse an unknown scenario or fault before opening any port
    unknown = sorted({f.device for f in faults or []} - {d.id for d in site.config.devices})
    if unknown:
        raise ValueError(f"faults name devices the site does not have: {', '.join(unknown)}")
    rolled = [f.device for f in faults or [] if f.kind is FaultKind.ROLLOVER]
    for device in sorted(set(rolled)):
        if rolled.count(device) > 1:
            raise ValueError(f"{device}: one rollover fault per device (its counters wrap once per register span)")
        if not wrapping_counters(site.profile_of(device)):
            raise ValueError(f"{device}: a rollover fault needs an unsigned integer counter; profile "
                             f"{site.profile_of(device).profile!r} has none (float totalisers do not wrap)")
    asyncio.run(_serve(site, scenario, trace_path, stop, faults or []))
