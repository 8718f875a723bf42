"""Edge agent at plant scale: 10 000 tags on 100 simulated Modbus TCP devices polled every second.

Figures (one JSON line each):
* the edge's CPU share of one core and its peak RSS, measured from /proc over the window;
* missed cycles (from the agent's own metrics topic) and requests per cycle against the minimum possible
  (ceil(registers / 125) per device, the protocol limit);
* the baseline measured in the same run on the same servers: a bare pymodbus asyncio loop issuing the same
  reads and doing nothing with the answers. The edge's extra cost over it is decoding, counters, JSON, the
  SQLite spool and MQTT publishing.

Usage: ``python bench/edge_polling.py [--seconds 60] [--devices 100] [--tags 100]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from figures import cpu_seconds, emit

from alumon.config import MqttConnection, load_site
from alumon.mqtt import connect, make_client
from alumon.profiles import MAX_REGISTERS_PER_READ
from alumon.stack import free_port, start_mosquitto, stop_pid, wait_for_port
from alumon.telemetry import metrics_topic
from edge.plan import plan_reads

REPO = Path(__file__).resolve().parent.parent


def write_site(d: Path, devices: int, tags: int, mqtt_port: int) -> Path:
    """A profile of ``tags`` fields (60 % f32 gauges, 40 % u32 counters) and ``devices`` devices using it."""
    (d / "profiles").mkdir(parents=True, exist_ok=True)
    floats = tags * 6 // 10
    fields = [{"name": f"g{i:03d}", "address": 2 * i, "type": "f32"} for i in range(floats)]
    fields += [{"name": f"c{i:03d}", "address": 2 * (floats + i), "type": "u32", "kind": "counter",
                "order": "CDAB"} for i in range(tags - floats)]
    (d / "profiles" / "bench.yaml").write_text(yaml.safe_dump({"profile": "bench-meter", "fields": fields}))
    site = {
        "site": {"id": "bench", "name": "bench", "region": "inland"},
        "connections": {"mqtt": {"host": "127.0.0.1", "port": mqtt_port},
                        "smtp": {"sender": "bench@example.com"}},
        "profiles_dir": "profiles",
        "edge": {"metrics_interval_s": 5.0},
        "devices": [{"id": f"m{i:03d}", "profile": "bench-meter", "poll_interval_s": 1.0, "timeout_s": 0.5,
                     "transport": {"type": "tcp", "host": "127.0.0.1", "port": free_port()}}
                    for i in range(devices)],
    }
    path = d / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU share of one core, peak RSS MB) of a process over a window."""
    c0, t0, peak = cpu_seconds(pid), time.monotonic(), 0.0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, rss_mb(pid))
        time.sleep(1.0)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0), peak


BASELINE = """
import asyncio, sys, time, json
from pymodbus.client import AsyncModbusTcpClient
plan, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
done = {"reads": 0, "errors": 0}
async def device(port, reads, until):
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0, reconnect_delay=0)
    await c.connect()
    nxt = time.time() // 1 + 1
    while nxt < until:
        await asyncio.sleep(max(0.0, nxt - time.time()))
        for address, count in reads:
            rr = await c.read_holding_registers(address, count=count, device_id=1)
            done["errors" if rr.isError() else "reads"] += 1
        nxt += 1
    c.close()
async def main():
    until = time.time() + seconds
    await asyncio.gather(*(device(p, r, until) for p, r in plan))
asyncio.run(main())
print(json.dumps(done))
"""


class MetricsWatcher:
    def __init__(self, port: int):
        self.last: dict[str, Any] = {}
        conn = MqttConnection(host="127.0.0.1", port=port)
        self.client = make_client(conn, "bench-metrics")
        self.client.on_connect = lambda c, *_: c.subscribe(metrics_topic("bench", "edge"))
        self.client.on_message = lambda _c, _u, m: setattr(self, "last", json.loads(m.payload))
        connect(self.client, conn, persistent=False)
        self.client.loop_start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--tags", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="alumon-bench-edge-") as tmp:
        d = Path(tmp)
        broker = start_mosquitto(d / "broker")
        site_path = write_site(d, args.devices, args.tags, broker.port)
        site = load_site(site_path)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = (d / "procs.log").open("ab")
        sim = subprocess.Popen([sys.executable, "-m", "alumon", "sim", "--site", str(site_path)], stdout=log,
                               stderr=subprocess.STDOUT, env=env)
        procs = [sim]
        try:
            for dev in site.config.devices:
                wait_for_port(dev.transport.port, 30, sim)  # type: ignore[union-attr]
            reads = plan_reads(site.profile_of("m000"))
            registers = sum(f.width for f in site.profile_of("m000").fields)
            minimum = math.ceil(registers / MAX_REGISTERS_PER_READ)

            plan = [[dev.transport.port, [[r.address, r.count] for r in reads]]  # type: ignore[union-attr]
                    for dev in site.config.devices]
            base_window = min(args.seconds, 30)
            base = subprocess.Popen([sys.executable, "-c", BASELINE, json.dumps(plan), str(base_window + 8)],
                                    stdout=subprocess.PIPE, stderr=log)
            procs.append(base)
            time.sleep(5)
            base_cpu, base_rss = measure(base.pid, base_window)
            out, _ = base.communicate(timeout=60)
            base_reads = json.loads(out)

            watcher = MetricsWatcher(broker.port)
            edge = subprocess.Popen([sys.executable, "-m", "alumon", "edge", "--site", str(site_path), "--spool-dir",
                                     str(d / "spool")], stdout=log, stderr=subprocess.STDOUT, env=env)
            procs.append(edge)
            time.sleep(10)  # connections made, caches warm
            before = watcher.last
            edge_cpu, edge_rss = measure(edge.pid, args.seconds)
            time.sleep(5.5)  # one more metrics message after the window
            after = watcher.last
            sim_cpu = cpu_seconds(sim.pid)
        finally:
            for p in reversed(procs):
                stop_pid(p.pid, 10)
            broker.stop()
            log.close()
        missed = sum(v["missed_cycles"] for v in after["devices"].values()) - sum(
            v["missed_cycles"] for v in before.get("devices", {}).values())
        polls = sum(v["polls_ok"] for v in after["devices"].values()) - sum(
            v["polls_ok"] for v in before.get("devices", {}).values())
        failed = sum(v["polls_failed"] for v in after["devices"].values())
        tags = args.devices * args.tags
        emit("edge", "edge_cpu_share_of_one_core", edge_cpu, "cores", target=0.35, tags=tags, devices=args.devices)
        emit("edge", "edge_peak_rss", edge_rss, "MB", target=150)
        emit("edge", "missed_cycles", missed, "cycles", target=0, window_s=args.seconds)
        emit("edge", "polls_ok_in_window", polls, "polls", failed_total=failed)
        emit("edge", "requests_per_cycle", len(reads) * args.devices, "requests", minimum=minimum * args.devices)
        emit("edge", "baseline_bare_pymodbus_cpu_share", base_cpu, "cores", rss_mb=round(base_rss, 1), **base_reads)
        emit("edge", "edge_over_baseline_cpu", edge_cpu / base_cpu if base_cpu else float("nan"), "ratio")
        emit("edge", "simulator_cpu_total", sim_cpu, "s")


if __name__ == "__main__":
    main()
