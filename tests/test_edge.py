"""Edge agent against simulated Modbus devices and a real mosquitto: schedule, failure isolation, seq
continuity across restarts, nothing lost through a broker outage."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from alumon.config import MqttConnection, Site, load_site
from alumon.mqtt import connect, make_client
from alumon.sim.server import run_simulator
from alumon.stack import Server, free_port, start_mosquitto
from alumon.telemetry import Quality, TelemetryMessage, decode, telemetry_subscription
from edge.agent import run_edge
from tests.conftest import write_site


class Observer:
    """A persistent-session subscriber recording every telemetry message per device."""

    def __init__(self, port: int, client_id: str):
        self.by_device: dict[str, list[TelemetryMessage]] = defaultdict(list)
        self.lock = threading.Lock()
        conn = MqttConnection(host="127.0.0.1", port=port)
        self.client = make_client(conn, client_id)
        self.client.on_connect = lambda c, *_: c.subscribe(telemetry_subscription("gx-demo"), qos=1)
        self.client.on_message = self._on_message
        connect(self.client, conn, persistent=True)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        msg = decode(bytes(m.payload), m.topic)
        with self.lock:
            self.by_device[msg.device].append(msg)

    def seqs(self, device: str) -> list[int]:
        with self.lock:
            return [m.seq for m in self.by_device[device]]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def running(body: Callable[[threading.Event], None]) -> Iterator[None]:
    """Run a service in a thread until the block ends."""
    stop = threading.Event()
    t = threading.Thread(target=body, args=(stop,), daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=20)
        assert not t.is_alive()


def sim(site: Site) -> Callable[[threading.Event], None]:
    return lambda stop: run_simulator(site, "normal", None, stop)


def edge(site: Site, spool: Path) -> Callable[[threading.Event], None]:
    return lambda stop: run_edge(site, stop, spool)


def small_site(tmp: Path, mqtt_port: int) -> Site:
    """Five devices of the example site (two potlines' meters and scales, one CEMS) at 0.5 s."""
    data = yaml.safe_load(write_site(tmp / "full.yaml", connections__mqtt={"host": "127.0.0.1",
                                                                           "port": mqtt_port}).read_text())
    keep = {"pl1-ac-meter", "pl1-scale", "pl2-ac-meter", "pl2-scale", "cems-calciner"}
    data["devices"] = [dict(d, poll_interval_s=0.5, timeout_s=0.3) for d in data["devices"] if d["id"] in keep]
    units = {"potline-1", "potline-2", "calciner-stack"}
    data["process_units"] = [u for u in data["process_units"] if u["id"] in units]
    for unit in data["process_units"]:
        for key in ("line_current", "line_voltage", "auxiliary_energy"):
            unit.pop(key, None)
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


def test_every_device_polled_with_consecutive_seqs_and_restart_continues(tmp_path: Path, mosquitto: Server) -> None:
    site = small_site(tmp_path, mosquitto.port)
    obs = Observer(mosquitto.port, "obs-restart")
    spool = tmp_path / "spool"
    with running(sim(site)):
        with running(edge(site, spool)):
            time.sleep(3)
        with running(edge(site, spool)):
            time.sleep(2)
    time.sleep(0.5)
    obs.close()
    for dev in site.config.devices:
        seqs = obs.seqs(dev.id)
        assert seqs == list(range(len(seqs))), (dev.id, seqs)  # no gap, no reuse across the restart
        assert len(seqs) >= 7
        last = obs.by_device[dev.id][-1]
        assert all(r.quality is Quality.GOOD for r in last.readings.values()), last


def test_dead_device_is_stale_and_others_keep_schedule(tmp_path: Path, mosquitto: Server) -> None:
    site = small_site(tmp_path, mosquitto.port)
    # pl2-scale points at a port where nothing listens: it must not slow the others down.
    data = site.config.model_dump(mode="json")
    for d in data["devices"]:
        if d["id"] == "pl2-scale":
            d["transport"]["port"] = free_port()
    path = tmp_path / "dead.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    dead_site = load_site(path)
    obs = Observer(mosquitto.port, "obs-dead")
    with running(sim(site)), running(edge(dead_site, tmp_path / "spool")):
        time.sleep(5)
    time.sleep(0.5)
    obs.close()
    counts = {d.id: len(obs.seqs(d.id)) for d in site.config.devices}
    healthy = [n for dev, n in counts.items() if dev != "pl2-scale"]
    assert min(healthy) >= 8 and max(healthy) - min(healthy) <= 1, counts  # full schedule: ~10 polls in 5 s
    assert abs(counts["pl2-scale"] - min(healthy)) <= 1, counts  # the dead one still reports every cycle
    dead_msgs = obs.by_device["pl2-scale"]
    assert all(r.quality is Quality.STALE and r.value is None for m in dead_msgs for r in m.readings.values())


def test_broker_outage_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    broker = start_mosquitto(tmp_path / "broker", port=port)
    site = small_site(tmp_path, port)
    obs = Observer(port, "obs-outage")
    try:
        with running(sim(site)), running(edge(site, tmp_path / "spool")):
            time.sleep(2)
            broker.stop()  # 4 s outage: polls go to the spool
            time.sleep(4)
            broker = start_mosquitto(tmp_path / "broker", port=port)
            time.sleep(6)  # edge and observer reconnect, the spool drains
        time.sleep(1)
        for dev in site.config.devices:
            seqs = sorted(set(obs.seqs(dev.id)))
            assert seqs == list(range(len(seqs))), (dev.id, seqs)
            assert len(seqs) >= 20  # ~24 polls at 0.5 s over 12 s, none missing
            historical = [m.seq for m in obs.by_device[dev.id] if m.historical]
            assert historical == [] or min(historical) > 0
    finally:
        obs.close()
        broker.stop()
