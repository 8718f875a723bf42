"""MQTT side of the edge: publishes spooled messages at QoS 1 and deletes each from the spool on PUBACK.

paho's network thread owns the connection and reconnects with back-off (the one place reconnection lives);
a pump thread feeds the spool to it with a bounded window of unacknowledged messages and at most
``replay_max_per_s`` messages a second, so a long outage is replayed in order and paced instead of being
dumped into paho's memory and onto the broker at once. A message replayed long after its poll is re-marked
``historical`` so analytics updates KPIs from it without firing live alerts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from alumon.config import MqttConnection
from alumon.mqtt import connect, make_client
from alumon.telemetry import format_ts, metrics_topic, status_topic, utc_now
from edge.spool import Spool, SpooledMessage

log = logging.getLogger("alumon.edge.publisher")
WINDOW = 200  # unacknowledged messages handed to paho at once
HISTORICAL_AFTER_S = 10.0
AGENT_ID = "edge"  # status topic alumon/v1/{site}/edge/status carries the agent's own state and last will


def mark_historical(payload: bytes) -> bytes:
    body = json.loads(payload)
    if body.get("historical"):
        return payload
    body["historical"] = True
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Publisher:
    def __init__(self, site_id: str, conn: MqttConnection, spool: Spool, max_per_s: float = 500.0):
        self.site_id = site_id
        self.spool = spool
        self.max_per_s = max_per_s
        self.published = 0
        self.acked = 0
        self.refused = 0  # PUBACKs with a failure reason (ACL): kept in the spool
        self.redelivered = 0  # acknowledged messages sent again because the broker lost its state
        self.connects = 0
        # (paho message info, spool id), oldest first. PUBACKs are read from the info objects by the pump
        # thread, never inside paho's callback: paho holds its own locks there, and mids wrap around.
        self._inflight: list[tuple[mqtt.MQTTMessageInfo, int]] = []
        self._last_sent_id = 0
        self._refused_mids: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.client = make_client(conn, client_id=f"alumon-edge-{site_id}")
        self.client.max_inflight_messages_set(WINDOW)
        self.client.will_set(status_topic(site_id, AGENT_ID), self._status("offline", "connection lost"),
                             qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._conn = conn
        self.on_connected: Callable[[], None] | None = None
        self._pump = threading.Thread(target=self._pump_loop, name="edge-pump", daemon=True)

    def _status(self, state: str, reason: str = "") -> bytes:
        return json.dumps({"state": state, "reason": reason, "ts": format_ts(utc_now()),
                           "spool_depth": self.spool.depth(), "spool_dropped": self.spool.dropped}).encode()

    def counters(self) -> dict[str, int]:
        with self._lock:
            inflight = len(self._inflight)
        return {"published": self.published, "acked": self.acked, "refused": self.refused,
                "redelivered": self.redelivered, "inflight": inflight, "connects": self.connects}

    def start(self) -> None:
        connect(self.client, self._conn, persistent=True)
        self.client.loop_start()
        self._pump.start()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker refused connection: %s", reason_code)
            return
        log.info("connected to broker (session present: %s)", flags.session_present)
        self.connects += 1
        client.publish(status_topic(self.site_id, AGENT_ID), self._status("online"), qos=1, retain=True)
        if self.on_connected is not None:
            self.on_connected()  # re-publish what a broker that lost its state would otherwise not know
        redelivered = 0
        if not flags.session_present:  # the broker has no session of ours: it may have lost what it acked
            redelivered = self.spool.redeliver(int(time.time() * 1000))
            if redelivered:
                log.warning("broker lost its session state: sending the last %d acknowledged messages again",
                            redelivered)
        with self._lock:
            # paho re-sends what it still holds; the pump continues after the newest of those (or, after
            # a redelivery, from the start of the outbox).
            self._last_sent_id = 0 if redelivered else max((sid for _, sid in self._inflight), default=0)
            self.redelivered += redelivered
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker: %s (spool depth %d)", reason_code, self.spool.depth())

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason_code: Any, _p: Any) -> None:
        if getattr(reason_code, "is_failure", False):  # e.g. "Not authorized": the broker's ACL refused it
            with self._lock:
                self._refused_mids.add(mid)
        self._wake.set()

    def _collect_acks(self) -> None:
        with self._lock:
            done = [(info, sid) for info, sid in self._inflight if info.is_published()]
            self._inflight = [(info, sid) for info, sid in self._inflight if not info.is_published()]
            refused = [(info, sid) for info, sid in done if info.mid in self._refused_mids]
            self._refused_mids -= {info.mid for info, _ in refused}
        for info, sid in done:
            if (info, sid) in refused:
                # Not delivered: it stays in the spool (and in its depth) and goes out again when the agent
                # restarts, after the broker's ACL or the device list has been put right.
                self.refused += 1
                log.error("broker refused spooled message %d (not authorized for its topic?): kept in the spool",
                          sid)
                continue
            self.spool.remove(sid, int(time.time() * 1000))  # the broker has it: only now may it leave the spool
            self.acked += 1

    def notify(self) -> None:
        """A new message is in the spool."""
        self._wake.set()

    def publish_status(self, device: str, body: dict[str, Any]) -> None:
        self.client.publish(status_topic(self.site_id, device), json.dumps(body).encode(), qos=1, retain=True)

    def publish_metrics(self, body: dict[str, Any]) -> None:
        """Self-metrics: QoS 0, not retained and not spooled: a lost sample is replaced by the next one."""
        self.client.publish(metrics_topic(self.site_id, AGENT_ID), json.dumps(body).encode(), qos=0)

    def _pump_loop(self) -> None:
        budget, last_fill = 0.0, time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            self._collect_acks()
            now = time.monotonic()
            budget = min(self.max_per_s, budget + (now - last_fill) * self.max_per_s)  # at most 1 s of burst
            last_fill = now
            if not self._connected.is_set():
                continue
            with self._lock:
                room = min(WINDOW - len(self._inflight), int(budget))
                last = self._last_sent_id
            if room <= 0:
                if budget < 1:
                    time.sleep(1 / self.max_per_s)
                continue
            for msg in self.spool.after(last, room):
                self._send(msg)
                budget -= 1

    def _send(self, msg: SpooledMessage) -> None:
        payload = msg.payload
        if time.time() - msg.poll_ms / 1000.0 > HISTORICAL_AFTER_S:
            payload = mark_historical(payload)
        info = self.client.publish(msg.topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return  # not connected any more: the message stays in the spool
        with self._lock:
            self._inflight.append((info, msg.id))
            self._last_sent_id = max(self._last_sent_id, msg.id)
            self.published += 1

    def stop(self, drain_s: float = 2.0) -> None:
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._connected.is_set():
            self._collect_acks()
            with self._lock:
                if not self._inflight and not self.spool.after(self._last_sent_id, 1):
                    break
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._pump.join(timeout=2)
        if self._connected.is_set():
            info = self.client.publish(status_topic(self.site_id, AGENT_ID), self._status("offline", "stopped"),
                                       qos=1, retain=True)
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
