"""The edge agent: pollers -> spool -> publisher, plus device status on MQTT."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from alumon.config import Site, TcpTransport
from alumon.telemetry import TelemetryMessage, encode, format_ts, telemetry_topic, utc_now
from edge.poller import DevicePoller, PollResult
from edge.publisher import Publisher
from edge.spool import Spool

log = logging.getLogger("alumon.edge")


class EdgeAgent:
    def __init__(self, site: Site, spool_dir: Path):
        self.site = site
        self.spool = Spool(spool_dir / f"{site.id}.sqlite3")
        self.publisher = Publisher(site.id, site.config.connections.mqtt, self.spool)
        self.pollers: list[DevicePoller] = []
        for dev in site.config.devices:
            if isinstance(dev.transport, TcpTransport):
                self.pollers.append(DevicePoller(dev, site.profile_of(dev.id), self.on_result))
            else:
                log.error("%s: Modbus RTU is not supported by this edge version; device not polled", dev.id)
        self._failing: dict[str, bool] = {}

    def on_result(self, result: PollResult) -> None:
        ts = datetime.fromtimestamp(result.poll_time, UTC)
        poll_ms = round(result.poll_time * 1000)

        def build(seq: int) -> tuple[str, bytes]:
            msg = TelemetryMessage(v=1, site=self.site.id, device=result.device, seq=seq, ts=ts,
                                   readings=result.readings)
            return telemetry_topic(self.site.id, result.device), encode(msg)

        self.spool.append(result.device, poll_ms, build)
        self.publisher.notify()
        if self._failing.get(result.device) != (not result.ok):
            self._failing[result.device] = not result.ok
            poller = next(p for p in self.pollers if p.device.id == result.device)
            self.publisher.publish_status(result.device, {
                "state": "ok" if result.ok else "failing", "reason": result.reason,
                "polls_ok": poller.health.polls_ok, "polls_failed": poller.health.polls_failed,
                "ts": format_ts(utc_now()),
            })

    async def _run_pollers(self, stop: threading.Event) -> None:
        astop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(astop)) for p in self.pollers]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        astop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    def run(self, stop: threading.Event) -> None:
        self.publisher.start()
        log.info("polling %d devices; spool depth %d", len(self.pollers), self.spool.depth())
        try:
            asyncio.run(self._run_pollers(stop))
        finally:
            self.publisher.stop()
            log.info("stopped: published %d, acked %d, spool depth %d, dropped %d", self.publisher.published,
                     self.publisher.acked, self.spool.depth(), self.spool.dropped)
            self.spool.close()


def run_edge(site: Site, stop: threading.Event, spool_dir: Path | None = None) -> None:
    EdgeAgent(site, spool_dir or Path("run") / "edge-spool").run(stop)
