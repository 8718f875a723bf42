"""The whole system at load, in one run: sample -> alert latency under 50 000 readings/s of background
telemetry, each service's memory and CPU, and the background rate actually stored.

How: the local stack (real mosquitto, influxd, SMTP sink) and the four services as their own processes,
started as the fault gauntlet starts them (``alumon.demo.start_service``). The simulator and the edge run the
example site (examples/guangxi-demo) as derived for the stack. Ingest and analytics get a richer copy of it,
this benchmark's own configuration, declaring besides:

* 100 background devices ``bg-000``..``bg-099`` that nobody polls: bench/mqtt_load.py's raw publisher sends
  their telemetry (10 readings per message, live timestamps) at a paced 5000 messages/s through the same
  broker, ingest and InfluxDB; at the end every one of those readings must be in InfluxDB;
* K CEMS stacks ``probe-1``.. (device ``probe-cems-1``.., profile cems-das, never polled) whose telemetry this
  benchmark publishes at 1 Hz with paho at QoS 1, as the edge would: poll times on the whole second, published
  at once. Each probe in turn has an incident: SO₂ jumps so high that one sample takes the rolling mean over the
  ultra-low limit, stays high a few samples, then returns to normal until the alert resolves. A latency sample
  is the arrival of the incident's retained firing message on ``alumon/v1/{site}/alerts/...`` minus the
  publish time of its first high sample; the rule is set to fire and resolve at once (pending, resolve-after,
  min-firing 0, no flap damping), the KPI window is 5 s and analytics evaluates every 0.2 s. Analytics evaluates
  on the same wall-clock grid the edge polls on, and a window's end is exclusive, so a sample polled at second S
  is first judged at S + 0.2 s: that grid wait (at most ``evaluate_every_s``) is part of every latency sample,
  as for the edge's own polls; the rest is the tick (evaluation and the rules; the KPI write and the alert
  emails come after it or on their own thread) and MQTT. Both parts are reported.

Every 10 s each service's RSS is read from /proc (and its CPU time at the start and the end): RSS at the end,
its growth from minute 2 (half the run if shorter than 4 minutes) to the end, CPU share in cores; the same for
this process (the load generator), which shares the two cores. Growth is a leak indicator only with care:
analytics keeps two hours of series and evidence_hours of KPI history by design, so it grows for hours.

Prints one JSON line per figure (bench/figures.py); exits non-zero when the run was not healthy (a service
died, background readings missing from InfluxDB, an incident that never fired).

Usage: ``python bench/service_load.py [--minutes 10] [--background 50000] [--probes 4] [--run-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from edge_polling import rss_mb
from figures import cpu_seconds, emit
from mqtt_load import RawPublisher, payload

from alumon.config import MqttConnection, Site, load_site
from alumon.demo import derive_site, start_service, wait_for_clients
from alumon.influx import InfluxClient
from alumon.mqtt import connect, make_client
from alumon.stack import LocalStack, free_port, stack_up, stop_pid
from alumon.telemetry import (
    Quality,
    Reading,
    TelemetryMessage,
    alert_topic,
    decode,
    encode,
    metrics_topic,
    telemetry_topic,
)
from ingest.setup import init_database

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SITE = REPO / "examples" / "guangxi-demo" / "site.yaml"
BENCH = "service_load"
SERVICES = ("sim", "ingest", "analytics", "edge")  # the demo's start order: consumers before the edge

# The benchmark's analytics configuration (in the ingest/analytics site file; reported with the figures).
KPI_WINDOW_S = 5.0  # one high sample among 5 normal ones takes the mean over the limit
EVALUATE_EVERY_S = 0.2
MIN_COMPLETENESS = 0.6  # 1 Hz in a 5 s window: 4 or 5 samples (0.8 or 1.0); 0.6 leaves room for a late one
RULE = "emission_above_ultra_low"
RULE_OVERRIDE = {"name": RULE, "pending_s": 0, "resolve_after_s": 0, "min_firing_s": 0,
                 "flap_window_s": 0}  # flap_window_s 0 switches flap damping off (analytics/alert_engine.py)

BG_DEVICES = [f"bg-{i:03d}" for i in range(100)]
BG_READINGS = 10  # per message: the example site's largest devices
BG_PROFILE = "eastron-sdm630"  # any profile: the devices are never polled, ingest only checks they are known

# A probe stack's normal readings, as the simulator's potroom stack (alumon/sim/plant.py), by cems-das field.
NORMAL = {"pm_mgm3": 3.0, "so2_mgm3": 10.0, "nox_mgm3": 5.0, "fluoride_mgm3": 0.3, "o2_pct": 20.6,
          "temperature_c": 95.0, "pressure_kpa": 101.0, "moisture_pct": 2.0, "flow_m3h": 2.5e6, "das_flag": 0.0}
SO2_HIGH = 400.0  # (4 × 10 + 400) / 5 = 88 > 35 mg/m3 (ultra-low SO₂): the first high sample crosses alone
HIGH_SAMPLES = 3
# Normal data between a resolution and the probe's next incident: at least PAUSE_S, plus a random part so that
# probes whose incidents a stall lined up (one evaluation resolving them all) spread out again.
PAUSE_S = 0.5
PAUSE_JITTER_S = 2.0
WARMUP_S = 15.0  # full KPI windows and settled services before the first incident
FIRING_TIMEOUT_S = 10.0  # an incident not firing within this is counted as a timeout
RESOLVE_TIMEOUT_S = 30.0
SAMPLE_EVERY_S = 10.0  # RSS
DRAIN_TIMEOUT_S = 300.0  # for the background readings to be all in InfluxDB after the publisher stopped


def write_sites(stack: LocalStack, run_dir: Path, probes: int) -> tuple[Path, Path]:
    """(site file of the simulator and the edge: the example as derived; site file of ingest and analytics:
    the same site with the background devices, the probe stacks and the benchmark's analytics settings)."""
    plant_file = derive_site(EXAMPLE_SITE, stack, run_dir / "plant-site.yaml")
    data = yaml.safe_load(plant_file.read_text(encoding="utf-8"))

    def device(dev_id: str, profile: str) -> dict[str, Any]:  # a port nothing listens on: never polled
        return {"id": dev_id, "profile": profile, "transport": {"type": "tcp", "host": "127.0.0.1",
                                                                "port": free_port()},
                "unit_id": 1, "poll_interval_s": 1.0, "timeout_s": 0.5}

    data["devices"] += [device(d, BG_PROFILE) for d in BG_DEVICES]
    for k in range(1, probes + 1):
        dev = f"probe-cems-{k}"
        data["devices"].append(device(dev, "cems-das"))
        data["process_units"].append({  # like the example's potroom-stack
            "id": f"probe-{k}", "kind": "cems_stack", "name": f"bench probe stack {k}",
            "source_type": "potroom_gas_treatment",
            "pollutants": {"pm": f"{dev}.pm_mgm3", "so2": f"{dev}.so2_mgm3", "fluoride_as_F": f"{dev}.fluoride_mgm3"},
            "basis": "wet", "o2": f"{dev}.o2_pct", "moisture": f"{dev}.moisture_pct",
            "temperature": f"{dev}.temperature_c", "pressure": f"{dev}.pressure_kpa", "flow": f"{dev}.flow_m3h",
            "flag": f"{dev}.das_flag", "correction": {"type": "none"}})
    data["analytics"].update(kpi_window_s=KPI_WINDOW_S, evaluate_every_s=EVALUATE_EVERY_S,
                             min_completeness=MIN_COMPLETENESS, alert_pending_s=0)
    data["alerts"]["rules"] = [r for r in data["alerts"].get("rules", []) if r["name"] != RULE] + [RULE_OVERRIDE]
    service_file = run_dir / "service-site.yaml"
    service_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return plant_file, service_file


@dataclass
class Probe:
    """One probe stack's incident cycle: idle (normal data) -> firing_wait (first high sample published) ->
    resolve_wait (firing seen) -> idle (resolution seen) after PAUSE_S."""

    unit: str
    device: str
    next_incident: float  # time.time() from which the next incident may start
    seq: int = 0
    state: str = "idle"
    high_left: int = 0
    first_high_s: float = 0.0  # time.time() just before publishing the incident's first high sample
    first_high_ms: int = 0  # its poll time
    since: float = 0.0  # start of the current wait (timeouts)


@dataclass
class Incidents:
    """The probes and what their alerts did; shared by the probe publisher and the alert subscriber."""

    probes: dict[str, Probe]
    accept_until: float = float("inf")  # no incident starts after this (time.time())
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    latency_ms: list[float] = field(default_factory=list)
    grid_wait_ms: list[float] = field(default_factory=list)  # first high publish -> the evaluation that fired
    after_tick_ms: list[float] = field(default_factory=list)  # that evaluation's grid time -> firing received
    resolve_s: list[float] = field(default_factory=list)  # first high publish -> resolution received
    started: int = 0
    timeouts: int = 0
    unresolved: int = 0
    unexpected: int = 0  # firing or resolution of a probe that was not waiting for one
    alerts: dict[str, int] = field(default_factory=dict)  # every alert message by rule and state

    def on_alert(self, topic: str, raw: bytes) -> None:
        arrived = time.time()
        if not raw:  # the empty retained message that clears a resolved alert
            return
        body = json.loads(raw)
        key = f"{body['rule']}.{body['state']}"
        with self.lock:
            self.alerts[key] = self.alerts.get(key, 0) + 1
            p = self.probes.get(body["unit_process"])
            if body["rule"] != RULE or p is None or body.get("reminder", 0) or not topic.endswith("/so2_corrected"):
                return
            first_seen_ms = datetime.fromisoformat(body["first_seen"]).timestamp() * 1000
            if body["state"] == "firing":
                if p.state == "firing_wait" and first_seen_ms >= p.first_high_ms:
                    self.latency_ms.append((arrived - p.first_high_s) * 1000)
                    self.grid_wait_ms.append(first_seen_ms - p.first_high_s * 1000)
                    self.after_tick_ms.append(arrived * 1000 - first_seen_ms)
                    p.state, p.since = "resolve_wait", arrived
                else:  # e.g. the late firing of an incident already counted as a timeout
                    self.unexpected += 1
                    if p.state == "idle":  # its resolution comes next: wait for it before another incident
                        p.state, p.since = "resolve_wait", arrived
            elif body["state"] == "resolved":
                if p.state == "resolve_wait":
                    self.resolve_s.append(arrived - p.first_high_s)
                    p.state, p.next_incident = "idle", arrived + PAUSE_S + self.rng.uniform(0, PAUSE_JITTER_S)
                else:
                    self.unexpected += 1

    def next_so2(self, p: Probe, now: float, poll_ms: int) -> tuple[float, bool]:
        """The SO₂ value of this poll and whether it is an incident's first high sample (caller holds the lock)."""
        if p.state == "idle" and p.next_incident <= now < self.accept_until:
            p.state, p.high_left, p.since, p.first_high_ms = "firing_wait", HIGH_SAMPLES, now, poll_ms
            self.started += 1
            first = True
        else:
            first = False
        if p.state == "firing_wait" and now - p.since > FIRING_TIMEOUT_S:
            self.timeouts += 1
            p.state, p.next_incident = "idle", now + KPI_WINDOW_S + PAUSE_S  # the window clears first
        elif p.state == "resolve_wait" and now - p.since > RESOLVE_TIMEOUT_S:
            self.unresolved += 1
            p.state, p.next_incident = "idle", now + PAUSE_S
        if p.high_left > 0:
            p.high_left -= 1
            return SO2_HIGH, first
        return NORMAL["so2_mgm3"], False


def probe_message(site: Site, p: Probe, so2: float, poll_ms: int) -> bytes:
    """The telemetry message the edge would publish for the probe's DAS: every numeric cems-das field, good."""
    readings = {f.name: Reading(value=so2 if f.name == "so2_mgm3" else NORMAL[f.name], quality=Quality.GOOD,
                                unit=f.unit)
                for f in site.profile_of(p.device).fields if f.name in NORMAL}
    msg = TelemetryMessage(v=1, site=site.id, device=p.device, seq=p.seq,
                           ts=datetime.fromtimestamp(poll_ms / 1000, UTC), readings=readings)
    p.seq += 1
    return encode(msg)


def run_probes(site: Site, client: mqtt.Client, incidents: Incidents, stop: threading.Event) -> None:
    """Every probe polled on the whole second, as the edge schedules its polls (edge/poller.py), published at
    once at QoS 1."""
    next_t = time.time() // 1 + 1
    while not stop.wait(max(0.0, next_t - time.time())):
        poll_ms = int(next_t * 1000)
        for p in incidents.probes.values():
            with incidents.lock:
                so2, first = incidents.next_so2(p, time.time(), poll_ms)
                data = probe_message(site, p, so2, poll_ms)
                if first:
                    p.first_high_s = time.time()
            client.publish(telemetry_topic(site.id, p.device), data, qos=1)
        next_t += 1
        if time.time() > next_t:  # a stall of over a second: skip the missed polls, as the edge does
            next_t = time.time() // 1 + 1


@dataclass
class Background:
    published: int = 0  # messages
    behind_s: float = 0.0  # time the publisher could not keep the rate (the broker held it back)
    seconds: float = 0.0


def run_background(pub: RawPublisher, site_id: str, rate: float, stop: threading.Event, out: Background) -> None:
    """``rate`` messages/s round robin over the background devices, paced in 10 ms slices; poll times are now
    (strictly increasing per device, so no point overwrites another in InfluxDB)."""
    seqs = [0] * len(BG_DEVICES)
    last_ms = [0] * len(BG_DEVICES)
    topics = [telemetry_topic(site_id, d) for d in BG_DEVICES]
    start = time.monotonic()
    owed_from = start  # the schedule's origin, moved on when the publisher fell more than a second behind
    owed_base = 0
    while not stop.is_set():
        now = time.monotonic()
        due = owed_base + int((now - owed_from) * rate)
        if due - out.published > rate:  # not the publisher's pace: do not dump a backlog, count the shortfall
            out.behind_s += (due - out.published) / rate
            owed_from, owed_base, due = now, out.published, out.published
        now_ms = int(time.time() * 1000)
        while out.published < due:
            i = out.published % len(BG_DEVICES)
            last_ms[i] = max(now_ms, last_ms[i] + 1)
            pub.publish(topics[i], payload(site_id, BG_DEVICES[i], seqs[i], BG_READINGS, last_ms[i], 0))
            seqs[i] += 1
            out.published += 1
        pub.flush()
        time.sleep(max(0.0, 0.01 - (time.monotonic() - now)))
    out.seconds = time.monotonic() - start


def stored_background(influx: InfluxClient, site_id: str, since_ms: int) -> int:
    return int(influx.query_scalar(f"SELECT count(seq) FROM telemetry WHERE site='{site_id}' AND device =~ /^bg-/ "
                                   f"AND time >= {since_ms}ms") or 0)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): the smallest value with at least q % of the values at or below."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="duration at load")
    ap.add_argument("--background", type=float, default=50_000.0, help="background readings/s")
    ap.add_argument("--probes", type=int, default=4, help="probe CEMS stacks")
    ap.add_argument("--run-dir", type=Path, help="keep the run (logs, site files, data) here instead of a temp dir")
    args = ap.parse_args()
    if args.run_dir is not None:
        args.run_dir.mkdir(parents=True, exist_ok=False)
        run(args.run_dir.resolve(), args)
    else:
        with tempfile.TemporaryDirectory(prefix="alumon-bench-service-") as d:
            run(Path(d), args)


