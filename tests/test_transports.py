"""The edge on every transport and through injected faults, against real protocol stacks: Modbus RTU on a
socat pseudo-terminal pair (three meters on one bus), RTU over TCP (a serial server with two units behind
it) and Modbus TCP, served by the simulator's pymodbus servers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from alumon.config import Device, Site, load_site
from alumon.profiles import DeviceProfile
from alumon.ptys import PtyPair, start_pty_pair
from alumon.sim.faults import FaultKind, SimFault
from alumon.stack import Server, free_port
from alumon.telemetry import Quality
from edge.lines import build_lines
from edge.poller import DevicePoller, PollResult
from tests.conftest import write_site
from tests.edge_support import Observer, messages_per_device

BUS = ("pl1-rectifier", "pl1-ac-meter", "pl1-scale")  # units 1, 2, 3 on one RS-485 bus
SERIAL_SERVER = ("pl2-rectifier", "pl2-ac-meter")  # units 1, 2 behind one RTU-over-TCP server


@pytest.fixture
def bus(tmp_path: Path) -> Any:
    pair = start_pty_pair(tmp_path / "pty")
    yield pair
    pair.stop()


def mixed_sites(tmp: Path, mqtt_port: int, pair: PtyPair, **device_settings: Any) -> tuple[Site, Site]:
    """The example site with three devices moved onto the serial bus and two behind a serial server.

    Returns (edge site, simulator site): they differ only in which end of the pseudo-terminal pair they open."""
    data = yaml.safe_load(write_site(tmp / "base.yaml", connections__mqtt={"host": "127.0.0.1",
                                                                           "port": mqtt_port}).read_text())
    data["edge"] = {"metrics_interval_s": 1.0}
    server_port = free_port()
    for dev in data["devices"]:
        dev.update(poll_interval_s=1.0, timeout_s=0.3, **device_settings)
        if dev["id"] in BUS:
            dev["unit_id"] = BUS.index(dev["id"]) + 1
            dev["transport"] = {"type": "rtu", "serial_port": "SERIAL", "baudrate": 38400}
        elif dev["id"] in SERIAL_SERVER:
            dev["unit_id"] = SERIAL_SERVER.index(dev["id"]) + 1
            dev["transport"] = {"type": "rtu_over_tcp", "host": "127.0.0.1", "port": server_port}
    sites = []
    for name, end in (("edge", pair.master_end), ("sim", pair.device_end)):
        text = yaml.safe_dump(data, allow_unicode=True).replace("SERIAL", str(end))
        (tmp / f"{name}.yaml").write_text(text)
        sites.append(load_site(tmp / f"{name}.yaml"))
    return sites[0], sites[1]


def test_rtu_bus_serial_server_and_tcp_all_deliver(tmp_path: Path, mosquitto: Server, bus: PtyPair) -> None:
    edge_site, sim_site = mixed_sites(tmp_path, mosquitto.port, bus)
    obs = Observer(mosquitto.port, "obs-transports")
    counts = messages_per_device(obs, sim_site, edge_site, tmp_path / "spool", 6)
    assert min(counts.values()) >= 5 and max(counts.values()) - min(counts.values()) <= 1, counts
    for dev in edge_site.config.devices:
        assert obs.seqs(dev.id) == list(range(counts[dev.id])), dev.id
        last = obs.by_device[dev.id][-1]
        assert all(r.quality is Quality.GOOD for r in last.readings.values()), (dev.id, last)
    rectifier = obs.by_device["pl1-rectifier"][-1].readings["line_current_ka"].value
    assert rectifier is not None and 390 < rectifier < 410  # potline 1 runs at 400 kA (simulator)
    metrics = obs.metrics[-1]
    assert all(m["missed_cycles"] == 0 and m["failures"] == {} for m in metrics["devices"].values()), metrics
    assert metrics["spool"]["depth"] <= 20


def test_faults_stay_with_their_device(tmp_path: Path, mosquitto: Server, bus: PtyPair) -> None:
    """A silent meter on the shared bus, a TCP device answering exception codes and a unit behind the serial
    server whose frames arrive garbled: each reports why, its neighbours keep their full schedule with good
    data, and each recovers when its fault ends."""
    edge_site, sim_site = mixed_sites(tmp_path, mosquitto.port, bus, retries=1, backoff_max_s=3.0)
    faults = [SimFault("pl1-ac-meter", FaultKind.SILENT, 3, 6), SimFault("ref-power", FaultKind.EXCEPTION, 3, 4),
              SimFault("pl2-ac-meter", FaultKind.GARBLED, 3, 4),  # bad CRC behind the serial server
              SimFault("ref-totaliser", FaultKind.GARBLED, 3, 4)]  # TCP answer carrying a foreign transaction id
    obs = Observer(mosquitto.port, "obs-faults")
    started = time.time()
    counts = messages_per_device(obs, sim_site, edge_site, tmp_path / "spool", 17, faults)
    # every device, faulty or not, reports every cycle: exact sequence, equal counts (±1 for the edges)
    assert min(counts.values()) >= 15 and max(counts.values()) - min(counts.values()) <= 1, counts
    for dev in edge_site.config.devices:
        assert obs.seqs(dev.id) == list(range(counts[dev.id])), dev.id
    faulty = {f.device for f in faults}
    for dev_id in counts.keys() - faulty:  # the neighbours, including pl1-rectifier and pl1-scale on the bus
        bad = [m.seq for m in obs.by_device[dev_id] if any(r.quality is not Quality.GOOD
                                                           for r in m.readings.values())]
        assert bad == [], (dev_id, bad)

    def qualities(device: str) -> set[Quality]:
        return {r.quality for m in obs.by_device[device] for r in m.readings.values()}

    assert Quality.STALE in qualities("pl1-ac-meter")
    assert Quality.BAD in qualities("ref-power")
    assert Quality.BAD in qualities("pl2-ac-meter") and Quality.BAD in qualities("ref-totaliser")
    for device in faulty:  # recovered: the last messages are good again
        last = obs.by_device[device][-1]
        assert all(r.quality is Quality.GOOD for r in last.readings.values()), device
    statuses = {d: [s for s in obs.statuses[d] if s.get("ts", "") >= time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime(started))] for d in faulty}
    silent = [s for s in statuses["pl1-ac-meter"] if s["state"] != "ok"]
    assert any("no answer within 0.3 s" in s["reason"] for s in silent), silent
    assert any(s["state"] == "open" for s in silent), silent  # the breaker kept it off the bus
    assert any("exception code 4" in s["reason"] for s in statuses["ref-power"]), statuses["ref-power"]
    for device in ("pl2-ac-meter", "ref-totaliser"):
        assert any("garbled answer" in s["reason"] for s in statuses[device]), statuses[device]
    metrics = obs.metrics[-1]["devices"]
    for device in ("pl2-ac-meter", "ref-totaliser"):  # garbage on a line: the connection is reset
        assert metrics[device]["line_reconnects"] >= 1 and metrics[device]["failures"].get("garbled", 0) >= 1
    assert all(metrics[d]["missed_cycles"] == 0 for d in counts.keys() - faulty), metrics


def test_coils_and_discrete_inputs_through_a_line(tmp_path: Path) -> None:
    """FC01/FC02 against a pymodbus server: bits arrive padded to whole bytes and are cut to the request."""
    profile = DeviceProfile.model_validate({"profile": "switchgear", "fields": [
        {"name": "breaker_closed", "address": 0, "type": "bool", "function": "coil"},
        {"name": "fan_running", "address": 9, "type": "bool", "function": "coil"},
        {"name": "trip", "address": 2, "type": "bool", "function": "discrete"},
        {"name": "alarms", "address": 1, "type": "bitfield"}, {"name": "door_open", "address": 1, "type": "bitfield",
                                                                "bit": 3}]})
    port = free_port()
    device = Device.model_validate({"id": "switchgear", "profile": "switchgear", "timeout_s": 0.5,
                                    "transport": {"type": "tcp", "host": "127.0.0.1", "port": port}})

    async def scenario() -> PollResult:
        sim = SimDevice(id=1, simdata=(
            [SimData(address=0, count=1, values=[0b1000000001], datatype=SimType.BITS)],
            [SimData(address=0, count=1, values=[0b100], datatype=SimType.BITS)],
            [SimData(address=0, count=4, values=[0, 0b1000, 0, 0], datatype=SimType.REGISTERS)],
            [SimData(address=0, count=4, values=0, datatype=SimType.REGISTERS)]))
        server = ModbusTcpServer(sim, address=("127.0.0.1", port))
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.3)
        line = build_lines([device])["switchgear"]
        try:
            return await DevicePoller(device, profile, line, lambda _r: None).poll_once(time.time())
        finally:
            line.close()
            await server.shutdown()  # type: ignore[no-untyped-call]
            task.cancel()

    result = asyncio.run(scenario())
    assert result.ok, result.reason
    assert {k: r.value for k, r in result.readings.items()} == {
        "breaker_closed": 1.0, "fan_running": 1.0, "trip": 1.0, "alarms": 8.0, "door_open": 1.0}
