"""The example site running as a user runs it (simulator, edge, ingest, analytics as their own processes
against a real mosquitto, influxd and SMTP server), with faults injected on a schedule, and the accounting
that proves what happened to every reading and every alert notice.

Readings are accounted by sequence number: the edge numbers each device's polls 0, 1, 2, ... (the numbering
survives a restart, it lives in the spool), so a reading is lost when a number between 0 and the device's
highest is missing from InfluxDB, and duplicated when a number is stored twice (at two poll times). A reading
belongs to the fault whose window holds its poll time (a lost one: the time interpolated from its stored
neighbours). Notices are accounted from the mailbox: each incident the analytics audit log records must have
reached each of its recipients once when it fired and once when it resolved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from alumon.config import Site, load_site
from alumon.demo import derive_site, notices_per_incident, read_emails, start_service, wait_for_clients
from alumon.influx import InfluxClient
from alumon.stack import LocalStack, stack_up, start_influxd, start_mosquitto, start_smtp_sink, stop_pid
from analytics.email import addressees
from analytics.rules import load_rules
from ingest.setup import init_database

SERVICES = ("sim", "ingest", "analytics", "edge")
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SITE = REPO / "examples" / "guangxi-demo" / "site.yaml"


@dataclass
class Fault:
    """One injected fault: ``inject`` at ``at_s`` (seconds after the services started), ``heal`` ``for_s``
    later (None: nothing to heal). Its window for the accounting runs to ``settle_s`` after the heal."""

    name: str
    at_s: float
    for_s: float
    inject: Callable[[PlantRun], None]
    heal: Callable[[PlantRun], None] | None = None
    settle_s: float = 5.0
    started_ms: int = 0
    healed_ms: int = 0


@dataclass
class PlantRun:
    run_dir: Path
    scenario: str = "energy-drift"
    sim_faults: tuple[str, ...] = ()
    kpi_window_s: float = 30.0
    stack: LocalStack = field(init=False)
    site: Site = field(init=False)
    site_file: Path = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    began: float = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.stack = stack_up(self.run_dir / "stack")
        self.site_file = derive_site(EXAMPLE_SITE, self.stack, self.run_dir / "site.yaml")
        data = yaml.safe_load(self.site_file.read_text(encoding="utf-8"))
        data["analytics"]["kpi_window_s"] = self.kpi_window_s  # the drift incident opens and closes sooner
        self.site_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        self.site = load_site(self.site_file)
        init_database(self.influx())
        for service in SERVICES:
            self.start_service(service)
            if service == "analytics":
                wait_for_clients(self.broker_log(), [f"alumon-ingest-{self.site.id}-1",
                                                     f"alumon-analytics-{self.site.id}"])
        self.began = time.monotonic()

    def start_service(self, service: str) -> None:
        extra = tuple(arg for f in self.sim_faults for arg in ("--fault", f)) if service == "sim" else ()
        self.procs[service] = start_service(service, self.site_file, self.run_dir, self.scenario, extra)

    def influx(self) -> InfluxClient:
        return InfluxClient(f"http://127.0.0.1:{self.stack.influxd.port}", "alumon")

    def broker_log(self) -> Path:
        return Path(self.stack.mosquitto.run_dir) / "mosquitto.log"

    def run(self, faults: list[Fault], until_s: float) -> None:
        """Inject and heal the faults on schedule, checking every service stays up (or is restarted)."""
        pending = sorted([(f.at_s, "inject", f) for f in faults] +
                         [(f.at_s + f.for_s, "heal", f) for f in faults if f.heal is not None],
                         key=lambda e: e[0])
        while (elapsed := time.monotonic() - self.began) < until_s:
            while pending and pending[0][0] <= elapsed:
                _, what, fault = pending.pop(0)
                now_ms = int(time.time() * 1000)
                if what == "inject":
                    fault.started_ms = fault.healed_ms = now_ms
                    fault.inject(self)
                else:
                    assert fault.heal is not None
                    fault.heal(self)
                    fault.healed_ms = now_ms
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited with {proc.returncode}: see {self.run_dir}/logs"
            time.sleep(0.2)

    def finish(self) -> None:
        """As the demo stops: analytics first (it sends what it queued), the edge (it drains its spool), then
        ingest once every published reading is stored."""
        stop_pid(self.procs["analytics"].pid, 15)
        stop_pid(self.procs["edge"].pid, 20)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.missing_total() > 0:
            time.sleep(1)
        for name in ("ingest", "sim"):
            stop_pid(self.procs[name].pid, 15)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                stop_pid(proc.pid, 5, signal.SIGKILL)
        for server in self.stack.servers():
            server.stop()

    # -- fault actions -----------------------------------------------------------------------------------------

    def kill9(self, service: str) -> None:
        os.killpg(self.procs[service].pid, signal.SIGKILL)
        self.procs[service].wait(timeout=10)
        self.start_service(service)

    def stop_broker(self, wipe: bool = False) -> None:
        self.stack.mosquitto.stop()
        if wipe:  # its persistence: sessions, queued messages, retained alerts
            shutil.rmtree(Path(self.stack.mosquitto.run_dir) / "data")

    def start_broker(self) -> None:
        self.stack.mosquitto = start_mosquitto(Path(self.stack.run_dir), self.stack.mosquitto.port)

    def stop_influxd(self) -> None:
        self.stack.influxd.stop()

    def start_influxd(self) -> None:
        self.stack.influxd = start_influxd(Path(self.stack.run_dir), self.stack.influxd.port)

    def freeze_influxd(self, frozen: bool) -> None:
        """A database that accepts connections and answers nothing (SIGSTOP), then catches up (SIGCONT)."""
        os.kill(self.stack.influxd.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop_smtp(self) -> None:
        self.stack.smtp.stop()

    def start_smtp(self) -> None:
        self.stack.smtp = start_smtp_sink(Path(self.stack.run_dir), self.stack.smtp.port)

    # -- accounting --------------------------------------------------------------------------------------------

    def stored(self) -> dict[str, list[tuple[int, int]]]:
        """Per reading (``device.quantity``): (seq, poll time ms) of every stored point."""
        out: dict[str, list[tuple[int, int]]] = {}
        for series in self.influx().query(
                f"SELECT seq FROM telemetry WHERE site='{self.site.id}' GROUP BY device, quantity"):
            tags = series["tags"]
            out[f"{tags['device']}.{tags['quantity']}"] = [(int(v[1]), int(v[0])) for v in series["values"]]
        return out

    def points(self, path: str) -> list[dict[str, Any]]:
        """Every stored point of one reading (``device.quantity``) in time order: time (poll time, ms), seq,
        value (None when the device gave none), quality, flags (a list)."""
        device, quantity = path.split(".", 1)
        rows = self._rows(f"SELECT seq, value, quality, flags FROM telemetry WHERE site='{self.site.id}' "
                          f"AND device='{device}' AND quantity='{quantity}'")
        for row in rows:
            row["flags"] = row["flags"].split(",") if row.get("flags") else []
        return rows

    def kpi_points(self, unit: str, kpi: str) -> list[dict[str, Any]]:
        """Every stored evaluation of a unit's KPI over the live rolling window (analytics.kpis names it
        ``rolling_<kpi_window_s>s``) in time order: time (the window's end, ms), value."""
        return self._rows(f"SELECT value FROM kpi WHERE site='{self.site.id}' "
                          f"AND unit_process='{unit}' AND kpi='{kpi}' AND \"window\"='rolling_{self.kpi_window_s:g}s'")

    def _rows(self, query: str) -> list[dict[str, Any]]:
        return [dict(zip(series["columns"], values, strict=True))
                for series in self.influx().query(query) for values in series["values"]]

    def missing_total(self) -> int:
        try:
            return sum(r["lost"] for r in readings_report(self.stored(), []))
        except Exception:  # influxd restarting: not yet
            return 1

    def incidents(self) -> dict[str, dict[str, Any]]:
        """From the audit log: each incident's rule and the states it was notified in."""
        out: dict[str, dict[str, Any]] = {}
        audit = self.run_dir / "analytics-state" / "audit.jsonl"
        for line in audit.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec["event"] == "state" and rec["reminder"] == 0:
                inc = out.setdefault(rec["incident"], {"rule": rec["rule"], "states": {}})
                inc["states"][rec["state"]] = int(datetime.fromisoformat(rec["at"]).timestamp() * 1000)
        return out

    def notices(self) -> dict[str, dict[str, dict[str, int]]]:
        return notices_per_incident(read_emails(self.stack.maildir))

    def rule_kinds(self) -> dict[str, str]:
        """Each rule's kind (``limit``, ``data_quality``) by name."""
        return {r.name: r.kind for r in load_rules(self.site.config.alerts.rules).rules}

    def recipients(self, rule_name: str) -> set[str]:
        """Who a notice of this rule goes to."""
        rule = next(r for r in load_rules(self.site.config.alerts.rules).rules if r.name == rule_name)
        return {a.address for a in addressees(self.site.config.alerts, rule.audience, rule.severity)}


def readings_report(stored: dict[str, list[tuple[int, int]]], windows: list[tuple[int, int]]
                    ) -> list[dict[str, int]]:
    """Per window (all time when none): readings published (seq numbers 0..max of each device's quantity),
    stored (distinct), lost, duplicates (a seq stored at more than one poll time)."""
    windows = windows or [(-(2**62), 2**62)]
    report = [{"published": 0, "stored": 0, "lost": 0, "duplicates": 0} for _ in windows]
    for points in stored.values():
        counts = Counter(seq for seq, _ in points)
        times: dict[int, int] = {}
        for seq, t in points:
            times.setdefault(seq, t)
        seqs = sorted(times)
        top = seqs[-1]
        for seq in range(top + 1):
            if seq in times:
                t = times[seq]
            else:  # lost: its poll time between its stored neighbours
                i = bisect_left(seqs, seq)
                lo, hi = seqs[max(i - 1, 0)], seqs[min(i, len(seqs) - 1)]
                t = times[lo] + (times[hi] - times[lo]) * (seq - lo) // max(hi - lo, 1)
            for w, (a, b) in zip(report, windows, strict=True):
                if a <= t < b:
                    w["published"] += 1
                    w["stored"] += seq in times
                    w["lost"] += seq not in times
                    w["duplicates"] += max(0, counts.get(seq, 0) - 1)
    return report
