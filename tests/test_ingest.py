"""Ingest against a real mosquitto and a real influxd: exact counts, dead letters, ack only after write."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

from alumon.config import load_site
from alumon.influx import InfluxClient
from alumon.stack import Server, start_influxd
from alumon.telemetry import Quality, Reading, TelemetryMessage, deadletter_topic, encode, telemetry_topic
from ingest.lines import message_lines
from ingest.service import dropped_lines, run_ingest
from tests.conftest import mqtt_client, write_site

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def message(device: str, seq: int) -> TelemetryMessage:
    readings = {"line_current_ka": Reading(value=400.0 + seq % 7, quality=Quality.GOOD, unit="kA"),
                "series_voltage_v": Reading(value=1190.0, quality=Quality.GOOD, unit="V"),
                "cells_in_circuit": Reading(value=None, quality=Quality.STALE)}
    return TelemetryMessage(v=1, site="gx-demo", device=device, seq=seq, ts=T0 + timedelta(seconds=seq),
                            readings=readings)


def publish_all(client: mqtt.Client, items: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(topic, payload, qos=1) for topic, payload in items]
    for info in infos:
        info.wait_for_publish(timeout=30)


@contextmanager
def ingest_running(site_file: Path) -> Iterator[threading.Event]:
    stop = threading.Event()
    t = threading.Thread(target=run_ingest, args=(load_site(site_file), stop), daemon=True)
    t.start()
    time.sleep(1.0)  # subscribed
    try:
        yield stop
    finally:
        stop.set()
        t.join(timeout=20)
        assert not t.is_alive()


def wait_count(db: InfluxClient, q: str, expected: int, timeout_s: float = 30) -> float:
    deadline = time.monotonic() + timeout_s
    n = 0.0
    while time.monotonic() < deadline:
        n = db.query_scalar(q) or 0
        if n >= expected:
            time.sleep(0.5)  # and nothing more arrives
            return db.query_scalar(q) or 0
        time.sleep(0.2)
    return n


BAD = [
    ("not_json", b"{broken"),
    ("wrong_version", json.dumps({"v": 9}).encode()),
    ("non_finite", encode(message("pl1-rectifier", 0)).replace(b"400.0", b"NaN")),
    ("invalid", json.dumps({"v": 1, "site": "gx-demo"}).encode()),
    ("not_utf8", b"\xff\xfe"),
    ("not_object", b"[1, 2]"),
    ("oversized", b"{" + b" " * (256 * 1024) + b"}"),
    ("topic_mismatch", encode(message("pl2-rectifier", 0))),  # published on pl1-rectifier's topic
]


def test_good_and_bad_exact_counts(site_file: Path, mosquitto: Server, influx_db: InfluxClient) -> None:
    n = 2000
    dead: list[dict[str, object]] = []
    watcher = mqtt_client(mosquitto.port)
    watcher.on_message = lambda _c, _u, m: dead.append(json.loads(m.payload))
    watcher.subscribe(deadletter_topic("gx-demo"), qos=1)
    items: list[tuple[str, bytes]] = []
    for seq in range(n):
        dev = ("pl1-rectifier", "pl2-rectifier")[seq % 2]
        items.append((telemetry_topic("gx-demo", dev), encode(message(dev, seq))))
        if seq % 20 == 0:  # 100 bad payloads interleaved, 12-13 of each kind
            _, payload = BAD[(seq // 20) % len(BAD)]
            items.append((telemetry_topic("gx-demo", "pl1-rectifier"), payload))
    unknown = message("pl1-rectifier", 1).model_copy(update={"device": "ghost-meter"})
    items.append((telemetry_topic("gx-demo", "ghost-meter"), encode(unknown)))
    with ingest_running(site_file):
        client = mqtt_client(mosquitto.port)
        publish_all(client, items)
        stored = wait_count(influx_db, "SELECT count(seq) FROM telemetry", n * 3)
        dls = wait_count(influx_db, "SELECT count(size) FROM dead_letter", n // 20 + 1)
    assert stored == n * 3  # three readings per message, the stale one stored without a value
    assert influx_db.query_scalar("SELECT count(value) FROM telemetry") == n * 2
    assert dls == n // 20 + 1
    rows = influx_db.query("SELECT count(size) FROM dead_letter GROUP BY reason")
    by_reason = {s["tags"]["reason"]: s["values"][0][1] for s in rows}
    expected = {reason: 0 for reason, _ in BAD}
    for k in range(n // 20):
        expected[BAD[k % len(BAD)][0]] += 1
    assert by_reason == {**expected, "unknown_device": 1}
    deadline = time.monotonic() + 5
    while len(dead) < n // 20 + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(dead) == n // 20 + 1 and {d["reason"] for d in dead} == set(by_reason)
    client.loop_stop()
    watcher.loop_stop()


def own_influx_site(tmp_path: Path, mosquitto: Server, database: str) -> tuple[Server, InfluxClient, Path]:
    """A private influxd (so the test may stop it) and the example site wired to it and the shared broker."""
    influx = start_influxd(tmp_path / "own-influx")
    db = InfluxClient(f"http://127.0.0.1:{influx.port}", database)
    site_file = write_site(tmp_path / "site.yaml", connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
                           connections__influxdb={"url": f"http://127.0.0.1:{influx.port}", "database": database})
    return influx, db, site_file


def publish_burst(client: mqtt.Client, device: str, n: int) -> None:
    publish_all(client, [(telemetry_topic("gx-demo", device), encode(message(device, s))) for s in range(n)])


def test_ack_only_after_write_through_influx_outage(tmp_path: Path, mosquitto: Server) -> None:
    influx, db, site_file = own_influx_site(tmp_path, mosquitto, "outage")
    n = 500
    client = mqtt_client(mosquitto.port)
    with ingest_running(site_file) as stop:
        influx.stop()
        publish_burst(client, "pl1-rectifier", n)
        time.sleep(2)
        stop.set()  # ingest stops while InfluxDB is down: nothing may have been acked
    influx = start_influxd(tmp_path / "own-influx", port=influx.port)
    try:
        assert (db.query_scalar("SELECT count(seq) FROM telemetry") or 0) == 0
        with ingest_running(site_file):  # the broker redelivers everything unacked
            stored = wait_count(db, "SELECT count(seq) FROM telemetry", n * 3)
        assert stored == n * 3
        (series,) = db.query("SELECT count(distinct(seq)) FROM telemetry")
        assert series["values"][0][1] == n
        # A duplicate of a written message changes nothing (same series + timestamp overwrite).
        with ingest_running(site_file):
            publish_all(client, [(telemetry_topic("gx-demo", "pl1-rectifier"), encode(message("pl1-rectifier", 5)))])
            time.sleep(1.5)
        assert db.query_scalar("SELECT count(seq) FROM telemetry") == n * 3
    finally:
        client.loop_stop()
        influx.stop()


def test_ack_after_write_influx_restarted_under_running_ingest(tmp_path: Path, mosquitto: Server) -> None:
    influx, db, site_file = own_influx_site(tmp_path, mosquitto, "outage2")
    n = 500
    client = mqtt_client(mosquitto.port)
    try:
        with ingest_running(site_file):
            influx.stop()
            publish_burst(client, "pl2-rectifier", n)
            time.sleep(1.5)
            influx = start_influxd(tmp_path / "own-influx", port=influx.port)  # same run dir: data survives
            stored = wait_count(db, "SELECT count(seq) FROM telemetry", n * 3)
        assert stored == n * 3
        (series,) = db.query("SELECT count(distinct(seq)) FROM telemetry")
        assert series["values"][0][1] == n
    finally:
        client.loop_stop()
        influx.stop()


def test_partial_write_dropped_count() -> None:
    msg = 'partial write: field type conflict: input field "value" on measurement "telemetry" is type string dropped=3'
    assert dropped_lines(msg) == 3
    assert dropped_lines("partial write: something new") == 1


def test_message_lines_idempotent() -> None:
    lines = message_lines(message("pl1-rectifier", 7))
    assert lines == message_lines(message("pl1-rectifier", 7)) and len(lines) == 3
    stale = next(ln for ln in lines if "quantity=cells_in_circuit" in ln)
    assert " value=" not in stale and ",value=" not in stale and "seq=7i" in stale
