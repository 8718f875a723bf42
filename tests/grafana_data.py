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

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from alumon.alert import Alert
from alumon.config import Site, load_site
from alumon.influx import InfluxClient
from alumon.sim.plant import PlantModel
from alumon.telemetry import (
    Quality,
    Reading,
    TelemetryError,
    TelemetryMessage,
    decode,
    format_ts,
    metrics_topic,
    telemetry_topic,
)
from analytics.alert_engine import RuleEngine
from analytics.compliance import MonthlyCompliance, month_of
from analytics.kpi_row import KpiRow
from analytics.kpis import KpiEngine
from analytics.limits import Limits
from analytics.pipeline import metrics_lines
from analytics.replay import with_grid
from analytics.series import SeriesStore
from edge.agent import device_state
from edge.breaker import CircuitBreaker
from edge.poller import DeviceHealth, PollResult
from ingest.deadletter import DeadLetter
from ingest.lines import message_lines
from ingest.metrics import HELP

STEP_S = 5
SPAN_S = 2 * 3600 + 600
EVERY_S = 60  # the KPI grid (alumon replay --every 60)
SILENT = ("pl2-scale", SPAN_S - 150, SPAN_S)  # device, first and last second (from the start) without an answer
REPLAYED = ("potroom-aux", 2400, 2580)  # device, seconds whose messages arrive later from the edge spool
OVERRUN = ("ref-totaliser", (1500, 4620))  # device, polls (seconds) that took longer than the poll interval
METRICS_EVERY_S = 60  # the self-metrics' period here (the services' default is 10 s)
WORKERS = ("1", "2")  # ingest workers sharing the telemetry subscription
SLOW_INFLUX = 5400  # second from which InfluxDB answers slowly for three minutes
# Per minute of the slow spell: share of the received points written, mean and slowest write (ms), lag and the
# interval's largest lag (s), failed writes. The minute after it drains the disk buffer.
SLOW = ((0.55, 1400.0, 6200.0, 28.0, 31.0, 1), (0.25, 3800.0, 10000.0, 85.0, 88.0, 4),
        (0.3, 3100.0, 10000.0, 142.0, 146.0, 3))


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
    pipeline_points: int


def _messages(site: Site, start_s: int) -> list[TelemetryMessage]:
    model = PlantModel(site, "energy-drift")
    units = {(d.id, f.name): f.unit for d in site.config.devices for f in site.profile_of(d.id).fields}
    devices = sorted({device for device, _ in model.values})
    out: list[TelemetryMessage] = []
    for i, s in enumerate(range(0, SPAN_S, STEP_S)):
        model.step(float(start_s + s))
        ts = datetime.fromtimestamp(start_s + s, UTC)
        for device in devices:
            if device == OVERRUN[0] and s - STEP_S in OVERRUN[1]:
                continue  # the previous poll overran: the poller skipped this slot
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


