"""``alumon ingest``: MQTT telemetry -> validated -> line protocol -> InfluxDB, acknowledged after the write.

Delivery: a persistent MQTT 5 session with manual acknowledgement. A message is acked only once the batch
containing its points (or its dead letter) was accepted by InfluxDB or committed to the disk buffer
(``ingest.buffer``); anything else when the process stops or dies stays unacked and the broker redelivers it.
Points are idempotent (series + poll time), so a redelivery overwrites instead of double-counting.

InfluxDB down or slow: batches go to the disk buffer and are acked, so the broker's queue (which mosquitto
caps at ``max_queued_messages``) never fills. While the buffer holds anything, new batches go behind it and
the buffer drains oldest first: InfluxDB receives the data in the order it arrived.

Pipelining: the main thread validates messages and builds batches while a writer thread sends the
previous batch to InfluxDB and acknowledges it, so the database is never idle while ingest parses (batches
are written and acknowledged strictly in arrival order).

Bounding memory: the in-memory queue is capped (mosquitto refills its whole window on each PUBACK,
shared/environment.md §3.4): past ``max_pending_messages`` the network callback waits instead of growing it.

Scale-out: with ``ingest.shared_group`` set, workers subscribe to ``$share/<group>/...`` and split the
stream. Each worker needs a stable ``--worker`` id: its persistent session (and the messages the broker routed
to it) belongs to that client id, so a crashed worker gets its share back when it restarts under the same id.
"""

from __future__ import annotations

import json
import logging
import math
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
BATCHES_AHEAD = 2  # batches validated and waiting while one is written: enough to keep InfluxDB busy


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


