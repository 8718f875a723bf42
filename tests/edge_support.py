"""Shared pieces of the edge tests: a recording subscriber, services run in threads, a small site."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from alumon.config import MqttConnection, Site, load_site
from alumon.mqtt import connect, make_client
from alumon.sim.faults import SimFault
from alumon.sim.server import run_simulator
from alumon.telemetry import TelemetryMessage, decode
from edge.agent import run_edge
from tests.conftest import write_site


class Observer:
    """A persistent-session subscriber recording every telemetry message per device, and the latest status
    and every metrics message of the site."""

    def __init__(self, port: int, client_id: str):
        self.by_device: dict[str, list[TelemetryMessage]] = defaultdict(list)
        self.statuses: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.metrics: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        conn = MqttConnection(host="127.0.0.1", port=port)
        self.client = make_client(conn, client_id)
        self.client.on_connect = lambda c, *_: c.subscribe("alumon/v1/gx-demo/#", qos=1)
        self.client.on_message = self._on_message
        connect(self.client, conn, persistent=True)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        kind = m.topic.rsplit("/", 1)[-1]
        with self.lock:
            if kind == "telemetry":
                msg = decode(bytes(m.payload), m.topic)
                self.by_device[msg.device].append(msg)
            elif kind == "status":
                self.statuses[m.topic.split("/")[-2]].append(json.loads(m.payload))
            elif kind == "metrics":
                self.metrics.append(json.loads(m.payload))

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


def sim(site: Site, faults: list[SimFault] | None = None) -> Callable[[threading.Event], None]:
    return lambda stop: run_simulator(site, "normal", None, stop, faults)


def edge(site: Site, spool: Path) -> Callable[[threading.Event], None]:
    return lambda stop: run_edge(site, stop, spool)


def messages_per_device(obs: Observer, sim_site: Site, edge_site: Site, spool: Path, seconds: float,
                        faults: list[SimFault] | None = None) -> dict[str, int]:
    """Serve ``sim_site``, run the edge on ``edge_site`` for ``seconds``, then close the observer: how many
    messages each of the edge's devices published."""
    with running(sim(sim_site, faults)), running(edge(edge_site, spool)):
        time.sleep(seconds)
    time.sleep(0.5)  # the last publishes reach the observer
    obs.close()
    return {d.id: len(obs.seqs(d.id)) for d in edge_site.config.devices}


def small_site(tmp: Path, mqtt_port: int, interval_s: float = 0.5, **extra: Any) -> Site:
    """Five devices of the example site (two potlines' meters and scales, one CEMS) at ``interval_s``;
    ``extra`` sets top-level sections (e.g. ``edge={...}``)."""
    data = yaml.safe_load(write_site(tmp / "full.yaml", connections__mqtt={"host": "127.0.0.1",
                                                                           "port": mqtt_port}).read_text())
    keep = {"pl1-ac-meter", "pl1-scale", "pl2-ac-meter", "pl2-scale", "cems-calciner"}
    settings = {"poll_interval_s": interval_s, "timeout_s": min(0.3, interval_s / 2), "backoff_max_s": 5.0}
    data["devices"] = [dict(d, **settings) for d in data["devices"] if d["id"] in keep]
    data.update(extra)
    units = {"potline-1", "potline-2", "calciner-stack"}
    data["process_units"] = [u for u in data["process_units"] if u["id"] in units]
    for unit in data["process_units"]:
        for key in ("line_current", "line_voltage", "auxiliary_energy"):
            unit.pop(key, None)
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)
