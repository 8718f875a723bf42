"""Ingest under faults, with exact counts against a real mosquitto and a real influxd: a 30 s InfluxDB outage
under 100 000 readings, ``kill -9`` twice mid-stream (once with the disk buffer full of an outage), 10 000
malformed payloads of many kinds (hypothesis) among good ones, two workers sharing the stream, and the
self-metrics on MQTT and in Prometheus format."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alumon.influx import InfluxClient
from alumon.stack import Server, free_port, start_influxd
from alumon.telemetry import (
    Quality,
    Reading,
    TelemetryMessage,
    deadletter_topic,
    encode,
    metrics_topic,
    telemetry_topic,
)
from ingest.deadletter import KEEP_BYTES
from tests.conftest import REPO, mqtt_client, write_site
from tests.test_influx_v2 import by_quantity, export, vm_url
from tests.test_ingest import ingest_running, publish_all, wait_count, wait_until

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
DEVICES = ("pl1-rectifier", "pl2-rectifier")
READINGS = 10


def message(device: str, seq: int) -> TelemetryMessage:
    return TelemetryMessage(
        v=1, site="gx-demo", device=device, seq=seq, ts=T0 + timedelta(seconds=seq),
        readings={f"q{j}": Reading(value=seq + j / 10, quality=Quality.GOOD, unit="kWh") for j in range(READINGS)})


def good_payloads(n: int) -> list[tuple[str, bytes]]:
    """n messages of 10 readings, alternating between two devices (seq per device: 0 .. n/2 - 1)."""
    return [(telemetry_topic("gx-demo", DEVICES[k % 2]), encode(message(DEVICES[k % 2], k // 2))) for k in range(n)]


def publish_paced(client: mqtt.Client, items: list[tuple[str, bytes]], seconds: float) -> threading.Thread:
    """Publish the items evenly over ``seconds`` (QoS 1) in a thread; the thread ends when all are acked."""
    def run() -> None:
        began = time.monotonic()
        infos = []
        for k, (topic, payload) in enumerate(items):
            infos.append(client.publish(topic, payload, qos=1))
            ahead = began + seconds * (k + 1) / len(items) - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        for info in infos:
            info.wait_for_publish(timeout=60)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def at(began: float, second: float, action: Callable[[], Any]) -> Any:
    time.sleep(max(0.0, began + second - time.monotonic()))
    return action()


def own_influx(tmp_path: Path, mosquitto: Server, database: str, influx_timeout_s: float = 10.0,
               **ingest: Any) -> tuple[Server, InfluxClient, Path]:
    """A private influxd (the test may stop or freeze it) and the example site wired to it."""
    influx = start_influxd(tmp_path / "own-influx")
    db = InfluxClient(f"http://127.0.0.1:{influx.port}", database)
    site_file = write_site(tmp_path / "site.yaml", connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
                           connections__influxdb={"url": f"http://127.0.0.1:{influx.port}", "database": database,
                                                  "timeout_s": influx_timeout_s},
                           ingest=ingest)
    return influx, db, site_file


def assert_all_present_once(db: InfluxClient, n_messages: int) -> None:
    per_device = n_messages // 2
    for device in DEVICES:
        (series,) = db.query(f"SELECT count(value) FROM telemetry WHERE device = '{device}'")
        assert series["values"][0][1] == per_device * READINGS, device
        (series,) = db.query(f"SELECT count(distinct(seq)) FROM telemetry WHERE device = '{device}'")
        assert series["values"][0][1] == per_device, device


def test_100k_readings_through_a_30_s_influx_outage(tmp_path: Path, mosquitto: Server) -> None:
    influx, db, site_file = own_influx(tmp_path, mosquitto, "outage100k", retry_max_s=2.0)
    n = 10_000  # messages x 10 readings = 100 000 points
    client = mqtt_client(mosquitto.port)
    try:
        with ingest_running(site_file) as service:
            began = time.monotonic()
            publisher = publish_paced(client, good_payloads(n), seconds=50)
            at(began, 10, influx.stop)
            depth_during_outage = at(began, 38, lambda: service.buffer.points)
            influx = at(began, 40, lambda: start_influxd(tmp_path / "own-influx", port=influx.port))
            publisher.join(timeout=90)
            stored = wait_count(db, "SELECT count(value) FROM telemetry", n * READINGS, timeout_s=90)
            totals = dict(service.metrics.totals)
            assert service.buffer.points == 0
        assert stored == n * READINGS
        assert_all_present_once(db, n)
        assert depth_during_outage > 50_000  # about 28 s x 2000 readings/s went to disk
        assert totals["received_messages"] == n and totals["written_points"] == n * READINGS
        assert totals["buffered_points"] >= depth_during_outage and totals["dropped_points"] == 0
        assert totals["dead_lettered_messages"] == 0 and totals["write_failures"] > 0
    finally:
        client.loop_stop()
        influx.stop()


def start_ingest_process(site_file: Path, buffer_dir: Path, worker: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "alumon", "ingest", "--site", str(site_file), "--worker", worker,
                                 "--buffer-dir", str(buffer_dir)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def test_kill_9_twice_mid_stream_loses_nothing(tmp_path: Path, mosquitto: Server) -> None:
    """The first kill while writing normally; the second while InfluxDB is down and the disk buffer holds
    acknowledged messages: they must survive the kill and drain after the restart."""
    influx, db, site_file = own_influx(tmp_path, mosquitto, "kill9", retry_max_s=1.0)
    n = 6000
    buffer_dir, log = tmp_path / "buffer", tmp_path / "ingest.log"
    client = mqtt_client(mosquitto.port)
    proc = start_ingest_process(site_file, buffer_dir, "kill9", log)
    try:
        time.sleep(3)  # connected and subscribed: the session exists from here on
        began = time.monotonic()
        publisher = publish_paced(client, good_payloads(n), seconds=20)
        at(began, 5, proc.kill)
        proc.wait()
        proc = start_ingest_process(site_file, buffer_dir, "kill9", log)
        at(began, 9, influx.stop)
        at(began, 14, proc.kill)
        proc.wait()
        proc = start_ingest_process(site_file, buffer_dir, "kill9", log)
        influx = at(began, 17, lambda: start_influxd(tmp_path / "own-influx", port=influx.port))
        publisher.join(timeout=60)
        stored = wait_count(db, "SELECT count(value) FROM telemetry", n * READINGS, timeout_s=90)
        assert stored == n * READINGS, log.read_text()[-3000:]
        assert_all_present_once(db, n)
        assert "buffering on disk" in log.read_text()  # the second kill really hit a buffering ingest
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        client.loop_stop()
        influx.stop()


# -- malformed payloads ------------------------------------------------------------------------------------------

VALID = json.loads(encode(message("pl1-rectifier", 1)))
REQUIRED = ("v", "site", "device", "seq", "ts", "readings")
WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "v": st.sampled_from([0, 2, "1", 1.5, None, True]),
    "site": st.sampled_from(["", "GX-DEMO", "gx demo", 7, None, "x" * 65]),
    "device": st.sampled_from(["", "Pl1", "a/b", 3, None, "ghost-meter"]),
    "seq": st.sampled_from([-1, "5", 1.5, True, None, 2**63]),
    "ts": st.sampled_from(["yesterday", "2026-11-24T08:00:00", 1_732_000_000, None, "2026-13-01T00:00:00Z"]),
    "readings": st.sampled_from([[], "x", None, {"Bad Name": {"value": 1, "quality": "good"}},
                                 {"q0": {"value": "1", "quality": "good"}}, {"q0": {"value": 1, "quality": "ok"}},
                                 {"q0": {"value": 1, "quality": "good", "extra": 1}},
                                 {"q0": {"value": True, "quality": "good"}}]),
}


def mutated() -> st.SearchStrategy[bytes]:
    """A valid message with one thing wrong: a key missing, a value of the wrong type or form, an extra key."""
    missing = st.sampled_from(REQUIRED).map(lambda k: {x: y for x, y in VALID.items() if x != k})
    wrong = st.sampled_from(sorted(WRONG_VALUES)).flatmap(
        lambda k: WRONG_VALUES[k].map(lambda v: {**VALID, k: v}))
    extra = st.text(min_size=1, max_size=8).filter(lambda k: k not in VALID).map(lambda k: {**VALID, k: 1})
    return st.one_of(missing, wrong, extra).map(lambda d: json.dumps(d).encode())


def non_finite() -> st.SearchStrategy[bytes]:
    text = json.dumps(VALID, separators=(",", ":"))
    return st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(
        lambda c: text.replace('"value":1.0', f'"value":{c}', 1).encode())


BAD_PAYLOAD = st.one_of(
    st.binary(max_size=200).filter(lambda b: b.strip()[:1] != b"{"),  # garbage, never a JSON object
    st.text(max_size=50).map(lambda t: json.dumps(t).encode()),  # JSON, not an object
    st.lists(st.integers(), max_size=5).map(lambda xs: json.dumps(xs).encode()),
    mutated(),
    non_finite(),
    st.integers(262_145, 270_000).map(lambda n: b"{" + b" " * (n - 2) + b"}"),  # oversized
)


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=st.lists(BAD_PAYLOAD, min_size=200, max_size=200))
def test_10k_malformed_payloads_among_good_ones(bad: list[bytes], tmp_path_factory: Any, mosquitto: Server,
                                                influxd: Server) -> None:
    """10 000 bad payloads (the 200 hypothesis drew, each sent 50 times with a unique suffix of spaces, still as
    bad) interleaved with 2 000 good messages: every good reading stored once, every bad payload dead-lettered
    once (InfluxDB and the dead-letter topic), with a reason."""
    tmp_path = tmp_path_factory.mktemp("malformed")
    database = f"malformed_{time.monotonic_ns()}"
    db = InfluxClient(f"http://127.0.0.1:{influxd.port}", database)
    site_file = write_site(tmp_path / "site.yaml", connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
                           connections__influxdb={"url": f"http://127.0.0.1:{influxd.port}", "database": database})
    bad_sent = [b + b" " * k for b in bad for k in range(50)]
    good = good_payloads(2000)
    items: list[tuple[str, bytes]] = []
    for k, payload in enumerate(bad_sent):
        items.append((telemetry_topic("gx-demo", "pl1-rectifier"), payload))
        if k % 5 == 0:
            items.append(good[k // 5])
    dead: list[dict[str, Any]] = []
    watcher = mqtt_client(mosquitto.port)
    watcher.on_message = lambda _c, _u, m: dead.append(json.loads(m.payload))
    watcher.subscribe(deadletter_topic("gx-demo"), qos=1)
    publisher = mqtt_client(mosquitto.port)
    try:
        with ingest_running(site_file) as service:
            publish_all(publisher, items)
            stored = wait_count(db, "SELECT count(value) FROM telemetry", 2000 * READINGS, timeout_s=60)
            letters = wait_count(db, "SELECT count(size) FROM dead_letter", len(bad_sent), timeout_s=60)
            wait_until(lambda: len(dead) >= len(bad_sent))
            totals = dict(service.metrics.totals)
        assert stored == 2000 * READINGS and letters == len(bad_sent)
        assert totals["dead_lettered_messages"] == len(bad_sent) and totals["received_messages"] == len(items)
        rows = db.query("SELECT payload_b64, size, reason FROM dead_letter")[0]
        cols = rows["columns"]
        got = Counter(base64.b64decode(r[cols.index("payload_b64")]) for r in rows["values"])
        assert got == Counter(b[:KEEP_BYTES] for b in bad_sent)  # each bad payload exactly once, as sent
        assert all(r[cols.index("reason")] for r in rows["values"])
        assert len(dead) == len(bad_sent) and all(d["reason"] and d["detail"] for d in dead)
    finally:
        publisher.loop_stop()
        watcher.loop_stop()
        db.close()


# -- scale-out and self-metrics ----------------------------------------------------------------------------------

def test_two_workers_share_the_stream_without_loss_or_duplicates(tmp_path: Path, mosquitto: Server,
                                                                  influxd: Server) -> None:
    database = f"shared_{time.monotonic_ns()}"
    db = InfluxClient(f"http://127.0.0.1:{influxd.port}", database)
    site_file = write_site(tmp_path / "site.yaml", connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
                           connections__influxdb={"url": f"http://127.0.0.1:{influxd.port}", "database": database},
                           ingest={"shared_group": f"g{time.monotonic_ns()}"})
    n = 4000
    client = mqtt_client(mosquitto.port)
    try:
        with ingest_running(site_file, worker="a") as a, ingest_running(site_file, worker="b") as b:
            publish_all(client, good_payloads(n))
            stored = wait_count(db, "SELECT count(value) FROM telemetry", n * READINGS)
            got_a, got_b = a.metrics.totals["received_messages"], b.metrics.totals["received_messages"]
        assert stored == n * READINGS
        assert_all_present_once(db, n)
        assert got_a + got_b == n and got_a > 0 and got_b > 0  # split, each message delivered to one worker once
    finally:
        client.loop_stop()
        db.close()


def test_metrics_topic_and_prometheus_endpoint(tmp_path: Path, mosquitto: Server, influxd: Server) -> None:
    database = f"metrics_{time.monotonic_ns()}"
    db = InfluxClient(f"http://127.0.0.1:{influxd.port}", database)
    port = free_port()
    site_file = write_site(tmp_path / "site.yaml", connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
                           connections__influxdb={"url": f"http://127.0.0.1:{influxd.port}", "database": database},
                           ingest={"metrics_interval_s": 0.5, "prometheus_port": port})
    reports: list[dict[str, Any]] = []
    watcher = mqtt_client(mosquitto.port)
    watcher.on_message = lambda _c, _u, m: reports.append(json.loads(m.payload))
    watcher.subscribe(metrics_topic("gx-demo", "ingest-m1"), qos=0)
    client = mqtt_client(mosquitto.port)
    try:
        with ingest_running(site_file, worker="m1"):
            publish_all(client, [*good_payloads(100), (telemetry_topic("gx-demo", "pl1-rectifier"), b"{oops")])
            wait_count(db, "SELECT count(value) FROM telemetry", 100 * READINGS)
            wait_until(lambda: any(r["written_points"] == 1001 for r in reports))  # 1000 readings + 1 dead letter
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert requests.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
        last = next(r for r in reports if r["written_points"] == 1001)
        assert last["worker"] == "m1" and last["received_messages"] == 101 and last["dead_lettered_messages"] == 1
        assert last["buffer_depth_points"] == 0 and last["dropped_points"] == 0 and last["lag_s"] > 0
        samples = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line and not line.startswith("#")}
        assert samples["alumon_ingest_received_messages_total"] == 101
        assert samples["alumon_ingest_written_points_total"] == 1001
        assert samples["alumon_ingest_dead_lettered_messages_total"] == 1
        assert samples["alumon_ingest_buffer_depth_points"] == 0
        assert "# TYPE alumon_ingest_written_points_total counter" in text
        assert 'site="gx-demo",worker="m1"' in text
    finally:
        client.loop_stop()
        watcher.loop_stop()
        db.close()


def test_ingest_writes_through_the_v2_api(tmp_path: Path, mosquitto: Server, victoria_metrics: Server) -> None:
    """``api: v2`` end to end: MQTT -> ingest -> influxdb-client -> /api/v2/write (VictoriaMetrics), exact counts
    per device and quantity. (Outages take the same path as with 1.x: the client raises InfluxUnavailable.)"""
    site_file = write_site(tmp_path / "site.yaml", connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
                           connections__influxdb={"api": "v2", "url": vm_url(victoria_metrics), "org": "gx",
                                                  "bucket": "alumon", "token_env": "ALUMON_TEST_TOKEN"},
                           ingest={"retry_max_s": 0.5})
    n = 1000
    client = mqtt_client(mosquitto.port)
    try:
        with ingest_running(site_file) as service:
            publish_all(client, good_payloads(n))
            wait_until(lambda: service.metrics.totals["written_points"] == n * READINGS)
            assert service.metrics.totals["buffered_points"] == 0
        series = export(victoria_metrics, '{__name__="telemetry_value",site="gx-demo"}')
        for device in DEVICES:
            values = by_quantity([s for s in series if s["metric"]["device"] == device])
            assert sorted(values) == [f"q{j}" for j in range(READINGS)]
            assert all(len(points) == n // 2 for points in values.values())
            assert values["q3"][int((T0 + timedelta(seconds=7)).timestamp() * 1000)] == 7.3
    finally:
        client.loop_stop()


def test_sigterm_with_a_hung_influxdb_exits_within_the_deadline(tmp_path: Path, mosquitto: Server) -> None:
    """InfluxDB frozen (SIGSTOP: it accepts connections and never answers) under a 30 s write timeout: SIGTERM
    makes ingest exit within its 1 s deadline (plus a second to close), and the batch it was writing stays
    unacknowledged, so the next ingest stores every message exactly once."""
    influx, db, site_file = own_influx(tmp_path, mosquitto, "hung", influx_timeout_s=30.0, shutdown_deadline_s=1.0)
    n = 200
    buffer_dir, log = tmp_path / "buffer", tmp_path / "ingest.log"
    client = mqtt_client(mosquitto.port)
    proc = start_ingest_process(site_file, buffer_dir, "hung", log)
    try:
        time.sleep(3)
        publish_all(client, good_payloads(n)[: n // 2])
        assert wait_count(db, "SELECT count(value) FROM telemetry", n // 2 * READINGS) == n // 2 * READINGS
        os.kill(influx.pid, signal.SIGSTOP)
        publish_all(client, good_payloads(n)[n // 2:])
        time.sleep(1.0)  # ingest is now waiting on a write InfluxDB will never answer
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - began < 3.0
        assert "shutdown deadline of 1.0 s exceeded" in log.read_text()
        os.kill(influx.pid, signal.SIGCONT)
        proc = start_ingest_process(site_file, buffer_dir, "hung", log)
        assert wait_count(db, "SELECT count(value) FROM telemetry", n * READINGS) == n * READINGS
        assert_all_present_once(db, n)
    finally:
        os.kill(influx.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=30)
        client.loop_stop()
        influx.stop()
