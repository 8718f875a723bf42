"""``alumon demo``: the whole system on one machine, simulated plant -> edge -> broker -> ingest -> InfluxDB ->
analytics -> alerts, for a fixed duration, with a live summary and a JSON summary at the end.

Every service runs as its own process, started exactly as an operator would start it (``alumon edge --site``
...), against a derived copy of the site file that points at the local stack. An observer subscribed to the
telemetry topics counts what the edge published, so the summary can say, by sequence number, whether every
published reading reached InfluxDB exactly once.
"""

from __future__ import annotations

import json
import logging
import mailbox
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from alumon import schema
from alumon.config import MqttConnection, load_site
from alumon.influx import InfluxClient, InfluxError
from alumon.mqtt import connect, make_client
from alumon.stack import LocalStack, free_port, stack_up, stop_pid
from alumon.telemetry import TelemetryError, alert_topic, decode, telemetry_subscription
from ingest.setup import init_database

log = logging.getLogger("alumon.demo")
SERVICES_IN_START_ORDER = ("sim", "ingest", "analytics", "edge")
MARKER = ".alumon-demo"


@dataclass
class Observer:
    """Counts what the edge published: messages and readings per device, and which seq numbers."""

    messages: dict[str, int] = field(default_factory=dict)
    readings: dict[str, int] = field(default_factory=dict)
    seqs: dict[str, set[int]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # alert messages seen on MQTT
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_payload(self, topic: str, payload: bytes) -> None:
        if "/alerts/" in topic:
            self._on_alert(topic, payload)
            return
        try:
            msg = decode(payload, topic)
        except TelemetryError:
            return
        with self.lock:
            self.messages[msg.device] = self.messages.get(msg.device, 0) + 1
            self.seqs.setdefault(msg.device, set())
            if msg.seq not in self.seqs[msg.device]:  # a redelivered duplicate is published once in effect
                self.seqs[msg.device].add(msg.seq)
                self.readings[msg.device] = self.readings.get(msg.device, 0) + len(msg.readings)

    def _on_alert(self, topic: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if isinstance(body, dict):
            with self.lock:
                self.alerts.append({"topic": topic, "id": body.get("id"), "state": body.get("state")})


@dataclass
class DemoResult:
    ok: bool
    summary: dict[str, Any]


def derive_site(site_path: Path, stack: LocalStack, out: Path) -> Path:
    """A copy of the site file wired to the local stack, with every simulated device on a free port."""
    data = yaml.safe_load(site_path.read_text(encoding="utf-8"))
    data["connections"]["mqtt"] = {"host": "127.0.0.1", "port": stack.mosquitto.port}
    data["connections"]["influxdb"] = {"url": f"http://127.0.0.1:{stack.influxd.port}",
                                       "database": data["connections"].get("influxdb", {}).get("database", "alumon")}
    smtp = data["connections"]["smtp"]
    data["connections"]["smtp"] = {"host": "127.0.0.1", "port": stack.smtp.port, "security": "none",
                                   "sender": smtp["sender"]}
    if data.get("profiles_dir"):
        data["profiles_dir"] = str((site_path.parent / data["profiles_dir"]).resolve())
    for dev in data["devices"]:
        if dev["transport"]["type"] == "tcp":
            dev["transport"] = {**dev["transport"], "host": "127.0.0.1", "port": free_port()}
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def wait_for_clients(log_path: Path, client_ids: list[str], timeout_s: float = 20.0) -> None:
    """Block until mosquitto's log shows every client connected (so nothing is published before its
    subscribers exist)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if all(f"as {cid} " in text or f"as {cid}\n" in text for cid in client_ids):
            return
        time.sleep(0.1)
    raise RuntimeError(f"clients {client_ids} did not connect to the broker within {timeout_s} s")


def read_emails(maildir: Path) -> list[dict[str, Any]]:
    box = mailbox.Maildir(str(maildir), create=False)
    emails = []
    for key in sorted(box.keys()):
        msg = box[key]
        emails.append({
            "path": str(maildir / "new" / key) if (maildir / "new" / key).exists() else str(maildir / "cur" / key),
            "subject": str(make_header(decode_header(msg.get("Subject", "")))),
            "to": msg.get("To", ""),
            # Keys hold no spaces; a long header comes back folded, or as RFC 2047 encoded words.
            "notices": [n for n in "".join(str(make_header(decode_header(msg.get("X-Alumon-Notices", "")))).split())
                        .split(",") if n],
        })
    return emails


def notices_per_incident(emails: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """incident -> recipient -> how many emails carried its firing and its resolution notice."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for e in emails:
        for key in e["notices"]:
            incident, state, reminder = key.rsplit(".", 2)
            if reminder != "0":
                continue  # reminders of a long incident are expected repeats
            counts = out.setdefault(incident, {}).setdefault(e["to"], {"firing": 0, "resolved": 0})
            counts[state] = counts.get(state, 0) + 1
    return out


def notice_problems(per_incident: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    """Each incident: one firing and at most one resolution email per recipient (none while still active)."""
    problems = []
    for incident, by_to in per_incident.items():
        for to, counts in by_to.items():
            if counts["firing"] != 1 or counts["resolved"] > 1:
                problems.append(f"incident {incident}: {counts['firing']} firing and {counts['resolved']} "
                                f"resolution emails to {to} (expected one each)")
    return problems


def _rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in series:
        for values in s.get("values", []):
            out.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
    return out


def collect(influx: InfluxClient, site_id: str, observer: Observer, maildir: Path) -> dict[str, Any]:
    """What reached InfluxDB and the mailbox, compared with what the edge published."""
    stored_rows = _rows(influx.query(
        f"SELECT count(seq) FROM {schema.TELEMETRY} WHERE site='{site_id}' GROUP BY device"))
    stored = {r["device"]: int(r["count"]) for r in stored_rows}
    # Raw latest rows keep their real timestamps (several selectors in one InfluxQL query would not).
    kpi_rows = _rows(influx.query(
        f"SELECT value, completeness, level, unit FROM {schema.KPI} WHERE site='{site_id}' "
        f"GROUP BY unit_process, kpi, window ORDER BY time DESC LIMIT 1"))
    counts = {(r["unit_process"], r["kpi"], r["window"]): int(r["count"]) for r in _rows(influx.query(
        f"SELECT count(value) FROM {schema.KPI} WHERE site='{site_id}' GROUP BY unit_process, kpi, window"))}
    for r in kpi_rows:
        r["evaluations"] = counts.get((r["unit_process"], r["kpi"], r["window"]), 0)
    pipeline = {r["agent"]: {"metrics_points": int(r["count"])} for r in _rows(influx.query(
        f"SELECT count(spool_depth) FROM {schema.PIPELINE} WHERE site='{site_id}' AND agent='edge' GROUP BY agent"))}
    pipeline |= {r["agent"]: {"metrics_points": int(r["count"])} for r in _rows(influx.query(
        f"SELECT count(lag_s) FROM {schema.PIPELINE} WHERE site='{site_id}' AND agent=~/^ingest-/ GROUP BY agent"))}
    alert_rows = _rows(influx.query(
        f"SELECT incident, state, value, \"limit\", limit_source, text FROM {schema.ALERTS} WHERE site='{site_id}'"))
    with observer.lock:
        devices = {
            dev: {"messages_published": observer.messages.get(dev, 0),
                  "readings_published": observer.readings.get(dev, 0),
                  "readings_in_influxdb": stored.get(dev, 0)}
            for dev in sorted(set(observer.messages) | set(stored))
        }
    published = sum(d["readings_published"] for d in devices.values())
    in_db = sum(d["readings_in_influxdb"] for d in devices.values())
    return {
        "devices": devices,
        "readings_published": published,
        "readings_in_influxdb": in_db,
        "readings_lost": max(0, published - in_db),
        "kpis": [{k: r.get(k) for k in ("time", "unit_process", "kpi", "window", "value", "unit", "completeness",
                                        "level", "evaluations")} for r in kpi_rows],
        "alerts": [{k: r.get(k) for k in ("time", "incident", "state", "value", "limit", "limit_source", "text")}
                   for r in alert_rows],
        "alerts_on_mqtt": list(observer.alerts),
        "pipeline": pipeline,
        "emails": (emails := read_emails(maildir)),
        "notices": notices_per_incident(emails),
    }


def _print_live(console: Console, elapsed: float, duration: float, snap: dict[str, Any]) -> None:
    live = [k for k in snap["kpis"] if k["value"] is not None and str(k["window"]).startswith("rolling_")
            and k["window"] != "rolling_24h" and not str(k["kpi"]).endswith(("_minute", "_partial"))]
    kpis = ", ".join(f"{k['unit_process']}/{k['kpi']}={k['value']:.1f} {k['unit']}" for k in live)
    console.print(
        f"[{elapsed:5.0f}/{duration:.0f} s] devices {len(snap['devices'])}  readings published "
        f"{snap['readings_published']}  in InfluxDB {snap['readings_in_influxdb']}  alerts {len(snap['alerts'])}  "
        f"emails {len(snap['emails'])}", highlight=False)
    if kpis:
        console.print(f"           KPIs: {kpis}", highlight=False)


def start_service(service: str, site_file: Path, run_dir: Path, scenario: str,
                  extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """One service as a user starts it (``python -m alumon SERVICE --site ...``), its output in run_dir/logs."""
    argv = [sys.executable, "-m", "alumon", service, "--site", str(site_file)]
    if service == "sim":
        argv += ["--scenario", scenario, "--trace", str(run_dir / "sim-trace.jsonl")]
    if service == "edge":
        argv += ["--spool-dir", str(run_dir / "edge-spool")]
    if service == "analytics":
        argv += ["--state-dir", str(run_dir / "analytics-state")]
    if service == "ingest":
        argv += ["--buffer-dir", str(run_dir / "ingest-buffer")]
    argv += list(extra)
    logf = (run_dir / "logs" / f"{service}.log").open("ab")
    return subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def run_demo(site_path: Path, scenario: str, duration: float, run_dir: Path,
             summary_path: Path | None) -> DemoResult:
    console = Console(soft_wrap=True, markup=False, highlight=False)
    run_dir = run_dir.resolve()
    if run_dir.exists() and (run_dir / MARKER).exists():
        shutil.rmtree(run_dir)  # only ever delete a directory an earlier demo made
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(f"{run_dir} exists and was not made by `alumon demo`: choose another --run-dir")
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / MARKER).touch()

    stack = stack_up(run_dir / "stack")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    observer = Observer()
    obs_client = None
    problems: list[str] = []
    started = time.monotonic()
    try:
        site_file = derive_site(site_path, stack, run_dir / "site.yaml")
        site = load_site(site_file)
        influx = InfluxClient.from_config(site.config.connections.influxdb)
        init_database(influx)  # as an operator would: `alumon influx init` before the first ingest
        console.print(f"stack up: mosquitto :{stack.mosquitto.port}, influxd :{stack.influxd.port}, "
                      f"smtp :{stack.smtp.port}; run dir {run_dir}")

        obs_client = make_client(MqttConnection(host="127.0.0.1", port=stack.mosquitto.port),
                                 f"alumon-demo-observer-{site.id}")
        obs_client.on_connect = lambda c, *_: c.subscribe(
            [(telemetry_subscription(site.id), 1), (alert_topic(site.id, "#"), 1)])
        obs_client.on_message = lambda _c, _u, m: observer.on_payload(m.topic, bytes(m.payload))
        connect(obs_client, site.config.connections.mqtt, persistent=False)
        obs_client.loop_start()

        broker_log = Path(stack.mosquitto.run_dir) / "mosquitto.log"
        for service in SERVICES_IN_START_ORDER:
            procs[service] = start_service(service, site_file, run_dir, scenario)
            if service == "analytics":  # consumers must be subscribed before the edge publishes
                wait_for_clients(broker_log, [f"alumon-ingest-{site.id}-1", f"alumon-analytics-{site.id}",
                                              f"alumon-demo-observer-{site.id}"])
        console.print(f"scenario {scenario!r}: running for {duration:.0f} s "
                      f"(sim, edge, ingest, analytics; logs in {run_dir / 'logs'})")
        next_report = time.monotonic() + 10
        while (elapsed := time.monotonic() - started) < duration:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}; see {run_dir}/logs/{name}.log")
            if time.monotonic() >= next_report:
                next_report += 10
                try:
                    _print_live(console, elapsed, duration, collect(influx, site.id, observer, stack.maildir))
                except InfluxError as exc:
                    console.print(f"(InfluxDB not answering yet: {exc})")
            time.sleep(0.5)

        # Analytics first (it sends what it has queued; stopping it after the edge would report every source
        # stale), then the edge (it drains its spool), then ingest once everything is stored.
        stop_pid(procs["analytics"].pid, 15)
        stop_pid(procs["edge"].pid, 15)
        _wait_until_stored(influx, site.id, observer, timeout_s=20)
        for name in ("ingest", "sim"):
            stop_pid(procs[name].pid, 15)
        summary = collect(influx, site.id, observer, stack.maildir)
        problems += notice_problems(summary["notices"])
    except Exception as exc:
        problems.append(str(exc))
        console.print(f"demo failed: {exc}")
        summary = {}
    finally:
        for proc in procs.values():
            stop_pid(proc.pid, 10)
        if obs_client is not None:
            obs_client.loop_stop()
            obs_client.disconnect()
        stack.down()

    summary = {
        "scenario": scenario,
        "duration_s": duration,
        "site_file": str(site_path),
        "run_dir": str(run_dir),
        "devices_polled": len(summary.get("devices", {})),
        **summary,
        "problems": problems,
    }
    ok = not problems
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    _print_final(console, summary, summary_path)
    return DemoResult(ok, summary)


def _wait_until_stored(influx: InfluxClient, site_id: str, observer: Observer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with observer.lock:
            published = sum(observer.readings.values())
        stored = influx.query_scalar(f"SELECT count(seq) FROM {schema.TELEMETRY} WHERE site='{site_id}'") or 0
        if stored >= published:
            return
        time.sleep(0.5)


def _print_final(console: Console, summary: dict[str, Any], summary_path: Path | None) -> None:
    console.rule("alumon demo summary")
    for dev, d in summary.get("devices", {}).items():
        console.print(f"  {dev:16} published {d['readings_published']:6}  in InfluxDB {d['readings_in_influxdb']:6}",
                      highlight=False)
    console.print(f"  readings published {summary.get('readings_published', 0)}, in InfluxDB "
                  f"{summary.get('readings_in_influxdb', 0)}, lost {summary.get('readings_lost', 0)}",
                  highlight=False)
    for k in summary.get("kpis", []):
        if k["value"] is not None:
            console.print(f"  KPI {k['unit_process']}/{k['kpi']} ({k['window']}): {k['value']:.1f} {k['unit']} "
                          f"completeness {k['completeness']:.2f} level {k['level']} "
                          f"({k['evaluations']} evaluations)", highlight=False)
    for a in summary.get("alerts", []):
        console.print(f"  alert {a['incident']} {a['state']}: {a['text']}", highlight=False)
    for e in summary.get("emails", []):
        console.print(f"  email to {e['to']}: {e['subject']}\n        {e['path']}", highlight=False)
    for incident, by_to in summary.get("notices", {}).items():
        counts = ", ".join(f"{to} {c['firing']}+{c['resolved']}" for to, c in by_to.items())
        console.print(f"  incident {incident}: firing+resolution emails {counts}", highlight=False)
    for p in summary.get("problems", []):
        console.print(f"  problem: {p}")
    if summary_path:
        console.print(f"summary written to {summary_path}")
