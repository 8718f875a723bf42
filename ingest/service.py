"""``alumon ingest``: MQTT telemetry -> validated -> line protocol -> InfluxDB, acknowledged after the write.

Delivery: a persistent MQTT 5 session with manual acknowledgement. A message is acked only once the batch
containing its points (or its dead letter) was accepted by InfluxDB or committed to the disk buffer
(``ingest.buffer``); anything else when the process stops or dies stays unacked and the broker redelivers it.
Points are idempotent (series + poll time), so a redelivery overwrites instead of double-counting.

InfluxDB down or slow: batches go to the disk buffer and are acked, so the broker's queue (which mosquitto
caps at ``max_queued_messages``) never fills. While the buffer holds anything, new batches go behind it and
the buffer drains oldest first: InfluxDB receives the data in the order it arrived.

Bounding memory: the in-memory queue is capped (mosquitto refills its whole window on each PUBACK,
shared/environment.md §3.4): past ``max_pending_messages`` the network callback waits instead of growing it.

Scale-out: with ``ingest.shared_group`` set, workers subscribe to ``$share/<group>/...`` and split the
stream. Each worker needs a stable ``--worker`` id: its persistent session (and the messages the broker routed
to it) belongs to that client id, so a crashed worker gets its share back when it restarts under the same id.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from alumon.config import Site
from alumon.influx import InfluxError, open_writer
from alumon.mqtt import connect, make_client
from alumon.prometheus import MetricsEndpoint
from alumon.telemetry import TelemetryError, deadletter_topic, decode, metrics_topic, telemetry_subscription
from ingest.buffer import Appended, WriteBuffer
from ingest.deadletter import DeadLetter
from ingest.lines import message_lines
from ingest.metrics import IngestMetrics

log = logging.getLogger("alumon.ingest")

LOG_STATS_EVERY_S = 60.0
DRAIN_SLICE_S = 0.5  # drain at most this long before taking in new messages again
FIRST_RETRY_S = 0.5


@dataclass
class _Item:
    mid: int
    qos: int
    lines: list[str]
    newest_ms: int | None = None  # the reading time (None for a dead letter)
    dead_letter: DeadLetter | None = None


_Received = tuple[str, bytes, int, int]  # topic, payload, mid, qos


@dataclass
class _Batch:
    items: list[_Item] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def newest_ms(self) -> int | None:
        return max((it.newest_ms for it in self.items if it.newest_ms is not None), default=None)


def subscription(site: Site) -> str:
    topic = telemetry_subscription(site.id)
    group = site.config.ingest.shared_group
    return topic if group is None else f"$share/{group}/{topic}"


class IngestService:
    def __init__(self, site: Site, stop: threading.Event, *, worker: str = "1", buffer_dir: Path | None = None,
                 hard_deadline: bool = False):
        self.site = site
        self.stop = stop
        self.worker = worker
        self.settings = site.config.ingest
        self.hard_deadline = hard_deadline  # a process of its own: may exit hard when the deadline is blown
        self.metrics = IngestMetrics()
        self.known_devices = {d.id for d in site.config.devices}
        self.influx = open_writer(site.config.connections.influxdb)
        buffer_dir = buffer_dir or Path("run") / "ingest-buffer" / site.id
        self.buffer = WriteBuffer(buffer_dir / f"worker-{worker}.sqlite", int(self.settings.buffer_max_mb * 2**20),
                                  self.settings.buffer_full)
        self.queue: queue.Queue[_Received] = queue.Queue()
        self._held: _Batch | None = None  # a batch the full buffer (block policy) could not take yet
        self._retry_at = 0.0  # monotonic time before which InfluxDB is not tried again
        self._retry_delay = FIRST_RETRY_S
        self._last_dl_ms = 0
        self.client = make_client(site.config.connections.mqtt, client_id=f"alumon-ingest-{site.id}-{worker}",
                                  manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.endpoint: MetricsEndpoint | None = None
        if self.settings.prometheus_port is not None:
            self.endpoint = MetricsEndpoint(self.settings.prometheus_bind, self.settings.prometheus_port,
                                            self.prometheus_text)

    # -- MQTT side (paho's network thread) ------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker refused connection: %s", reason_code)
            return
        # Subscribe on every CONNACK: a broker that lost its state would otherwise leave us deaf.
        client.subscribe(subscription(self.site), qos=1)
        log.info("connected (session present: %s), subscribed to %s", flags.session_present,
                 subscription(self.site))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.metrics.count("received_messages")
            # Only receive here: validation happens on the writer thread, so paho's thread, which also parses
            # every MQTT packet, does as little as possible per message.
            self.queue.put((msg.topic, bytes(msg.payload), msg.mid, msg.qos))
        except Exception:  # a callback must never raise into paho's loop
            log.exception("unexpected error handling a message on %s", msg.topic)
        # Bound memory: hold the network thread briefly. While we do not return, paho reads no further
        # PUBLISHes, so the rest stays unacked in our persistent session at the broker.
        while self.queue.qsize() > self.settings.max_pending_messages and not self.stop.is_set():
            time.sleep(0.01)

    def _classify(self, topic: str, payload: bytes, mid: int, qos: int) -> _Item:
        try:
            tm = decode(payload, topic)
            if tm.site != self.site.id:
                raise TelemetryError("wrong_site", f"site {tm.site!r}, this ingest serves {self.site.id!r}")
            if tm.device not in self.known_devices:
                raise TelemetryError("unknown_device", f"device {tm.device!r} is not in the site config")
            return _Item(mid, qos, message_lines(tm), tm.ts_ms)
        except TelemetryError as exc:
            dl = DeadLetter(self.site.id, topic, exc.reason, exc.detail, payload)
        except ValueError as exc:  # e.g. a value line protocol cannot carry
            dl = DeadLetter(self.site.id, topic, "unencodable", str(exc), payload)
        return _Item(mid, qos, [dl.to_line(self._dead_letter_ms())], None, dl)

    def _dead_letter_ms(self) -> int:
        # Unique, increasing timestamps: two dead letters with the same reason must not overwrite each other.
        self._last_dl_ms = max(int(time.time() * 1000), self._last_dl_ms + 1)
        return self._last_dl_ms

    # -- writer side (this thread) ---------------------------------------------------------------------------

    def _next_batch(self, wait_s: float) -> _Batch:
        """Block for one message, then collect more for up to ``max_batch_wait_ms`` or until the batch is full:
        InfluxDB spends far less per point on one write of 5000 lines than on fifty of 100, and a few tens
        of milliseconds of latency cost nothing to a dashboard."""
        if self._held is not None:
            batch, self._held = self._held, None
            return batch
        batch = _Batch()
        try:
            first = self._classify(*(self.queue.get(timeout=wait_s) if wait_s > 0 else self.queue.get_nowait()))
        except queue.Empty:
            return batch
        items = [first]
        n_lines = len(first.lines)
        until = time.monotonic() + self.settings.max_batch_wait_ms / 1000.0
        while n_lines < self.settings.max_batch_points:
            try:
                item = self._classify(*self.queue.get_nowait())
            except queue.Empty:
                left = until - time.monotonic()
                if left <= 0 or self.stop.is_set():
                    break
                try:
                    item = self._classify(*self.queue.get(timeout=left))
                except queue.Empty:
                    break
            items.append(item)
            n_lines += len(item.lines)
        batch.items = items
        batch.lines = [ln for it in items for ln in it.lines]
        return batch

    def _influx_due(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _write(self, lines: list[str], newest_ms: int | None) -> bool:
        """One write attempt. True when InfluxDB took the batch (or refused it for good: unusable data must not
        block every later message); False when it should be retried later (down, slow, no database yet)."""
        began = time.monotonic()
        try:
            partial = self.influx.write_lines(lines)
        except InfluxError as exc:
            if exc.status == 404:  # database dropped or never made: make it, then retry
                self._create_database()
            elif not exc.retryable:
                self.metrics.count("rejected_lines", len(lines))
                log.error("InfluxDB refused a batch of %d lines: %s", len(lines), exc)
                return True
            self.metrics.count("write_failures")
            self._retry_at = time.monotonic() + self._retry_delay
            log.warning("InfluxDB unavailable (%s); buffering on disk, next try in %.1f s", exc, self._retry_delay)
            self._retry_delay = min(self._retry_delay * 2, self.settings.retry_max_s)
            return False
        rejected = 0
        if partial is not None:
            rejected = dropped_lines(partial.message)
            self.metrics.count("rejected_lines", rejected)
            log.error("InfluxDB refused part of a batch (good lines kept): %s", partial.message)
        self.metrics.written(len(lines) - rejected, time.monotonic() - began, newest_ms)
        self._retry_delay = FIRST_RETRY_S
        return True

    def _create_database(self) -> None:
        try:
            self.influx.create_database()
        except InfluxError as exc:
            log.warning("cannot create database %r yet: %s", self.influx.database, exc)

    def _deliver(self, batch: _Batch) -> bool:
        """Write the batch, or park it in the disk buffer (behind anything already there, to keep the order),
        then acknowledge it. False when it could be neither (full buffer, block policy): it stays unacked."""
        if not len(self.buffer) and self._influx_due() and self._write(batch.lines, batch.newest_ms):
            self._ack(batch)
            return True
        outcome = self.buffer.append(batch.lines)
        if outcome is Appended.FULL:
            return False
        if outcome is Appended.STORED:
            self.metrics.count("buffered_points", len(batch.lines))
        self._ack(batch)
        return True

    def _drain(self, slice_s: float) -> None:
        """Write buffered batches, oldest first, for at most ``slice_s``."""
        until = time.monotonic() + slice_s
        while len(self.buffer) and self._influx_due() and time.monotonic() < until and not self.stop.is_set():
            oldest = self.buffer.oldest()
            if oldest is None or not self._write(oldest.lines, None):
                return
            self.buffer.remove(oldest)
            if not len(self.buffer):
                log.info("disk buffer drained")

    def _ack(self, batch: _Batch) -> None:
        for item in batch.items:  # MQTT wants PUBACKs in receive order
            self.client.ack(item.mid, item.qos)
            if item.dead_letter is not None:
                self.metrics.count("dead_lettered_messages")
                self.client.publish(deadletter_topic(self.site.id), item.dead_letter.to_json(), qos=1)

    def _step(self, wait_s: float) -> None:
        draining = len(self.buffer) > 0 and self._influx_due()
        batch = self._next_batch(0.0 if draining else wait_s)
        if batch.items and not self._deliver(batch):
            self._held = batch  # block policy: take nothing new until the buffer has room
            if not self._influx_due():
                self.stop.wait(min(0.2, self._retry_at - time.monotonic()))
        self._drain(DRAIN_SLICE_S)

    # -- metrics -----------------------------------------------------------------------------------------------

    def _gauges(self) -> dict[str, float]:
        held = len(self._held.items) if self._held is not None else 0
        return self.metrics.gauges(self.buffer.points, self.buffer.bytes, self.queue.qsize() + held)

    def _sync_dropped(self) -> None:
        self.metrics.totals["dropped_points"] = self.buffer.dropped_points

    def snapshot(self) -> dict[str, Any]:
        self._sync_dropped()
        return {"worker": self.worker, **self.metrics.snapshot(self._gauges())}

    def prometheus_text(self) -> str:
        self._sync_dropped()
        return self.metrics.prometheus(self._gauges(), {"site": self.site.id, "worker": self.worker})

    def _report(self) -> None:
        self.metrics.roll()
        self.client.publish(metrics_topic(self.site.id, f"ingest-{self.worker}"), json.dumps(self.snapshot()),
                            qos=0)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        if self.hard_deadline:
            threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True).start()
        self._create_database()
        if len(self.buffer):
            log.info("disk buffer holds %d points from before; draining them first", self.buffer.points)
        if self.endpoint is not None:
            self.endpoint.start()
            log.info("Prometheus metrics on http://%s:%d/metrics", self.settings.prometheus_bind, self.endpoint.port)
        connect(self.client, self.site.config.connections.mqtt, persistent=True)
        self.client.loop_start()
        next_report = time.monotonic() + self.settings.metrics_interval_s
        next_log = time.monotonic() + LOG_STATS_EVERY_S
        try:
            while not self.stop.is_set():
                self._step(wait_s=0.2)
                now = time.monotonic()
                if now >= next_report:
                    next_report = now + self.settings.metrics_interval_s
                    self._report()
                if now >= next_log:
                    next_log = now + LOG_STATS_EVERY_S
                    log.info("stats: %s", self.snapshot())
            self._flush_on_shutdown()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self.endpoint is not None:
                self.endpoint.stop()
            self.influx.close()
            self.buffer.close()
            log.info("stopped: %s", self.snapshot())

    def _watchdog(self) -> None:
        """Exit hard once the shutdown deadline (plus a second for closing) has passed, even if a write to an
        InfluxDB that accepts connections but never answers is still waiting for its timeout. Safe: whatever
        is not acknowledged is redelivered, and the disk buffer commits atomically (like ``kill -9``)."""
        self.stop.wait()
        time.sleep(self.settings.shutdown_deadline_s + 1.0)
        log.warning("shutdown deadline of %.1f s exceeded (InfluxDB not answering?): exiting now; "
                    "unacknowledged messages will be redelivered", self.settings.shutdown_deadline_s)
        logging.shutdown()
        os._exit(0)

    def _flush_on_shutdown(self) -> None:
        """Write (or buffer) what was received, within the deadline; the rest stays unacked for redelivery."""
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        self.client.on_message = None  # take nothing new
        while time.monotonic() < deadline:
            batch = self._next_batch(wait_s=0.05)
            if not batch.items:
                return
            if not self._deliver(batch):
                log.warning("shutdown: disk buffer full, %d messages left unacked for redelivery",
                            len(batch.items) + self.queue.qsize())
                return
        log.warning("shutdown deadline: %d messages left unacked for redelivery", self.queue.qsize())


def dropped_lines(message: str) -> int:
    """InfluxDB 1.x ends a partial-write error with ``dropped=N``; count 1 if it does not say."""
    m = re.search(r"dropped=(\d+)", message)
    return int(m.group(1)) if m else 1


def run_ingest(site: Site, stop: threading.Event, worker: str = "1", buffer_dir: Path | None = None) -> None:
    """``alumon ingest``: the service as its own process (the shutdown deadline is enforced)."""
    IngestService(site, stop, worker=worker, buffer_dir=buffer_dir, hard_deadline=True).run()
