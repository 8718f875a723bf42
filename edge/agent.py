"""The edge agent: pollers -> spool -> publisher, plus device status and self-metrics on MQTT.

Status (retained, QoS 1) changes when a device's state changes: ``ok``, ``failing`` (its last poll failed)
or ``open`` (its circuit breaker keeps polls off it), always with the reason. Metrics (QoS 0) go out every
``edge.metrics_interval_s``: per-device poll counters and cycle times, spool depth and oldest age, drops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alumon.config import Site, SpoolFullPolicy
from alumon.telemetry import TelemetryMessage, encode, format_ts, telemetry_topic, utc_now
from edge.breaker import BreakerState
from edge.lines import build_lines
from edge.poller import DevicePoller, PollResult
from edge.publisher import Publisher
from edge.spool import Spool

log = logging.getLogger("alumon.edge")


def device_state(result: PollResult) -> str:
    if result.ok:
        return "ok"
    return "open" if result.state is BreakerState.OPEN else "failing"


class EdgeAgent:
    def __init__(self, site: Site, spool_dir: Path):
        self.site = site
        settings = site.config.edge
        self.spool = Spool(spool_dir / f"{site.id}.sqlite3", max_rows=settings.spool_max_messages,
                           max_age_s=settings.spool_max_age_h * 3600, keep_delivered_s=settings.keep_delivered_s,
                           drop_newest=settings.spool_full is SpoolFullPolicy.DROP_NEWEST)
        self.publisher = Publisher(site.id, site.config.connections.mqtt, self.spool, settings.replay_max_per_s)
        self.publisher.on_connected = self._republish_statuses
        self.lines = build_lines(site.config.devices)
        self.pollers = {dev.id: DevicePoller(dev, site.profile_of(dev.id), self.lines[dev.id], self.on_result)
                        for dev in site.config.devices}
        self._states: dict[str, str] = {}
        self._status_lock = threading.Lock()

    def on_result(self, result: PollResult) -> None:
        ts = datetime.fromtimestamp(result.poll_time, UTC)
        poll_ms = round(result.poll_time * 1000)

        def build(seq: int) -> tuple[str, bytes]:
            msg = TelemetryMessage(v=1, site=self.site.id, device=result.device, seq=seq, ts=ts,
                                   readings=result.readings)
            return telemetry_topic(self.site.id, result.device), encode(msg)

        self.spool.append(result.device, poll_ms, build)
        self.publisher.notify()
        state = device_state(result)
        with self._status_lock:
            changed = self._states.get(result.device) != state
            self._states[result.device] = state
        if changed:
            self.publisher.publish_status(result.device, self.device_status(result.device, result.reason))

    def device_status(self, device: str, reason: str | None = None) -> dict[str, Any]:
        p = self.pollers[device]
        h = p.health
        return {
            "state": self._states.get(device, "starting"), "reason": h.reason if reason is None else reason,
            "breaker": p.breaker.state.value, "consecutive_failures": p.breaker.consecutive_failures,
            "polls_ok": h.polls_ok, "polls_failed": h.polls_failed, "polls_skipped": h.polls_skipped,
            "identity": dict(h.identity), "line": p.line.name, "ts": format_ts(utc_now()),
        }

    def _republish_statuses(self) -> None:
        with self._status_lock:
            devices = list(self._states)
        for device in devices:
            self.publisher.publish_status(device, self.device_status(device))

    def metrics(self) -> dict[str, Any]:
        now_ms = round(time.time() * 1000)
        devices = {}
        for dev_id, p in self.pollers.items():
            h = p.health
            devices[dev_id] = {
                "state": self._states.get(dev_id, "starting"), "polls_ok": h.polls_ok,
                "polls_failed": h.polls_failed, "polls_skipped": h.polls_skipped, "missed_cycles": h.missed_cycles,
                "last_cycle_ms": round(h.last_cycle_s * 1000, 1), "max_cycle_ms": round(h.max_cycle_s * 1000, 1),
                "failures": dict(h.failures), "line_reconnects": p.line.reconnects,
            }
        return {
            "ts": format_ts(utc_now()), "devices": devices,
            "spool": {"depth": self.spool.depth(), "oldest_age_s": round(self.spool.oldest_age_s(now_ms), 1),
                      "dropped_full": self.spool.dropped_full, "dropped_age": self.spool.dropped_age},
            "mqtt": self.publisher.counters(),
        }

    async def _report_metrics(self, stop: asyncio.Event) -> None:
        interval = self.site.config.edge.metrics_interval_s
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                self.publisher.publish_metrics(self.metrics())

    async def _run_pollers(self, stop: threading.Event) -> None:
        astop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(astop)) for p in self.pollers.values()]
        tasks.append(asyncio.create_task(self._report_metrics(astop)))
        while not stop.is_set():
            await asyncio.sleep(0.2)
        astop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for line in set(self.lines.values()):
            line.close()

    def run(self, stop: threading.Event) -> None:
        self.publisher.start()
        lines = len(set(self.lines.values()))
        log.info("polling %d devices on %d lines; spool depth %d", len(self.pollers), lines, self.spool.depth())
        try:
            asyncio.run(self._run_pollers(stop))
        finally:
            self.publisher.stop()
            log.info("stopped: published %d, acked %d, spool depth %d, dropped %d (full %d, age %d)",
                     self.publisher.published, self.publisher.acked, self.spool.depth(), self.spool.dropped,
                     self.spool.dropped_full, self.spool.dropped_age)
            self.spool.close()


def run_edge(site: Site, stop: threading.Event, spool_dir: Path | None = None) -> None:
    EdgeAgent(site, spool_dir or Path("run") / "edge-spool").run(stop)
