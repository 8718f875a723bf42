"""Real servers for the tests: mosquitto, influxd, VictoriaMetrics (for the InfluxDB 2.x writer) and an SMTP
sink, each on a free 127.0.0.1 port with its own temporary run directory, started through the same code as
`alumon stack up` and stopped afterwards.

A missing binary fails the run loudly (StackError): tests never skip because a server is absent.
"""

from __future__ import annotations

import itertools
import mailbox
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from alumon.config import MqttConnection
from alumon.influx import InfluxClient
from alumon.mqtt import connect, make_client
from alumon.stack import Server, free_port, start_influxd, start_mosquitto, start_smtp_sink, start_victoria_metrics

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SITE = REPO / "examples" / "guangxi-demo" / "site.yaml"
_db_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="fault suite: 60 s outages instead of 10 s")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_influxd(tmp_path_factory.mktemp("influxd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Shared by the session: tests keep apart by writing series of their own (a device name per test)."""
    server = start_victoria_metrics(tmp_path_factory.mktemp("victoria-metrics"))
    yield server
    server.stop()


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[Server]:
    server = start_smtp_sink(tmp_path / "smtp-run")
    yield server
    server.stop()


def maildir_messages(server: Server) -> list[Any]:
    """Every message the SMTP sink stored (Maildir keys start with the delivery time)."""
    box = mailbox.Maildir(str(Path(server.run_dir) / "maildir"), create=False)
    return [box[key] for key in sorted(box.keys())]


@pytest.fixture
def influx_db(influxd: Server) -> Iterator[InfluxClient]:
    """A fresh, empty database on the shared influxd."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    client = InfluxClient(f"http://127.0.0.1:{influxd.port}", name)
    client.create_database()
    yield client
    client.close()


def write_site(path: Path, base: Path = EXAMPLE_SITE, *, free_device_ports: bool = True, **overrides: Any) -> Path:
    """Write a copy of a site file with keys replaced (``connections__mqtt=...`` sets connections.mqtt).

    With ``free_device_ports`` every TCP device gets a free local port, so tests running side by side never
    fight over the simulator's ports."""
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    if free_device_ports:
        for dev in data["devices"]:
            if dev["transport"]["type"] == "tcp":
                dev["transport"]["port"] = free_port()
    for dotted, value in overrides.items():
        node = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def wired_site(path: Path, mosquitto: Server, influxd: Server, smtp_sink: Server, database: str,
               **overrides: Any) -> Path:
    """The example site wired to the given servers and database (devices on free ports), plus overrides."""
    return write_site(
        path,
        connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
        connections__influxdb={"url": f"http://127.0.0.1:{influxd.port}", "database": database},
        connections__smtp={"host": "127.0.0.1", "port": smtp_sink.port, "security": "none",
                           "sender": "alumon@gx-demo.example"},
        **overrides,
    )


@pytest.fixture
def site_file(tmp_path: Path, mosquitto: Server, influxd: Server, smtp_sink: Server,
              influx_db: InfluxClient) -> Path:
    """The example site wired to this test's servers and database, devices on free ports."""
    return wired_site(tmp_path / "site.yaml", mosquitto, influxd, smtp_sink, influx_db.database)


def mqtt_client(port: int, client_id: str | None = None, persistent: bool = False) -> mqtt.Client:
    """A connected paho client (network loop running) on the local broker."""
    conn = MqttConnection(host="127.0.0.1", port=port)
    client = make_client(conn, client_id or f"test-{time.monotonic_ns()}")
    connect(client, conn, persistent=persistent)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected():
        assert time.monotonic() < deadline, f"test MQTT client could not connect to port {port}"
        time.sleep(0.02)
    return client
