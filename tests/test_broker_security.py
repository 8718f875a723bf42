"""The broker configuration of `alumon broker config`, run by a real mosquitto: TLS only, no anonymous clients,
one password per account, and an ACL that lets each account publish exactly what alumon's code publishes.

A refused publish is still acknowledged (MQTT 5 PUBACK with reason "not authorized"; mosquitto 2.0.11 then also
drops the connection), so "refused" is checked where it matters: a subscriber that may read everything never
receives the message, although a message published after it (a sentinel) does arrive.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from alumon import schema
from alumon.broker import read_env_file, verify_password
from alumon.cli import app
from alumon.config import MqttConnection
from alumon.influx import InfluxClient
from alumon.mqtt import connect, make_client
from alumon.stack import Server, free_port, require_binary, run_mosquitto, stop_pid
from tests.conftest import EXAMPLE_SITE, write_site
from tests.deploy_support import SITE_EXAMPLE, healthcheck, make_certs

SITES = {"gx-demo": EXAMPLE_SITE, "gx-other": EXAMPLE_SITE, "demo-plant": SITE_EXAMPLE}
MQTT_ENV = {"username_env": "ALUMON_MQTT_USERNAME", "password_env": "ALUMON_MQTT_PASSWORD"}


@dataclass
class Deployment:
    """A mosquitto running the generated configuration, and what it was generated from."""

    base: Path
    out: Path  # the generated directory
    pki: Path
    server: Server
    cli_output: str

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def ca(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def log(self) -> Path:
        return self.base / "mosquitto.log"

    def credential(self, user: str) -> dict[str, str]:
        return read_env_file(self.out / "credentials" / f"{user}.env")

    def password(self, user: str) -> str:
        return self.credential(user)["ALUMON_MQTT_PASSWORD"]


def central_site(path: Path, site_id: str, port: int, ca: Path) -> Path:
    """A site file (devices as in SITES) whose services reach the test broker over TLS with credentials."""
    mqtt_conn = {"host": "127.0.0.1", "port": port, "tls": True, "ca_file": str(ca), **MQTT_ENV}
    return write_site(path, SITES[site_id], site__id=site_id, connections__mqtt=mqtt_conn)


def broker_config(*args: str) -> Any:
    return CliRunner().invoke(app, ["broker", "config", *args])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("broker")
    pki = base / "pki"
    make_certs(pki)  # 127.0.0.1 and localhost are always in the server certificate
    port = free_port()
    out = base / "generated"
    (base / "data").mkdir()
    sites = [central_site(base / f"{sid}.yaml", sid, port, pki / "ca.crt") for sid in SITES]
    result = broker_config(
        *[arg for s in sites for arg in ("--site", str(s))], "--out", str(out), "--port", str(port),
        "--bind", "127.0.0.1", "--cafile", str(pki / "ca.crt"), "--certfile", str(pki / "server.crt"),
        "--keyfile", str(pki / "server.key"), "--config-dir", str(out), "--data-dir", str(base / "data"),
        "--log-file", str(base / "mosquitto.log"), "--run-as", "root")
    assert result.exit_code == 0, result.output
    server = run_mosquitto(out / "mosquitto.conf", port, base / "run")
    try:
        yield Deployment(base, out, pki, server, result.output)
    finally:
        server.stop()


class Peer:
    """One MQTT 5 client with one account's credential, recording every message it receives."""

    def __init__(self, dep: Deployment, user: str | None, password: str | None = None, *, tls: bool = True,
                 ca: Path | None = None, will: tuple[str, bytes] | None = None):
        conn = MqttConnection(host="127.0.0.1", port=dep.port, tls=tls, ca_file=(ca or dep.ca) if tls else None)
        self.client_id = f"test-{user}-{time.monotonic_ns()}"
        self.client = make_client(conn, self.client_id)
        if user is not None:
            self.client.username_pw_set(user, dep.password(user) if password is None else password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.connack: ReasonCode | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._notify()
        connect(self.client, conn, persistent=False)
        self.client.loop_start()

    def _notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: ReasonCode, _p: Any) -> None:
        with self.cond:
            if self.connack is None:
                self.connack = reason_code
            self.cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait_connack(self, timeout_s: float = 5.0) -> ReasonCode | None:
        """The broker's CONNACK reason code, or None when no CONNACK came (no TLS session, no MQTT)."""
        with self.cond:
            self.cond.wait_for(lambda: self.connack is not None, timeout_s)
            return self.connack

    def connected(self) -> Peer:
        rc = self.wait_connack()
        assert rc is not None and not rc.is_failure, f"connection refused: {rc}"
        return self

    def subscribe(self, *filters: str) -> Peer:
        for f in filters:
            _, mid = self.client.subscribe(f, qos=1)
            assert mid is not None
        time.sleep(0.2)  # SUBACKs are back long before this; the broker then routes to us
        return self

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)

    def wait_for(self, topic: str, payload: bytes, timeout_s: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: (topic, payload) in self.messages, timeout_s)

    def received(self, payload: bytes) -> list[str]:
        with self.cond:
            return [t for t, p in self.messages if p == payload]

    def close(self, *, with_will: bool = False) -> None:
        if with_will:  # MQTT 5 reason 0x04: disconnect and let the broker publish the will, as on a crash
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
        else:
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def monitor(deployment: Deployment) -> Iterator[Peer]:
    """Reads everything: the witness that a refused message went nowhere."""
    peer = Peer(deployment, "monitor").connected().subscribe("alumon/v1/#")
    yield peer
    peer.close()