def _edge_metrics(site: Site, messages: list[TelemetryMessage], start_s: int) -> list[tuple[int, dict[str, Any]]]:
    """(time ms, ``EdgeAgent.metrics()`` payload) every METRICS_EVERY_S, the poll counters as the poller keeps them
    (edge/poller.py) for the messages sent: all readings without a value is a failed poll, or one the breaker
    skipped; the replayed meter's messages wait in the spool until the end of REPLAYED."""
    rng = random.Random(2026)
    devices = {d.id: d for d in site.config.devices if any(m.device == d.id for m in messages)}
    health = {d: DeviceHealth() for d in devices}
    breakers = {d: CircuitBreaker(dev.failures_to_open, first_backoff_s=max(2 * dev.poll_interval_s, 2.0),
                                  backoff_max_s=dev.backoff_max_s) for d, dev in devices.items()}
    states = dict.fromkeys(devices, "starting")
    typical_s = {d: rng.uniform(0.008, 0.035) for d in sorted(devices)}  # a Modbus TCP cycle's usual time
    reconnects: Counter[str] = Counter()
    spooled: list[int] = []  # poll times (ms) of the messages waiting for the broker
    sent, connects = 0, 1
    out: list[tuple[int, dict[str, Any]]] = []
    pending = iter(messages)
    msg = next(pending, None)
    for t_s in range(start_s + METRICS_EVERY_S, start_s + SPAN_S + 1, METRICS_EVERY_S):
        while msg is not None and msg.ts_ms < t_s * 1000:
            s, dev, h, breaker = msg.ts_ms // 1000 - start_s, devices[msg.device], health[msg.device], breakers[
                msg.device]
            if msg.historical:
                spooled.append(msg.ts_ms)
            else:
                sent += 1
                if spooled and s > REPLAYED[2]:  # back on the broker: the spool goes out first
                    sent, connects = sent + len(spooled), connects + 1
                    spooled.clear()
            now = msg.ts_ms / 1000
            if not breaker.allows(now):
                h.polls_skipped += 1
                result = PollResult(dev.id, now, {}, False, "circuit open", breaker.state, skipped=True)
            else:
                ok = any(r.value is not None for r in msg.readings.values())
                breaker.record(ok, now)
                result = PollResult(dev.id, now, {}, ok, "" if ok else "timeout", breaker.state)
                if ok:
                    h.polls_ok += 1
                    h.last_cycle_s = max(0.002, rng.gauss(typical_s[dev.id], typical_s[dev.id] * 0.15))
                else:
                    h.polls_failed += 1
                    h.failures["timeout"] += 1
                    reconnects[dev.id] += 1
                    h.last_cycle_s = dev.timeout_s + rng.uniform(0.001, 0.004)
                if dev.id == OVERRUN[0] and s in OVERRUN[1]:
                    h.last_cycle_s = dev.poll_interval_s + rng.uniform(0.3, 0.9)
                    h.missed_cycles += 1
                h.max_cycle_s = max(h.max_cycle_s, h.last_cycle_s)
            states[dev.id] = device_state(result)
            msg = next(pending, None)
        now_ms = t_s * 1000
        inflight = rng.randint(0, 2)  # the newest cycle's messages, handed to paho and not yet acknowledged
        out.append((now_ms, {
            "ts": format_ts(datetime.fromtimestamp(t_s, UTC)),
            "devices": {d: {"state": states[d], "polls_ok": h.polls_ok, "polls_failed": h.polls_failed,
                            "polls_skipped": h.polls_skipped, "missed_cycles": h.missed_cycles,
                            "last_cycle_ms": round(h.last_cycle_s * 1000, 1),
                            "max_cycle_ms": round(h.max_cycle_s * 1000, 1), "failures": dict(h.failures),
                            "line_reconnects": reconnects[d]} for d, h in health.items()},
            "spool": {"depth": len(spooled) + inflight,
                      "oldest_age_s": round((now_ms - spooled[0]) / 1000 if spooled else 0.2 * inflight, 1),
                      "dropped_full": 0, "dropped_age": 0},
            "mqtt": {"published": sent, "acked": sent - inflight, "refused": 0, "inflight": inflight,
                     "connects": connects}}))
    return out


