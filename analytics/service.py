"""``alumon analytics``: telemetry from MQTT -> series -> KPIs every tick -> InfluxDB, rules -> alerts."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from alumon import schema
from alumon.config import Site
from alumon.influx import InfluxClient, InfluxError
from alumon.mqtt import connect, make_client
from alumon.telemetry import TelemetryError, decode, metrics_subscription, telemetry_subscription, telemetry_topic
from analytics.alert_engine import RuleEngine
from analytics.compliance import MonthlyCompliance, month_of, month_start_ms
from analytics.evidence import EvidenceLog
from analytics.kpi_row import KpiRow
from analytics.kpis import KpiEngine
from analytics.limits import Limits
from analytics.notify import Notifier
from analytics.pipeline import metrics_lines
from analytics.series import SeriesStore
from analytics.state import EpisodeFile

log = logging.getLogger("alumon.analytics")
LEDGER_SAVE_EVERY_MS = 60_000


class AnalyticsService:
    def __init__(self, site: Site, stop: threading.Event, state_dir: Path):
        self.site = site
        self.stop = stop
        self.limits = Limits.for_site(site.config)
        self.engine = KpiEngine(site, self.limits)
        self.store = SeriesStore(self.engine.needed_readings())
        self.rules = RuleEngine.for_site(site.config, self.limits, EpisodeFile(state_dir / "episodes.json"))
        self.rules.autocommit = False  # episodes are saved after their notices are queued (see commit)
        self.influx = InfluxClient.from_config(site.config.connections.influxdb)
        self.client = make_client(site.config.connections.mqtt, client_id=f"alumon-analytics-{site.id}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.evidence = EvidenceLog(site.config.alerts.evidence_hours)
        self.notifier = Notifier.in_dir(site.config, self.client, self.influx, state_dir, self.evidence)
        self.monthly = MonthlyCompliance(self.limits)
        self.ledger_file = state_dir / "ledgers.json"
        self._ledger_saved_ms = 0
        self.messages = 0
        self.refused = 0
        self.kpis_written = 0
        self._unwritten: list[str] = []
        self._pipeline_lines: list[str] = []  # the services' metrics, written with the next tick's KPIs
        self._pipeline_lock = threading.Lock()
        self._told_unjudged: set[tuple[str, str]] = set()  # rules without a limit for a KPI, logged once
        self._live = threading.Event()  # set once a non-historical message arrived since the last tick
        self._replayed = threading.Event()  # set once a historical (spooled) message arrived since the last tick

    def telemetry_topics(self) -> list[str]:
        """The telemetry of the devices a KPI reads, each by name: a plant has many more meters than the limits
        need (analytics validated 5 000 messages a second of them and fell behind, bench/service_load.py)."""
        devices = sorted({path.split(".", 1)[0] for path in self.engine.needed_readings()})
        return [telemetry_topic(self.site.id, device) for device in devices]

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe([*((topic, 1) for topic in self.telemetry_topics()),
                              (metrics_subscription(self.site.id), 0)])
            # A persistent session from before 2026-12 subscribed to every device's telemetry: drop that.
            client.unsubscribe(telemetry_subscription(self.site.id))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/metrics"):  # pipeline health, stored for the health dashboard
            lines = metrics_lines(self.site.id, msg.topic, bytes(msg.payload), int(time.time() * 1000))
            with self._pipeline_lock:
                self._pipeline_lines += lines
            return
        try:
            tm = decode(bytes(msg.payload), msg.topic)
        except TelemetryError:
            self.refused += 1  # ingest dead-letters it; analytics only ignores it
            return
        self.store.add_message(tm)
        self.messages += 1
        if tm.historical:
            self._replayed.set()
        else:
            self._live.set()

    def tick(self, now_ms: int) -> None:
        every_ms = int(self.site.config.analytics.evaluate_every_s * 1000)
        end_ms = now_ms // every_ms * every_ms  # on the evaluation grid: re-evaluating writes the same point
        rows = self.engine.evaluate(self.store, end_ms)
        rows += self._month_to_date(rows)
        # Judge first: an alert must not wait for a database write (the KPIs follow right after).
        # Only replayed data since the last tick (an edge draining its spool): update KPIs, fire no alert. No
        # data at all is not that: it is evaluated, so the data-quality rules see the silence.
        historical = self._replayed.is_set() and not self._live.is_set()
        self._live.clear()
        self._replayed.clear()
        self.evidence.add([r for r in rows if self.rules.rules_for(r.kpi)])  # what a notice can be about
        for alert in self.rules.evaluate(rows, historical=historical):
            self.notifier.dispatch(alert, self.rules.ruleset.version)
        self.rules.commit()
        for key in self.rules.unjudged.keys() - self._told_unjudged:
            log.warning("rule %s cannot judge %s: %s", *key, self.rules.unjudged[key])
            self._told_unjudged.add(key)
        self._write_kpis(rows)
        self.store.trim(end_ms - self.engine.retention_ms)
        if end_ms - self._ledger_saved_ms >= LEDGER_SAVE_EVERY_MS:
            self.engine.periods.save(self.ledger_file)
            self._ledger_saved_ms = end_ms

    def _write_kpis(self, rows: list[KpiRow]) -> None:
        self._unwritten += [r.to_line(self.site.id) for r in rows]
        with self._pipeline_lock:
            self._unwritten += self._pipeline_lines
            self._pipeline_lines = []
        try:
            self.influx.write_lines(self._unwritten)
            self.kpis_written += len(self._unwritten)
            self._unwritten.clear()
        except InfluxError as exc:
            log.warning("KPIs not written yet (%d queued): %s", len(self._unwritten), exc)
            self._unwritten = self._unwritten[-100_000:]

    def _month_to_date(self, rows: list[KpiRow]) -> list[KpiRow]:
        out: list[KpiRow] = []
        for row in rows:
            if row.kpi.endswith("_hourly"):
                out += self.monthly.add(row)
                key = (row.unit_process, row.kpi.removesuffix("_hourly"), month_of(row.t_ms))
                out.append(self.monthly.row(key))
        return out

    def rebuild_monthly(self, now_ms: int) -> int:
        """Reload this month's hourly results from InfluxDB, so compliance survives a restart."""
        month = month_of(now_ms)
        q = (f"SELECT value, valid, flag, exceeded, valid_minutes FROM {schema.KPI} WHERE site='{self.site.id}' "
             f"AND \"window\"='hour' AND time >= {month_start_ms(month)}ms GROUP BY unit_process, kpi")
        n = 0
        for series in self.influx.query(q):
            tags = series["tags"]
            for t, value, valid, flag, exceeded, valid_minutes in series["values"]:
                self.monthly.add(KpiRow(int(t), tags["unit_process"], tags["kpi"], "hour", value, "mg/m3",
                                        (valid_minutes or 0) / 60, "", "", extra=(
                                            ("valid", bool(valid)), ("flag", str(flag)),
                                            ("exceeded", bool(exceeded)), ("valid_minutes", int(valid_minutes or 0)))))
                n += 1
        return n

    def run(self) -> None:
        restored_ledgers = self.engine.periods.load(self.ledger_file)
        log.info("restored %d counter ledgers (day, month and year to date) from %s", restored_ledgers,
                 self.ledger_file)
        try:
            self.influx.create_database()
            restored = self.rebuild_monthly(int(time.time() * 1000))
            log.info("restored %d hourly results of this month for compliance", restored)
        except InfluxError as exc:
            log.warning("cannot create database or restore compliance yet: %s", exc)
        connect(self.client, self.site.config.connections.mqtt, persistent=True)
        self.client.loop_start()
        self.notifier.start()
        every = self.site.config.analytics.evaluate_every_s
        try:
            while not self.stop.wait(every - time.time() % every):
                self.tick(int(time.time() * 1000))
        finally:
            self.notifier.close()
            self.client.disconnect()
            self.client.loop_stop()
            self.engine.periods.save(self.ledger_file)
            log.info("stopped: messages %d, refused %d, points written (KPIs, pipeline metrics) %d, emails sent %d",
                     self.messages, self.refused, self.kpis_written, self.notifier.emails_sent)


def run_analytics(site: Site, stop: threading.Event, state_dir: Path | None = None) -> None:
    AnalyticsService(site, stop, state_dir or Path("run") / "analytics-state" / site.id).run()