_END = _Batch()  # handed to the writer at shutdown: nothing follows


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
        self.batches: queue.Queue[_Batch] = queue.Queue(maxsize=BATCHES_AHEAD)  # validated, for the writer
        self._writer = threading.Thread(target=self._write_loop, name="influx-writer", daemon=True)
        self._writer_deadline = math.inf  # monotonic time after which the writer takes no further batch
        self._writer_failed = False
        self._held: _Batch | None = None  # a batch the full buffer (block policy) could not take yet
        self._next_report = self._next_log = 0.0
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

    # -- batching side (the main thread) ----------------------------------------------------------------------

    def _next_batch(self, wait_s: float) -> _Batch:
        """Block for one message, then collect more for up to ``max_batch_wait_ms`` or until the batch is full:
        InfluxDB spends far less per point on one write of 5000 lines than on fifty of 100, and a few tens
        of milliseconds of latency cost nothing to a dashboard."""
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

    def _hand_over(self, batch: _Batch, until: float) -> bool:
        """Queue a batch for the writer; False when it had no room by ``until`` (the writer is behind)."""
        try:
            self.batches.put(batch, timeout=max(0.0, until - time.monotonic()))
            return True
        except queue.Full:
            return False

    # -- writer side (the writer thread) -----------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while True:
                draining = len(self.buffer) > 0 and self._influx_due()
                try:
                    batch = self.batches.get_nowait() if draining else self.batches.get(timeout=0.2)
                except queue.Empty:
                    batch = None
                if batch is _END or time.monotonic() > self._writer_deadline:
                    return
                if batch is not None and not self._deliver_or_hold(batch):
                    return  # stopping with a full buffer: the batch stays unacked for redelivery
                self._drain(DRAIN_SLICE_S)
        except Exception:
            log.exception("the InfluxDB writer failed; stopping (unacknowledged messages will be redelivered)")
            self._writer_failed = True
            self.stop.set()

    def _deliver_or_hold(self, batch: _Batch) -> bool:
        """Deliver the batch; under the block policy with a full buffer, keep it (taking nothing new) and keep
        draining until it fits. False when stopping first."""
        while not self._deliver(batch):
            self._held = batch
            if self.stop.is_set():
                return False
            if not self._influx_due():
                self.stop.wait(min(0.2, max(0.0, self._retry_at - time.monotonic())))
            self._drain(DRAIN_SLICE_S)
        self._held = None
        return True

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
        # MQTT wants PUBACKs in receive order; ingest subscribes at QoS 1, a QoS 0 message needs none.
        self.client.ack_many([item.mid for item in batch.items if item.qos == 1])
        for item in batch.items:
            if item.dead_letter is not None:
                self.metrics.count("dead_lettered_messages")
                self.client.publish(deadletter_topic(self.site.id), item.dead_letter.to_json(), qos=1)

    # -- metrics -----------------------------------------------------------------------------------------------

    def _gauges(self) -> dict[str, float]:
        held = len(self._held.items) if self._held is not None else 0
        return self.metrics.gauges(self.buffer.points, self.buffer.bytes, self._unhanded_messages() + held)

    def _unhanded_messages(self) -> int:
        """Received and not yet taken by the writer: in the queue or in validated batches waiting for it (a
        racy read, fine for a gauge and a log line)."""
        return self.queue.qsize() + sum(len(b.items) for b in list(self.batches.queue))

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

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._next_report:
            self._next_report = now + self.settings.metrics_interval_s
            self._report()
        if now >= self._next_log:
            self._next_log = now + LOG_STATS_EVERY_S
            log.info("stats: %s", self.snapshot())

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
        # A window as large as what ingest holds unacknowledged (acks follow the write, a batch of thousands of
        # messages at a time): with mosquitto's default of 20 the broker would stall between writes.
        connect(self.client, self.site.config.connections.mqtt, persistent=True,
                receive_maximum=min(self.settings.max_pending_messages, 65535))
        self.client.loop_start()
        self._next_report = time.monotonic() + self.settings.metrics_interval_s
        self._next_log = time.monotonic() + LOG_STATS_EVERY_S
        self._writer.start()
        try:
            unsent = _Batch()
            while not self.stop.is_set():
                if not unsent.items:
                    unsent = self._next_batch(wait_s=0.2)
                # While the writer is behind, the network thread stops reading at max_pending_messages and the
                # rest waits unacknowledged at the broker; metrics keep going out meanwhile.
                if unsent.items and self._hand_over(unsent, time.monotonic() + 0.2):
                    unsent = _Batch()
                self._periodic()
            self._flush_on_shutdown(unsent)
            if self._writer_failed:
                raise RuntimeError("the InfluxDB writer failed (see the log above)")
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

    def _flush_on_shutdown(self, unsent: _Batch) -> None:
        """Write (or buffer) what was received, within the deadline; the rest stays unacked for redelivery."""
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        self._writer_deadline = deadline
        self.client.on_message = None  # take nothing new
        batch = unsent if unsent.items else self._next_batch(wait_s=0.05)
        while batch.items and self._writer.is_alive() and self._hand_over(batch, deadline):
            batch = self._next_batch(wait_s=0.05)
        self._hand_over(_END, deadline)
        # A write under way finishes (or times out) before the writer looks at the deadline again.
        self._writer.join(max(0.0, deadline - time.monotonic()) + self.site.config.connections.influxdb.timeout_s)
        left = self._unhanded_messages()  # _END has no items
        if self._held is not None:
            log.warning("shutdown: disk buffer full, %d messages left unacked for redelivery",
                        left + len(self._held.items))
        elif left:
            log.warning("shutdown deadline: %d messages left unacked for redelivery", left)


def dropped_lines(message: str) -> int:
    """InfluxDB 1.x ends a partial-write error with ``dropped=N``; count 1 if it does not say."""
    m = re.search(r"dropped=(\d+)", message)
    return int(m.group(1)) if m else 1


def run_ingest(site: Site, stop: threading.Event, worker: str = "1", buffer_dir: Path | None = None) -> None:
    """``alumon ingest``: the service as its own process (the shutdown deadline is enforced)."""
    IngestService(site, stop, worker=worker, buffer_dir=buffer_dir, hard_deadline=True).run()