def run(run_dir: Path, args: argparse.Namespace) -> None:
    duration = args.minutes * 60
    (run_dir / "logs").mkdir()
    began = time.monotonic()
    stack = stack_up(run_dir / "stack")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[mqtt.Client] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    pub: RawPublisher | None = None
    try:
        plant_file, service_file = write_sites(stack, run_dir, args.probes)
        site = load_site(service_file)
        influx = InfluxClient(f"http://127.0.0.1:{stack.influxd.port}", "alumon", timeout_s=120)
        init_database(influx)
        broker_log = Path(stack.mosquitto.run_dir) / "mosquitto.log"
        for service in SERVICES:
            procs[service] = start_service(service, plant_file if service in ("sim", "edge") else service_file,
                                           run_dir, "normal")
            if service == "analytics":
                wait_for_clients(broker_log, [f"alumon-ingest-{site.id}-1", f"alumon-analytics-{site.id}"])

        conn = MqttConnection(host="127.0.0.1", port=stack.mosquitto.port)
        probes = {f"probe-{k}": Probe(f"probe-{k}", f"probe-cems-{k}", 0.0) for k in range(1, args.probes + 1)}
        incidents = Incidents(probes)
        ingest_lag: list[float] = []  # ingest's own max_lag_s per metrics interval: is the pipeline keeping up?

        def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
            if m.topic.endswith("/metrics"):
                ingest_lag.append(float(json.loads(m.payload)["max_lag_s"]))
            else:
                incidents.on_alert(m.topic, bytes(m.payload))

        watcher = make_client(conn, "bench-alert-watcher")
        watcher.on_connect = lambda c, *_: c.subscribe([(alert_topic(site.id, "#"), 1),
                                                        (metrics_topic(site.id, "ingest-1"), 0)])
        watcher.on_message = on_message
        prober = make_client(conn, "bench-probes")
        for client in (watcher, prober):
            clients.append(client)
            connect(client, conn, persistent=False)
            client.loop_start()
        while not (watcher.is_connected() and prober.is_connected()):
            time.sleep(0.01)
        pub = RawPublisher("127.0.0.1", stack.mosquitto.port, "bench-background")
        t0_ms = int(time.time() * 1000)
        assert decode(payload(site.id, BG_DEVICES[0], 0, BG_READINGS, t0_ms, 0)).device == BG_DEVICES[0]
        load_started = time.time()
        # Staggered first incidents: one probe in turn, about a cycle (~10 s) spread over the probes.
        for k, p in enumerate(probes.values()):
            p.next_incident = load_started + WARMUP_S + k * 10.0 / args.probes
        incidents.accept_until = load_started + duration - FIRING_TIMEOUT_S
        background = Background()
        threads = [threading.Thread(target=run_probes, args=(site, prober, incidents, stop), daemon=True),
                   threading.Thread(target=run_background, daemon=True, args=(
                       pub, site.id, args.background / BG_READINGS, stop, background))]
        for t in threads:
            t.start()

        pids = {**{s: procs[s].pid for s in ("sim", "edge", "ingest", "analytics")},
                "mosquitto": stack.mosquitto.pid, "influxd": stack.influxd.pid, "load_generator": os.getpid()}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        rss: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}  # (seconds into the load, MiB)
        next_sample = 0.0
        while (elapsed := time.time() - load_started) < duration:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} at {elapsed:.0f} s: see {run_dir}/logs")
            for server in (stack.mosquitto, stack.influxd):
                if not server.alive():
                    raise RuntimeError(f"{server.name} died at {elapsed:.0f} s: see {server.log}")
            if elapsed >= next_sample:
                for name, pid in pids.items():
                    rss[name].append((elapsed, rss_mb(pid)))
                next_sample += SAMPLE_EVERY_S
            time.sleep(0.2)
        elapsed = time.time() - load_started
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) / elapsed for name, pid in pids.items()}
        for name, pid in pids.items():
            rss[name].append((elapsed, rss_mb(pid)))
        alive_to_end = all(proc.poll() is None for proc in procs.values())
        lag_during_load = list(ingest_lag)

        stop.set()
        for t in threads:
            t.join(timeout=30)
        acked = pub.wait_acked()
        pub.close()
        pub = None
        expected = background.published * BG_READINGS
        stored, drain_started = 0, time.monotonic()
        while time.monotonic() - drain_started < DRAIN_TIMEOUT_S:
            stored = stored_background(influx, site.id, t0_ms - 60_000)
            if stored >= expected:
                break
            time.sleep(2.0)
        drained_s = time.monotonic() - drain_started

        setup = {"kpi_window_s": KPI_WINDOW_S, "evaluate_every_s": EVALUATE_EVERY_S,
                 "min_completeness": MIN_COMPLETENESS, "alert_pending_s": 0, "rule_override": RULE_OVERRIDE,
                 "probes": args.probes, "background_target": args.background, "minutes": args.minutes,
                 "config": "the benchmark's own analytics settings (not the example site's)"}
        with incidents.lock:
            lat = list(incidents.latency_ms)
            if lat:
                emit(BENCH, "sample_to_alert_p50", percentile(lat, 50), "ms", **setup)
                emit(BENCH, "sample_to_alert_p99", percentile(lat, 99), "ms", target=500)
                emit(BENCH, "sample_to_alert_max", max(lat), "ms")
                emit(BENCH, "sample_to_alert_grid_wait_p50", statistics.median(incidents.grid_wait_ms), "ms",
                     p99=round(percentile(incidents.grid_wait_ms, 99), 1),
                     note="first high sample published -> grid time of the evaluation that fired")
                emit(BENCH, "sample_to_alert_after_tick_p50", statistics.median(incidents.after_tick_ms), "ms",
                     p99=round(percentile(incidents.after_tick_ms, 99), 1),
                     note="grid time of the firing evaluation -> firing message received: tick time + MQTT")
            emit(BENCH, "sample_to_alert_samples", len(lat), "samples", incidents_started=incidents.started)
            emit(BENCH, "incident_timeouts", incidents.timeouts, "incidents", timeout_s=FIRING_TIMEOUT_S,
                 unresolved=incidents.unresolved, unexpected=incidents.unexpected)
            if incidents.resolve_s:
                emit(BENCH, "incident_to_resolution_p50", statistics.median(incidents.resolve_s), "s",
                     note=f"first high publish -> resolved received; {HIGH_SAMPLES} high samples, "
                          f"{KPI_WINDOW_S:g} s window")
            alerts = dict(sorted(incidents.alerts.items()))
        growth_from = min(120.0, duration / 2)
        for name in pids:
            samples = rss[name]
            base = min(samples, key=lambda s: abs(s[0] - growth_from))
            emit(BENCH, f"rss_{name}", samples[-1][1], "MiB", peak=round(max(v for _, v in samples), 1))
            emit(BENCH, f"rss_growth_{name}", samples[-1][1] - base[1], "MiB", from_s=round(base[0]),
                 to_s=round(samples[-1][0]))
            emit(BENCH, f"cpu_{name}", cpu[name], "cores", seconds=round(elapsed))
        emit(BENCH, "background_published", expected / background.seconds, "readings/s", target=args.background,
             readings=expected, behind_s=round(background.behind_s, 1))
        emit(BENCH, "background_stored", stored / background.seconds, "readings/s", readings=stored,
             drain_s=round(drained_s, 1))
        if lag_during_load:
            emit(BENCH, "ingest_lag_max", max(lag_during_load), "s", last_interval=lag_during_load[-1],
                 note="ingest's max_lag_s (now - newest reading written) over its metrics intervals during the load")
        emit(BENCH, "alert_messages", sum(alerts.values()), "messages", by_rule_state=alerts)

        problems = []
        if not alive_to_end:
            problems.append("a service exited before the end")
        if not acked:
            problems.append("the broker did not acknowledge every background publish")
        if stored != expected:
            problems.append(f"background readings: {expected} published, {stored} stored")
        if incidents.timeouts or incidents.started == 0:
            problems.append(f"{incidents.timeouts} of {incidents.started} incidents never fired")
        if problems:
            raise SystemExit(f"{BENCH}: unhealthy run: {'; '.join(problems)} (logs: {run_dir}/logs)")
    finally:
        stop.set()
        if pub is not None:
            pub.sock.close()
        for c in clients:
            c.loop_stop()
            c.disconnect()
        # As the demo stops: analytics first (it sends what it queued), the edge, then ingest and the simulator.
        for name in ("analytics", "edge", "ingest", "sim"):
            if name in procs:
                stop_pid(procs[name].pid, 20)
        for proc in procs.values():
            if proc.poll() is None:
                stop_pid(proc.pid, 5, signal.SIGKILL)
        for server in stack.servers():
            server.stop()
        print(f"{BENCH}: {time.monotonic() - began:.0f} s end to end, run dir {run_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
