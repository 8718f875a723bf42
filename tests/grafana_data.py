"""Demo-like data in a real InfluxDB for the dashboard tests, made fast from the product's own parts.

The plant model of ``alumon sim`` (scenario ``energy-drift``) gives every reading of the example site; ingest's
line builder writes them to ``telemetry`` as ingest would; the analytics KPI and rule engines evaluate them on a
60 s grid as ``alumon replay --every 60`` does, and the KPI rows (with the monthly compliance rows the service
adds) go to ``kpi``, the alert state changes to ``alerts``; one refused payload goes to ``dead_letter`` through
ingest's dead-letter writer. Two edge events are staged on purpose: potline 2's scale silent for the last
150 s (stale readings without a value: its source_stale alert is still firing at the end) and three minutes of
one meter replayed from its spool (``historical``). About 2 h 10 min of data: at least one complete HJ 75 hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from alumon.alert import Alert
from alumon.config import Site, load_site
from alumon.influx import InfluxClient
from alumon.sim.plant import PlantModel
from alumon.telemetry import Quality, Reading, TelemetryError, TelemetryMessage, decode, telemetry_topic
from analytics.alert_engine import RuleEngine
from analytics.compliance import MonthlyCompliance, month_of
from analytics.kpi_row import KpiRow
from analytics.kpis import KpiEngine
from analytics.limits import Limits
from analytics.replay import with_grid
from analytics.series import SeriesStore
from ingest.deadletter import DeadLetter
from ingest.lines import message_lines

STEP_S = 5
SPAN_S = 2 * 3600 + 600
EVERY_S = 60  # the KPI grid (alumon replay --every 60)
SILENT = ("pl2-scale", SPAN_S - 150, SPAN_S)  # device, first and last second (from the start) without an answer
REPLAYED = ("potroom-aux", 2400, 2580)  # device, seconds whose messages arrive later from the edge spool


def demo_site(path: Path, base: Path) -> Site:
    """The site of ``base`` polled every STEP_S seconds (analytics judges gaps by the poll interval)."""
    data = yaml.safe_load(base.read_text(encoding="utf-8"))
    for device in data["devices"]:
        device["poll_interval_s"] = float(STEP_S)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_site(path)


@dataclass(frozen=True)
class DemoData:
    start_ms: int
    end_ms: int
    telemetry_points: int
    kpi_points: int
    alert_points: int


def _messages(site: Site, start_s: int) -> list[TelemetryMessage]:
    model = PlantModel(site, "energy-drift")
    units = {(d.id, f.name): f.unit for d in site.config.devices for f in site.profile_of(d.id).fields}
    devices = sorted({device for device, _ in model.values})
    out: list[TelemetryMessage] = []
    for i, s in enumerate(range(0, SPAN_S, STEP_S)):
        model.step(float(start_s + s))
        ts = datetime.fromtimestamp(start_s + s, UTC)
        for device in devices:
            silent = device == SILENT[0] and SILENT[1] <= s <= SILENT[2]
            readings = {q: Reading(value=None if silent else v, quality=Quality.STALE if silent else Quality.GOOD,
                                   unit=units.get((device, q), ""))
                        for (d, q), v in model.values.items() if d == device}
            historical = device == REPLAYED[0] and REPLAYED[1] <= s <= REPLAYED[2]
            out.append(TelemetryMessage(v=1, site=site.id, device=device, seq=i, ts=ts, readings=readings,
                                        historical=historical))
    return out


def _evaluate(site: Site, messages: list[TelemetryMessage]) -> tuple[list[KpiRow], list[Alert]]:
    """The replay loop (analytics/replay.py) on a 60 s grid, plus the month-to-date rows the service writes."""
    gridded = with_grid(site, EVERY_S)
    engine = KpiEngine(gridded, Limits.for_site(site.config))
    rules = RuleEngine.for_site(site.config, engine.limits, reminders=False)
    store = SeriesStore(engine.needed_readings())
    monthly = MonthlyCompliance(engine.limits)
    rows: list[KpiRow] = []
    alerts: list[Alert] = []
    pending = list(messages)
    grid = (messages[0].ts_ms // (EVERY_S * 1000) + 1) * EVERY_S * 1000
    while pending:
        while pending and pending[0].ts_ms < grid:
            store.add_message(pending.pop(0))
        tick = engine.evaluate(store, grid)
        for row in tick:
            if row.kpi.endswith("_hourly"):
                tick = tick + monthly.add(row)
                tick.append(monthly.row((row.unit_process, row.kpi.removesuffix("_hourly"), month_of(row.t_ms))))
        rows += tick
        alerts += rules.evaluate(tick)
        store.trim(grid - engine.retention_ms)
        grid += EVERY_S * 1000
    return rows, alerts


def _dead_letter(site: Site) -> DeadLetter:
    topic = telemetry_topic(site.id, "pl1-scale")
    try:
        decode(b"{not json", topic)
    except TelemetryError as exc:
        return DeadLetter(site.id, topic, exc.reason, str(exc), b"{not json")
    raise AssertionError("the payload was accepted")


def load(client: InfluxClient, site: Site, end_ms: int) -> DemoData:
    """Write the demo data ending at ``end_ms`` (whole seconds) into the client's database."""
    start_s = end_ms // 1000 - SPAN_S
    messages = _messages(site, start_s)
    lines = [line for msg in messages for line in message_lines(msg)]
    rows, alerts = _evaluate(site, messages)
    kpi_lines = [r.to_line(site.id) for r in rows]
    extra = [a.to_line() for a in alerts] + [_dead_letter(site).to_line(messages[len(messages) // 2].ts_ms)]
    everything = lines + kpi_lines + extra
    for i in range(0, len(everything), 5000):
        assert client.write_lines(everything[i:i + 5000]) is None
    return DemoData(start_s * 1000, end_ms, len(lines), len(kpi_lines), len(alerts))
