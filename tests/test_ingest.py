"""Ingest against a real mosquitto and a real influxd: exact counts, dead letters, ack only after write."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st

from alumon import schema
from alumon.config import BufferFullPolicy, load_site
from alumon.influx import InfluxClient
from alumon.stack import Server, start_influxd
from alumon.telemetry import Quality, Reading, TelemetryMessage, deadletter_topic, encode, telemetry_topic
from ingest.buffer import WriteBuffer
from ingest.lines import message_lines
from ingest.service import IngestService, dropped_lines
from tests.conftest import mqtt_client, write_site

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def message(device: str, seq: int, t0: datetime = T0) -> TelemetryMessage:
    """Two readings with a value and one without (no ``value`` field on its line), ``seq`` seconds after t0."""
    readings = {"line_current_ka": Reading(value=400.0 + seq % 7, quality=Quality.GOOD, unit="kA"),
                "series_voltage_v": Reading(value=1190.0, quality=Quality.GOOD, unit="V"),
                "cells_in_circuit": Reading(value=None, quality=Quality.STALE)}
    return TelemetryMessage(v=1, site="gx-demo", device=device, seq=seq, ts=t0 + timedelta(seconds=seq),
                            readings=readings)


def publish_all(client: mqtt.Client, items: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(topic, payload, qos=1) for topic, payload in items]
    for info in infos:
        info.wait_for_publish(timeout=30)


_workers = itertools.count()


@contextmanager
def ingest_running(site_file: Path, buffer_dir: Path | None = None,
                   worker: str | None = None) -> Iterator[IngestService]:
    """Ingest in a thread (its own MQTT session unless ``worker`` names one) until the block ends."""
    stop = threading.Event()
    worker = worker or f"t{os.getpid()}-{next(_workers)}"
    service = IngestService(load_site(site_file), stop, worker=worker,
                            buffer_dir=buffer_dir or site_file.parent / f"buffer-{worker}")
    t = threading.Thread(target=service.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not service.client.is_connected():  # connected and (a moment later) subscribed
        assert time.monotonic() < deadline, "ingest did not connect"
        time.sleep(0.05)
    time.sleep(0.5)
    try:
        yield service
    finally:
        stop.set()
        t.join(timeout=30)
        assert not t.is_alive()


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


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


def test_stopping_during_an_outage_keeps_everything_in_the_disk_buffer(tmp_path: Path, mosquitto: Server) -> None:
    influx, db, site_file = own_influx_site(tmp_path, mosquitto, "outage")
    n = 500
    client = mqtt_client(mosquitto.port)
    buffer_dir = tmp_path / "buffer"
    with ingest_running(site_file, buffer_dir, worker="outage") as service:
        influx.stop()
        publish_burst(client, "pl1-rectifier", n)
        wait_until(lambda: service.buffer.points == n * 3)
        assert service.metrics.totals["received_messages"] == n
    # Stopped while InfluxDB is down: everything was acked to the broker and is on disk.
    assert WriteBuffer(buffer_dir / "worker-outage.sqlite", 2**30, BufferFullPolicy.BLOCK).points == n * 3
    influx = start_influxd(tmp_path / "own-influx", port=influx.port)
    try:
        assert (db.query_scalar("SELECT count(seq) FROM telemetry") or 0) == 0
        with ingest_running(site_file, buffer_dir, worker="outage") as service:  # drains the buffer first
            stored = wait_count(db, "SELECT count(seq) FROM telemetry", n * 3)
            assert service.metrics.totals["received_messages"] == 0  # nothing was left at the broker
            assert service.buffer.points == 0
        assert stored == n * 3
        (series,) = db.query("SELECT count(distinct(seq)) FROM telemetry")
        assert series["values"][0][1] == n
        # A duplicate of a written message changes nothing (same series + timestamp overwrite).
        with ingest_running(site_file, buffer_dir, worker="outage"):
            publish_all(client, [(telemetry_topic("gx-demo", "pl1-rectifier"), encode(message("pl1-rectifier", 5)))])
            time.sleep(1.5)
        assert db.query_scalar("SELECT count(seq) FROM telemetry") == n * 3
    finally:
        client.loop_stop()
        influx.stop()


def test_full_buffer_under_block_policy_leaves_messages_unacked(tmp_path: Path, mosquitto: Server) -> None:
    """A tiny buffer (about 40 messages) with the ``block`` policy: the rest stays unacked at the broker and
    arrives once InfluxDB is back; nothing is dropped."""
    influx = start_influxd(tmp_path / "own-influx")
    db = InfluxClient(f"http://127.0.0.1:{influx.port}", "block")
    site_file = write_site(tmp_path / "site.yaml", connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
                           connections__influxdb={"url": f"http://127.0.0.1:{influx.port}", "database": "block"},
                           ingest={"buffer_max_mb": 0.02, "buffer_full": "block", "max_batch_points": 30})
    n = 300
    client = mqtt_client(mosquitto.port)
    try:
        with ingest_running(site_file, worker="block") as service:
            influx.stop()
            publish_burst(client, "pl1-rectifier", n)
            wait_until(lambda: service._held is not None)
            time.sleep(1.0)
            assert 0 < service.buffer.points < n * 3 and service.metrics.totals["dropped_points"] == 0
        influx = start_influxd(tmp_path / "own-influx", port=influx.port)
        with ingest_running(site_file, worker="block") as service:
            stored = wait_count(db, "SELECT count(seq) FROM telemetry", n * 3)
            assert service.metrics.totals["received_messages"] > 0  # redelivered by the broker
        assert stored == n * 3
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


def reference_lines(msg: TelemetryMessage) -> list[str]:
    """The telemetry points written the plain way, through schema.line (what the fast path must equal)."""
    return [schema.line(schema.TELEMETRY, {"site": msg.site, "device": msg.device, "quantity": q},
                        {"value": r.value, "quality": r.quality.value, "seq": msg.seq, "unit": r.unit,
                         "historical": msg.historical, "flags": ",".join(r.flags) or None}, msg.ts_ms)
            for q, r in msg.readings.items()]


@settings(max_examples=300, deadline=None)
@given(readings=st.dictionaries(
    st.from_regex(r"^[a-z][a-z0-9_]{0,20}$", fullmatch=True),
    st.builds(Reading, value=st.none() | st.floats(allow_nan=False, allow_infinity=False),
              quality=st.sampled_from(list(Quality)), unit=st.text(max_size=10),
              flags=st.lists(st.from_regex(r"^[a-z_]{1,8}$", fullmatch=True), max_size=2)),
    min_size=1, max_size=5),
    seq=st.integers(0, 2**63 - 1), historical=st.booleans(), device=st.from_regex(r"^[a-z0-9][a-z0-9-]{0,10}$",
                                                                                   fullmatch=True))
def test_fast_message_lines_equal_schema_lines(readings: dict[str, Reading], seq: int, historical: bool,
                                               device: str) -> None:
    msg = TelemetryMessage(v=1, site="gx-demo", device=device, seq=seq, ts=T0, historical=historical,
                           readings=readings)
    assert message_lines(msg) == reference_lines(msg)