def refused_then_sentinel(dep: Deployment, user: str, monitor: Peer, refused: list[str], sentinel: str) -> None:
    """Publish on each refused topic as ``user``, then on ``sentinel``, which ``user`` may publish. Each refused
    PUBACK is awaited first (the broker routes a message before it acknowledges it), so anything refused that had
    gone through would reach the monitor before the sentinel. One connection per refused publish: mosquitto
    2.0.11 drops an MQTT 5 connection after refusing a QoS 1 publish."""
    tag = str(time.monotonic_ns()).encode()
    for topic in [*refused, sentinel]:
        peer = Peer(dep, user).connected()
        peer.publish(topic, (b"sentinel-" if topic == sentinel else b"refused-") + tag)
        peer.close()
    assert monitor.wait_for(sentinel, b"sentinel-" + tag), "the sentinel never arrived"
    assert monitor.received(b"refused-" + tag) == []


def test_generated_files_and_cli_output(deployment: Deployment) -> None:
    out = deployment.out
    assert (out / "passwd").stat().st_mode & 0o777 == 0o600
    assert (out / "acl").stat().st_mode & 0o777 == 0o600
    assert (out / "credentials").stat().st_mode & 0o777 == 0o700
    users = [line.split(":", 1)[0] for line in (out / "passwd").read_text().splitlines()]
    assert users == [f"{role}-{sid}" for sid in SITES for role in ("edge", "ingest", "analytics")] + ["monitor"]
    for line in (out / "passwd").read_text().splitlines():
        user, hashed = line.split(":", 1)
        cred = out / "credentials" / f"{user}.env"
        assert cred.stat().st_mode & 0o777 == 0o600
        password = deployment.password(user)
        assert verify_password(password, hashed) and password not in hashed
        assert password not in deployment.cli_output  # passwords are never printed
    conf = (out / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf.splitlines()
    assert [line for line in conf.splitlines() if line.startswith("listener ")] == [
        f"listener {deployment.port} 127.0.0.1"]  # the TLS one, nothing in clear


def test_hash_format_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Our PBKDF2 hashes and mosquitto_passwd's are the same format (the broker accepting ours is tested below)."""
    tool = require_binary("mosquitto_passwd")
    subprocess.run([tool, "-c", "-b", str(tmp_path / "pw"), "alice", "s3cret-Value"], check=True, timeout=10)
    hashed = (tmp_path / "pw").read_text().strip().split(":", 1)[1]
    assert hashed.startswith("$7$") and verify_password("s3cret-Value", hashed)
    assert not verify_password("s3cret-value", hashed)


def test_regenerating_keeps_passwords_unless_rotated(deployment: Deployment, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    site = central_site(tmp_path / "site.yaml", "gx-demo", deployment.port, deployment.ca)
    assert broker_config("--site", str(site), "--out", str(out)).exit_code == 0
    first = read_env_file(out / "credentials" / "edge-gx-demo.env")
    assert broker_config("--site", str(site), "--out", str(out)).exit_code == 0
    assert read_env_file(out / "credentials" / "edge-gx-demo.env") == first  # adding a device locks nobody out
    result = broker_config("--site", str(site), "--out", str(out), "--rotate")
    assert result.exit_code == 0 and "new password" in result.output
    assert read_env_file(out / "credentials" / "edge-gx-demo.env") != first


def test_reserved_device_id_is_refused(deployment: Deployment, tmp_path: Path) -> None:
    site = central_site(tmp_path / "site.yaml", "gx-demo", deployment.port, deployment.ca)
    text = site.read_text().replace("pl1-scale", "alerts")  # the device and the readings naming it
    site.write_text(text)
    result = broker_config("--site", str(site), "--out", str(tmp_path / "gen"))
    assert result.exit_code == 2 and "alerts" in result.output and "reserved" in result.output
    assert not (tmp_path / "gen").exists()


def test_gateway_publishes_its_devices_to_ingest(deployment: Deployment, monitor: Peer) -> None:
    ingest = Peer(deployment, "ingest-gx-demo").connected().subscribe("alumon/v1/gx-demo/+/telemetry")
    # The edge agent's last will is its own status topic: allowed, so a crashed gateway is seen as offline.
    edge = Peer(deployment, "edge-gx-demo", will=("alumon/v1/gx-demo/edge/status", b"offline")).connected()
    try:
        for device in ("pl1-scale", "cems-calciner"):
            edge.publish(f"alumon/v1/gx-demo/{device}/telemetry", b"reading")
            assert ingest.wait_for(f"alumon/v1/gx-demo/{device}/telemetry", b"reading")
        edge.publish("alumon/v1/gx-demo/pl1-scale/status", b"ok")
        edge.publish("alumon/v1/gx-demo/edge/metrics", b"metrics")
        assert monitor.wait_for("alumon/v1/gx-demo/pl1-scale/status", b"ok")
        assert monitor.wait_for("alumon/v1/gx-demo/edge/metrics", b"metrics")
        edge.close(with_will=True)
        assert monitor.wait_for("alumon/v1/gx-demo/edge/status", b"offline")
        assert ingest.received(b"ok") == []  # ingest reads telemetry only
    finally:
        ingest.close()


def test_gateway_cannot_publish_for_other_devices_or_services(deployment: Deployment, monitor: Peer) -> None:
    refused_then_sentinel(deployment, "edge-gx-demo", monitor, [
        "alumon/v1/gx-other/pl1-scale/telemetry",  # the same device id at another site
        "alumon/v1/gx-demo/rogue-meter/telemetry",  # a device not in the site file
        "alumon/v1/gx-demo/pl1-scale/extra",  # under its device, but not a topic the agent publishes
        "alumon/v1/gx-demo/alerts/energy",  # alerts are analytics' alone
        "alumon/v1/gx-demo/deadletter",
        "alumon/v1/gx-demo/ingest-1/metrics",
        "alumon/v1/other/topic",
    ], "alumon/v1/gx-demo/pl1-scale/telemetry")


def test_will_on_a_forbidden_topic_is_dropped(deployment: Deployment, monitor: Peer) -> None:
    edge = Peer(deployment, "edge-gx-demo", will=("alumon/v1/gx-demo/alerts/fake", b"forged-will")).connected()
    edge.close(with_will=True)
    refused_then_sentinel(deployment, "edge-gx-demo", monitor, [], "alumon/v1/gx-demo/edge/status")
    assert monitor.received(b"forged-will") == []


def test_wrong_password_and_anonymous_are_refused(deployment: Deployment) -> None:
    attempts = [
        Peer(deployment, "edge-gx-demo", "not-the-password"),
        Peer(deployment, "edge-gx-demo", deployment.password("edge-gx-other")),  # another account's password
        Peer(deployment, "nobody", "whatever"),
        Peer(deployment, None),  # anonymous, over TLS
    ]
    try:
        for peer in attempts:
            rc = peer.wait_connack()
            assert rc is not None and rc.is_failure, rc
            assert rc.getName() in {"Not authorized", "Bad user name or password"}, rc.getName()
    finally:
        for peer in attempts:
            peer.close()


def test_tls_listener_refuses_plaintext_and_untrusted_brokers(deployment: Deployment, tmp_path: Path) -> None:
    make_certs(tmp_path / "other-pki")  # a CA that did not sign the broker's certificate
    plaintext = Peer(deployment, "edge-gx-demo", tls=False)
    wrong_ca = Peer(deployment, "edge-gx-demo", ca=tmp_path / "other-pki" / "ca.crt")
    good = Peer(deployment, "edge-gx-demo")
    try:
        good.connected()
        assert plaintext.wait_connack(1.5) is None  # no MQTT session without TLS: the credential was never read
        assert wrong_ca.wait_connack(0.5) is None  # the client does not trust a broker its CA did not sign
    finally:
        for peer in (plaintext, wrong_ca, good):
            peer.close()
    log = deployment.log.read_text()
    assert f"as {good.client_id} " in log and f"as {plaintext.client_id} " not in log


def test_only_analytics_publishes_alerts(deployment: Deployment, monitor: Peer) -> None:
    refused_then_sentinel(deployment, "analytics-gx-demo", monitor, [
        "alumon/v1/gx-other/alerts/energy.potline-1",  # another site's alerts
        "alumon/v1/gx-demo/pl1-scale/telemetry",  # forged telemetry
    ], "alumon/v1/gx-demo/alerts/energy.potline-1")
    # Ingest writes its dead letters and its metrics, and nothing else.
    refused_then_sentinel(deployment, "ingest-gx-demo", monitor, [
        "alumon/v1/gx-demo/alerts/energy.potline-1",
        "alumon/v1/gx-demo/pl1-scale/telemetry",
        "alumon/v1/gx-other/deadletter",
    ], "alumon/v1/gx-demo/deadletter")
    refused_then_sentinel(deployment, "ingest-gx-demo", monitor, [], "alumon/v1/gx-demo/ingest-1/metrics")


def test_services_read_only_their_sites_telemetry(deployment: Deployment) -> None:
    ingest = Peer(deployment, "ingest-gx-demo").connected().subscribe("alumon/v1/#")
    shared = Peer(deployment, "ingest-gx-demo").connected().subscribe("$share/ingest/alumon/v1/gx-demo/+/telemetry")
    other = Peer(deployment, "edge-gx-other").connected()
    edge = Peer(deployment, "edge-gx-demo").connected()
    try:
        other.publish("alumon/v1/gx-other/pl1-scale/telemetry", b"other-site")
        edge.publish("alumon/v1/gx-demo/pl1-scale/status", b"a-status")
        edge.publish("alumon/v1/gx-demo/pl1-scale/telemetry", b"own-site")
        assert ingest.wait_for("alumon/v1/gx-demo/pl1-scale/telemetry", b"own-site")
        assert shared.wait_for("alumon/v1/gx-demo/pl1-scale/telemetry", b"own-site")  # scale-out workers
        assert ingest.received(b"other-site") == [] and ingest.received(b"a-status") == []
    finally:
        for peer in (ingest, shared, other, edge):
            peer.close()


def test_compose_health_check_logs_in_as_monitor(deployment: Deployment, tmp_path: Path) -> None:
    """deploy/compose.yaml's mosquitto health check, with the container paths mapped to this broker."""
    kind, command = healthcheck("mosquitto")
    assert kind == "CMD-SHELL"
    require_binary("mosquitto_sub")
    health = tmp_path / "health"
    health.mkdir()
    (health / "mosquitto_sub").write_bytes((deployment.out / "credentials" / "monitor.mosquitto_sub").read_bytes())
    local = (command.replace("$$", "$").replace("/alumon/health", str(health))
             .replace("/mosquitto/certs/ca.crt", str(deployment.ca)).replace("-p 8883", f"-p {deployment.port}"))
    assert deployment.password("monitor") not in local  # the password stays in the options file
    done = subprocess.run(["sh", "-c", local], capture_output=True, text=True, timeout=15)
    assert done.returncode == 0, done.stderr
    (health / "mosquitto_sub").write_text("-u monitor\n-P wrong\n")
    assert subprocess.run(["sh", "-c", local], capture_output=True, timeout=15).returncode != 0


# --- secrets hygiene: a real pipeline with secrets in its environment, then grep everything it wrote --------


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "alumon", *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def _wait(what: str, condition: Callable[[], bool], timeout_s: float, procs: dict[str, subprocess.Popen[bytes]],
          logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited: {(logs / f'{name}.log').read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_secrets_never_reach_logs_topics_or_files(deployment: Deployment, influxd: Server, smtp_sink: Server,
                                                  tmp_path: Path) -> None:
    run = tmp_path / "run"
    logs = run / "logs"
    logs.mkdir(parents=True)
    database = f"secrets_{os.getpid()}"
    InfluxClient(f"http://127.0.0.1:{influxd.port}", database).create_database()
    influx_password, smtp_password = f"influx-{os.urandom(12).hex()}", f"smtp-{os.urandom(12).hex()}"
    central = write_site(
        run / "site.yaml", SITE_EXAMPLE,
        connections__mqtt={"host": "127.0.0.1", "port": deployment.port, "tls": True, "ca_file": str(deployment.ca),
                           **MQTT_ENV},
        connections__influxdb={"url": f"http://127.0.0.1:{influxd.port}", "database": database,
                               "username_env": "ALUMON_INFLUX_USER", "password_env": "ALUMON_INFLUX_PASSWORD"},
        connections__smtp={"host": "127.0.0.1", "port": smtp_sink.port, "security": "none",
                           "sender": "alumon@plant.example", "username_env": "ALUMON_SMTP_USER",
                           "password_env": "ALUMON_SMTP_PASSWORD"},
        edge={"metrics_interval_s": 1}, ingest={"metrics_interval_s": 1, "prometheus_port": 0},
        analytics={"kpi_window_s": 60, "evaluate_every_s": 1})
    # The gateway's copy names no database or mail variables: it must not hold those secrets (deploy/README.md).
    edge_data = yaml.safe_load(central.read_text())
    for conn in ("influxdb", "smtp"):
        for key in ("username_env", "password_env"):
            edge_data["connections"][conn].pop(key)
    edge_site = run / "edge-site.yaml"
    edge_site.write_text(yaml.safe_dump(edge_data, allow_unicode=True))

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ALUMON_")}
    server_secrets = {"ALUMON_INFLUX_USER": "alumon", "ALUMON_INFLUX_PASSWORD": influx_password,
                      "ALUMON_SMTP_USER": "mailer", "ALUMON_SMTP_PASSWORD": smtp_password}
    envs = {
        "sim": {**base_env, **deployment.credential("edge-demo-plant")},  # the gateway's file, on the gateway
        "edge": {**base_env, **deployment.credential("edge-demo-plant")},
        "ingest": {**base_env, **deployment.credential("ingest-demo-plant"), **server_secrets},
        "analytics": {**base_env, **deployment.credential("analytics-demo-plant"), **server_secrets},
    }
    argv = {
        "sim": ["sim", "--site", str(edge_site)],
        "ingest": ["ingest", "--site", str(central), "--buffer-dir", str(run / "ingest-buffer")],
        "analytics": ["analytics", "--site", str(central), "--state-dir", str(run / "analytics-state")],
        "edge": ["edge", "--site", str(edge_site), "--spool-dir", str(run / "edge-spool")],
    }
    watcher = Peer(deployment, "monitor").connected().subscribe("alumon/v1/demo-plant/#")
    influx = InfluxClient(f"http://127.0.0.1:{influxd.port}", database)
    devices = [d["id"] for d in edge_data["devices"]]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("sim", "ingest", "analytics", "edge"):
            procs[name] = _start(argv[name], envs[name], logs / f"{name}.log")

        def topics() -> set[str]:
            with watcher.cond:
                return {t for t, _ in watcher.messages}

        wanted = {f"alumon/v1/demo-plant/{d}/{kind}" for d in devices for kind in ("telemetry", "status")}
        wanted |= {"alumon/v1/demo-plant/edge/status", "alumon/v1/demo-plant/edge/metrics",
                   "alumon/v1/demo-plant/ingest-1/metrics"}
        # Every kind of message the real services publish got through their ACLs ...
        _wait("every topic the services publish", lambda: wanted <= topics(), 40, procs, logs)
        # ... ingest read the telemetry and wrote it, and analytics ran its evaluation loop.
        _wait("telemetry in InfluxDB", lambda: (influx.query_scalar(
            f"SELECT count(seq) FROM {schema.TELEMETRY} WHERE site='demo-plant'") or 0) > 0, 20, procs, logs)
        _wait("analytics ledgers", lambda: (run / "analytics-state" / "ledgers.json").exists(), 20, procs, logs)
        # The compose health checks of ingest and analytics pass against these running services.
        port = re.search(r"Prometheus metrics on http://127.0.0.1:(\d+)/", (logs / "ingest.log").read_text())
        assert port is not None
        for service, old, local in (("ingest", "9108", port.group(1)),
                                    ("analytics", "/var/lib/alumon/analytics-state", str(run / "analytics-state"))):
            kind, program, *args = healthcheck(service)
            assert (kind, program) == ("CMD", "python")
            done = subprocess.run([sys.executable, *[a.replace(old, local) for a in args]], timeout=15)
            assert done.returncode == 0, service
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            stop_pid(proc.pid, 20)
        watcher.close()
    assert re.search(r"stopped: messages [1-9]", (logs / "analytics.log").read_text())  # it read telemetry
    # Nothing the services published was refused (mosquitto drops an MQTT 5 client whose publish it refuses).
    broker_log = deployment.log.read_text()
    assert "Bad socket read/write on client alumon-" not in broker_log
    assert "alumon-edge-demo-plant" in broker_log and "alumon-ingest-demo-plant-1" in broker_log
    (run / "mqtt-messages.txt").write_bytes(b"\n".join(t.encode() + b" " + p for t, p in watcher.messages))

    # Config errors with the secrets in the environment: they say what is wrong, never a value.
    misplaced = f"hunter2-{os.urandom(8).hex()}"  # a password written where a variable name belongs
    misplaced_file, unset_file = tmp_path / "misplaced.yaml", tmp_path / "unset.yaml"  # inputs, not checked
    for path, conn, value in ((misplaced_file, "influxdb", misplaced), (unset_file, "smtp", "ALUMON_UNSET")):
        broken = yaml.safe_load(central.read_text())
        broken["connections"][conn]["password_env"] = value
        path.write_text(yaml.safe_dump(broken, allow_unicode=True))
    checks = [CliRunner().invoke(app, ["config", "check", str(misplaced_file)], env=envs["analytics"]),
              CliRunner().invoke(app, ["config", "check", str(unset_file)], env=envs["analytics"]),
              CliRunner().invoke(app, ["broker", "config", "--site", str(misplaced_file), "--out",
                                       str(run / "broken-broker")], env=envs["analytics"])]
    for result in checks:
        assert result.exit_code == 2 and "password_env" in result.output, result.output
    assert "environment variable ALUMON_UNSET is not set" in checks[1].output
    (run / "config-errors.txt").write_text("\n".join(r.output for r in checks))

    secrets = {misplaced, influx_password, smtp_password}
    secrets |= {deployment.password(f"{role}-demo-plant") for role in ("edge", "ingest", "analytics")}
    secrets.add(deployment.password("monitor"))
    written = [p for p in run.rglob("*") if p.is_file()]
    written += [deployment.log, deployment.out / "passwd", deployment.out / "acl", deployment.out / "mosquitto.conf"]
    written += [p for p in (deployment.base / "data").rglob("*") if p.is_file()]  # retained messages, sessions
    assert len(written) > 10
    for path in written:
        data = path.read_bytes()
        for value in secrets:
            assert value.encode() not in data, f"a secret is in {path}"


def test_edge_keeps_what_the_broker_refuses_in_its_spool(deployment: Deployment, monitor: Peer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A device added to the gateway before the broker's ACL: its messages are refused (MQTT 5 PUBACK "not
    authorized"), and the edge keeps them in its spool instead of dropping them as delivered."""
    from edge.publisher import Publisher
    from edge.spool import Spool

    monkeypatch.setenv("TEST_EDGE_USER", "edge-gx-demo")
    monkeypatch.setenv("TEST_EDGE_PASSWORD", deployment.password("edge-gx-demo"))
    conn = MqttConnection(host="127.0.0.1", port=deployment.port, tls=True, ca_file=deployment.ca,
                          username_env="TEST_EDGE_USER", password_env="TEST_EDGE_PASSWORD")
    spool = Spool(tmp_path / "spool.sqlite")
    allowed = "alumon/v1/gx-demo/pl1-scale/telemetry"
    refused = "alumon/v1/gx-demo/new-meter/telemetry"  # not in the broker's configuration yet
    now_ms = int(time.time() * 1000)  # recent: the payloads go out as they are (old ones are marked historical)
    spool.append("new-meter", now_ms, lambda seq: (refused, b"refused-new-meter"))
    spool.append("pl1-scale", now_ms, lambda seq: (allowed, b"allowed-pl1-scale"))
    publisher = Publisher("gx-demo", conn, spool)
    publisher.start()
    try:
        assert monitor.wait_for(allowed, b"allowed-pl1-scale", timeout_s=15)
        deadline = time.monotonic() + 10
        while publisher.refused < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        publisher.stop()
    assert monitor.received(b"refused-new-meter") == []
    assert (publisher.refused, publisher.acked) == (1, 1)
    assert [m.topic for m in spool.after(0, 10)] == [refused]  # still there, to go out once the ACL is fixed