def _ingest_metrics(messages: list[TelemetryMessage], lines: list[list[str]], start_s: int, dead_letter_ms: int
                    ) -> list[tuple[int, str, dict[str, Any]]]:
    """(time ms, worker, snapshot) every METRICS_EVERY_S per worker, shaped as ``IngestService.snapshot()``:
    the workers take turns at the messages (a shared subscription), write their points as they arrive (the
    replayed meter's when the spool sends them), except in the SLOW_INFLUX spell, whose unwritten points wait in
    the disk buffer until the minute after it."""
    rng = random.Random(212)
    arrivals: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (worker, reporting interval): (points, bytes)
    for i, (msg, msg_lines) in enumerate(zip(messages, lines, strict=True)):
        arrive_s = start_s + REPLAYED[2] + STEP_S if msg.historical else msg.ts_ms // 1000  # (+ 150 ms)
        arrivals.setdefault((WORKERS[i % len(WORKERS)], (arrive_s - start_s) // METRICS_EVERY_S), []).append(
            (len(msg_lines), sum(len(x) + 1 for x in msg_lines)))
    out: list[tuple[int, str, dict[str, Any]]] = []
    for worker in WORKERS:
        totals = dict.fromkeys(("received_messages", "written_points", "buffered_points", "dropped_points",
                                "dead_lettered_messages", "rejected_lines", "write_failures"), 0)
        buffer_points = buffer_bytes = 0
        for t_s in range(start_s + METRICS_EVERY_S, start_s + SPAN_S + 1, METRICS_EVERY_S):
            lo, hi = (t_s - METRICS_EVERY_S) * 1000, t_s * 1000
            mine = arrivals.get((worker, (t_s - start_s) // METRICS_EVERY_S - 1), [])
            points, size = sum(a[0] for a in mine), sum(a[1] for a in mine)
            totals["received_messages"] += len(mine)
            if worker == WORKERS[0] and lo <= dead_letter_ms < hi:
                totals["received_messages"] += 1
                totals["dead_lettered_messages"] += 1
            minute = (t_s - start_s - SLOW_INFLUX) // METRICS_EVERY_S - 1
            lag = round(rng.uniform(0.2, 0.6), 3)
            figures = {"lag_s": lag, "max_lag_s": round(lag + rng.uniform(0.1, 0.8), 3),
                       "write_latency_ms_mean": round(rng.uniform(4.0, 12.0), 3),
                       "write_latency_ms_max": round(rng.uniform(15.0, 60.0), 3)}
            writes, batch_max = max(1, len(mine)), max((a[0] for a in mine), default=0)  # a write per message
            if 0 <= minute < len(SLOW):
                share, mean_ms, max_ms, lag, max_lag, failed = SLOW[minute]
                unwritten = round(points * (1 - share))
                buffer_points, buffer_bytes = buffer_points + unwritten, buffer_bytes + round(size * (1 - share))
                totals["buffered_points"] += unwritten
                totals["write_failures"] += failed
                points -= unwritten
                writes = max(1, writes // 8)  # slow writes: the messages meanwhile gather into bigger batches
                batch_max = round(points / writes * 1.8)
                figures = {"lag_s": lag, "max_lag_s": max_lag, "write_latency_ms_mean": mean_ms,
                           "write_latency_ms_max": max_ms}
            elif minute == len(SLOW) and buffer_points:  # InfluxDB is back: the buffer drains in big batches
                points, writes = points + buffer_points, writes + 1
                batch_max = min(5000, buffer_points)  # ingest.max_batch_points
                figures |= {"max_lag_s": SLOW[-1][4] + 4.0, "write_latency_ms_max": 850.0}
                buffer_points = buffer_bytes = 0
            totals["written_points"] += points
            snapshot = {"worker": worker, **totals, "buffer_depth_points": buffer_points,
                        "buffer_depth_bytes": buffer_bytes, "pending_messages": rng.randint(0, 3),
                        "write_rate_points_per_s": round(points / METRICS_EVERY_S, 3),
                        "batch_points_mean": round(points / writes, 3), "batch_points_max": batch_max,
                        **figures}
            assert set(snapshot) == {"worker", *HELP}, set(snapshot) ^ {"worker", *HELP}
            out.append((hi, worker, snapshot))
    return out


def _pipeline_lines(site: Site, messages: list[TelemetryMessage], lines: list[list[str]], start_s: int,
                    dead_letter_ms: int) -> list[str]:
    """The self-metrics as analytics stores them (analytics/pipeline.py), from their MQTT payloads."""
    out = [line for t_ms, body in _edge_metrics(site, messages, start_s)
           for line in metrics_lines(site.id, metrics_topic(site.id, "edge"), json.dumps(body).encode(), t_ms)]
    for t_ms, worker, body in _ingest_metrics(messages, lines, start_s, dead_letter_ms):
        out += metrics_lines(site.id, metrics_topic(site.id, f"ingest-{worker}"), json.dumps(body).encode(), t_ms)
    return out


def load(client: InfluxClient, site: Site, end_ms: int) -> DemoData:
    """Write the demo data ending at ``end_ms`` (whole seconds) into the client's database."""
    start_s = end_ms // 1000 - SPAN_S
    messages = _messages(site, start_s)
    per_message = [message_lines(msg) for msg in messages]
    lines = [line for msg_lines in per_message for line in msg_lines]
    rows, alerts = _evaluate(site, messages)
    kpi_lines = [r.to_line(site.id) for r in rows]
    dead_letter_ms = messages[len(messages) // 2].ts_ms
    extra = [a.to_line() for a in alerts] + [_dead_letter(site).to_line(dead_letter_ms)]
    pipeline = _pipeline_lines(site, messages, per_message, start_s, dead_letter_ms)
    everything = lines + kpi_lines + extra + pipeline
    for i in range(0, len(everything), 5000):
        assert client.write_lines(everything[i:i + 5000]) is None
    return DemoData(start_s * 1000, end_ms, len(lines), len(kpi_lines), len(alerts), len(pipeline))
