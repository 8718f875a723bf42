"""``alumon sim``: one pymodbus TCP server per device of the site, serving the plant model's values encoded
with the device's own profile (so the edge decodes with the same codec and profile the simulator encoded
with)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from alumon.codec import INTEGER_TYPES, encode
from alumon.config import Site, TcpTransport
from alumon.profiles import DeviceProfile
from alumon.sim.plant import PlantModel

log = logging.getLogger("alumon.sim")
REFRESH_S = 0.25


def raw_value(profile: DeviceProfile, name: str, value: float) -> int | float:
    """Engineering value -> the raw number the meter stores (scaled, and wrapped for integer counters)."""
    f = profile.field(name)
    raw = (value - f.offset) / f.scale
    if f.type not in INTEGER_TYPES:
        return raw
    as_int = round(raw)
    if f.type.value.startswith("i"):
        half = 1 << (16 * f.count - 1)
        return max(-half, min(half - 1, as_int))
    return as_int % f.modulus


def register_image(profile: DeviceProfile, values: dict[str, float], size: int) -> list[int]:
    image = [0] * size
    for f in profile.fields:
        if f.name not in values:
            continue
        regs = encode(raw_value(profile, f.name, values[f.name]), f.type, profile.order_of(f))
        start = profile.wire_address(f)
        image[start:start + len(regs)] = regs
    return image


def image_size(profile: DeviceProfile) -> int:
    return max(profile.wire_address(f) + f.count for f in profile.fields) + 8


class SimulatedDevice:
    """A register image refreshed from the model, served by a pymodbus server through its access hook."""

    def __init__(self, device_id: str, unit_id: int, profile: DeviceProfile, host: str, port: int):
        self.device_id = device_id
        self.profile = profile
        self.size = image_size(profile)
        self.image = [0] * self.size
        simdevice = SimDevice(
            id=unit_id,
            simdata=[SimData(address=0, count=self.size, values=0, datatype=SimType.REGISTERS)],
            action=self._on_access,
        )
        self.server = ModbusTcpServer(simdevice, address=(host, port))
        self.address = (host, port)

    async def _on_access(self, _fc: int, start_address: int, address: int, count: int,
                         registers: list[int], set_values: Any) -> None:
        if set_values is None:  # reads see the latest image; writes are simply stored by pymodbus
            lo = address - start_address
            registers[lo:lo + count] = self.image[address:address + count]

    def update(self, model: PlantModel) -> None:
        values = {q: v for (d, q), v in model.values.items() if d == self.device_id}
        self.image = register_image(self.profile, values, self.size)


async def _serve(site: Site, scenario: str, trace_path: Path | None, stop: threading.Event) -> None:
    model = PlantModel(site, scenario)
    devices: list[SimulatedDevice] = []
    for dev in site.config.devices:
        if not isinstance(dev.transport, TcpTransport):
            log.warning("%s: RTU devices are not simulated (serve them with a serial simulator)", dev.id)
            continue
        devices.append(SimulatedDevice(dev.id, dev.unit_id, site.profile_of(dev.id), dev.transport.host,
                                       dev.transport.port))
    model.step(time.time())
    for d in devices:
        d.update(model)
    serve: list[Callable[[], Coroutine[Any, Any, None]]] = [d.server.serve_forever for d in devices]
    tasks = [asyncio.create_task(fn()) for fn in serve]
    log.info("simulating %d devices, scenario %s", len(devices), scenario)
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
        for d in devices:
            await d.server.shutdown()  # type: ignore[no-untyped-call]
        for t in tasks:
            t.cancel()
        if trace is not None:
            trace.close()


def run_simulator(site: Site, scenario: str, trace_path: Path | None, stop: threading.Event) -> None:
    """Serve every TCP device of the site until ``stop`` is set."""
    PlantModel(site, scenario)  # refuse an unknown scenario before opening any port
    asyncio.run(_serve(site, scenario, trace_path, stop))
