"""``alumon ingest``: MQTT telemetry -> validated -> line protocol -> InfluxDB, acknowledged after the write.

Delivery: a persistent MQTT 5 session with manual acknowledgement. A message is acked only once the batch
containing its points (or its dead letter) was accepted by InfluxDB; anything not written when the process
stops or dies stays unacked and the broker redelivers it. Points are idempotent (series + poll time), so a
redelivery overwrites instead of double-counting.

Bounding memory: while InfluxDB is down nothing is acked, so the broker stops sending once its in-flight
window is full and keeps the rest queued in our session. The in-memory queue is still capped (mosquitto
refills its whole window on each PUBACK, shared/environment.md §3.4): past ``MAX_PENDING`` the network
callback waits briefly instead of growing the queue.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from alumon.config import Site
from alumon.influx import InfluxClient, InfluxError, InfluxUnavailable
from alumon.mqtt import connect, make_client
from alumon.telemetry import TelemetryError, deadletter_topic, decode, telemetry_subscription
from ingest.deadletter import DeadLetter
from ingest.lines import message_lines

log = logging.getLogger("alumon.ingest")

MAX_BATCH_LINES = 5000
MAX_PENDING = 20000
SHUTDOWN_DEADLINE_S = 5.0
STATS_EVERY_S = 30.0


@dataclass
class IngestStats:
    received: int = 0
    written_messages: int = 0
    written_points: int = 0
    dead_lettered: int = 0
    rejected_lines: int = 0
    write_retries: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items())


@dataclass
class _Item:
    mid: int
    qos: int
    lines: list[str]
    dead_letter: DeadLetter | None = None


@dataclass
class _Batch:
    items: list[_Item] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


class IngestService:
    def __init__(self, site: Site, stop: threading.Event, *, max_batch_lines: int = MAX_BATCH_LINES,
                 max_pending: int = MAX_PENDING, shutdown_deadline_s: float = SHUTDOWN_DEADLINE_S):
        self.site = site
        self.stop = stop
        self.max_batch_lines = max_batch_lines
        self.max_pending = max_pending
        self.shutdown_deadline_s = shutdown_deadline_s
        self.stats = IngestStats()
        self.known_devices = {d.id for d in site.config.devices}
        self.influx = InfluxClient.from_config(site.config.connections.influxdb)
        self.queue: queue.Queue[_Item] = queue.Queue()
        self._last_dl_ms = 0
        self.client = make_client(site.config.connections.mqtt, client_id=f"alumon-ingest-{site.id}",
                                  manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # -- MQTT side (paho's network thread) ------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker refused connection: %s", reason_code)
            return
        # Subscribe on every CONNACK: a broker that lost its state would otherwise leave us deaf.
        client.subscribe(telemetry_subscription(self.site.id), qos=1)
        log.info("connected (session present: %s), subscribed to %s", flags.session_present,
                 telemetry_subscription(self.site.id))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.queue.put(self._classify(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
        except Exception:  # a callback must never raise into paho's loop
            log.exception("unexpected error handling a message on %s", msg.topic)
        # Bound memory: hold the network thread briefly. While we do not return, paho reads no further
        # PUBLISHes, so the rest stays unacked in our persistent session at the broker.
        while self.queue.qsize() > self.max_pending and not self.stop.is_set():
            time.sleep(0.01)

    def _classify(self, topic: str, payload: bytes, mid: int, qos: int) -> _Item:
        self.stats.received += 1
        try:
            tm = decode(payload, topic)
            if tm.site != self.site.id:
                raise TelemetryError("wrong_site", f"site {tm.site!r}, this ingest serves {self.site.id!r}")
            if tm.device not in self.known_devices:
                raise TelemetryError("unknown_device", f"device {tm.device!r} is not in the site config")
            return _Item(mid, qos, message_lines(tm))
        except TelemetryError as exc:
            dl = DeadLetter(self.site.id, topic, exc.reason, exc.detail, payload)
            return _Item(mid, qos, [dl.to_line(self._dead_letter_ms())], dl)
        except ValueError as exc:  # e.g. a value line protocol cannot carry
            dl = DeadLetter(self.site.id, topic, "unencodable", str(exc), payload)
            return _Item(mid, qos, [dl.to_line(self._dead_letter_ms())], dl)

    def _dead_letter_ms(self) -> int:
        # Unique, increasing timestamps: two dead letters with the same reason must not overwrite each other.
        self._last_dl_ms = max(int(time.time() * 1000), self._last_dl_ms + 1)
        return self._last_dl_ms

    # -- writer side (this thread) ---------------------------------------------------------------------------

    def _next_batch(self, wait_s: float) -> _Batch:
        """Block for one message, then take whatever else is already queued (natural batching: low latency
        when quiet, big batches under load)."""
        batch = _Batch()
        try:
            first = self.queue.get(timeout=wait_s)
        except queue.Empty:
            return batch
        items = [first]
        n_lines = len(first.lines)
        while n_lines < self.max_batch_lines:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            n_lines += len(item.lines)
        batch.items = items
        batch.lines = [ln for it in items for ln in it.lines]
        return batch

    def _write(self, batch: _Batch, deadline: float | None) -> bool:
        """Write until accepted; False if the deadline passed (the batch stays unacked)."""
        delay = 0.5
        while True:
            try:
                partial = self.influx.write_lines(batch.lines)
                if partial is not None:
                    self.stats.rejected_lines += dropped_lines(partial.message)
                    log.error("InfluxDB refused part of a batch (good lines kept): %s", partial.message)
                return True
            except InfluxUnavailable as exc:
                self.stats.write_retries += 1
                log.warning("InfluxDB unavailable (%s); retrying in %.1f s", exc, delay)
            except InfluxError as exc:
                if exc.status == 404:  # database dropped or never made: make it, then retry
                    self._ensure_database()
                    continue
                # Not retryable and not partial: the data itself is unusable. Count it and move on rather
                # than block every later message behind it.
                self.stats.rejected_lines += len(batch.lines)
                log.error("InfluxDB refused a batch of %d lines: %s", len(batch.lines), exc)
                return True
            if deadline is not None:  # shutting down: retry only within the deadline
                if time.monotonic() + delay > deadline:
                    return False
                time.sleep(delay)
            elif self.stop.wait(delay):
                return False
            delay = min(delay * 2, 10.0)

    def _ack(self, batch: _Batch) -> None:
        for item in batch.items:  # MQTT wants PUBACKs in receive order
            self.client.ack(item.mid, item.qos)
            if item.dead_letter is not None:
                self.stats.dead_lettered += 1
                self.client.publish(deadletter_topic(self.site.id), item.dead_letter.to_json(), qos=1)
            else:
                self.stats.written_messages += 1
                self.stats.written_points += len(item.lines)

    def _ensure_database(self) -> None:
        while not self.stop.is_set():
            try:
                self.influx.create_database()
                return
            except InfluxError as exc:
                log.warning("cannot create database %r yet: %s", self.influx.database, exc)
                self.stop.wait(2.0)

    def run(self) -> None:
        self._ensure_database()
        connect(self.client, self.site.config.connections.mqtt, persistent=True)
        self.client.loop_start()
        next_stats = time.monotonic() + STATS_EVERY_S
        try:
            while not self.stop.is_set():
                batch = self._next_batch(wait_s=0.2)
                if batch.items:
                    if not self._write(batch, deadline=None):
                        # Stopped while InfluxDB was down: ack nothing after it (PUBACKs go in receive
                        # order), the broker redelivers the lot next start.
                        log.warning("stopping with %d messages unwritten; they stay unacked", len(batch.items))
                        return
                    self._ack(batch)
                if time.monotonic() >= next_stats:
                    next_stats += STATS_EVERY_S
                    log.info("stats: %s", self.stats)
            self._flush_on_shutdown()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.influx.close()
            log.info("stopped: %s", self.stats)

    def _flush_on_shutdown(self) -> None:
        deadline = time.monotonic() + self.shutdown_deadline_s
        self.client.on_message = None  # take nothing new; unacked messages are redelivered next start
        while time.monotonic() < deadline:
            batch = self._next_batch(wait_s=0.05)
            if not batch.items:
                return
            if not self._write(batch, deadline):
                log.warning("shutdown deadline: %d messages left unacked for redelivery", len(batch.items))
                return
            self._ack(batch)


def dropped_lines(message: str) -> int:
    """InfluxDB 1.x ends a partial-write error with ``dropped=N``; count 1 if it does not say."""
    m = re.search(r"dropped=(\d+)", message)
    return int(m.group(1)) if m else 1


def run_ingest(site: Site, stop: threading.Event) -> None:
    IngestService(site, stop).run()
