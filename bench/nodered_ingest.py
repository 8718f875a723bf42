"""The same load through Node-RED, the tool many plants would reach for: ``mqtt in`` (QoS 1) -> a function node
turning each telemetry message into points -> ``influxdb batch`` (node-red-contrib-influxdb, InfluxDB 1.x).

Node-RED is installed from npm into a cache directory on first use (``npm install node-red@4
node-red-contrib-influxdb``). The publisher and payloads are bench/mqtt_load.py's; with no
metrics topic to pace on, it publishes for ``--seconds`` at full speed, then waits until the stored count stops
growing for 15 s. Figures (JSON lines): the raw InfluxDB ceiling of the same line shape, Node-RED's stored
readings/s, their ratio, and how many published readings never reached InfluxDB.

Usage: ``python bench/nodered_ingest.py [--seconds 30] [--readings 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from figures import emit
from ingest_throughput import DEVICES, raw_ceiling
from mqtt_load import RawPublisher, payload

from alumon.influx import InfluxClient
from alumon.stack import free_port, start_influxd, start_mosquitto, stop_pid
from alumon.telemetry import telemetry_topic

CACHE = Path.home() / ".cache" / "alumon-bench" / "node-red"
TO_POINTS = """
const m = msg.payload;
const ts = new Date(Date.parse(m.ts));
msg.payload = Object.entries(m.readings).map(([q, r]) => ({
  measurement: "telemetry",
  tags: {site: m.site, device: m.device, quantity: q},
  fields: Object.assign(r.value === null ? {} : {value: r.value},
                        {quality: r.quality, seq: m.seq, unit: r.unit, historical: m.historical}),
  timestamp: ts,
}));
return msg;
"""


def node_red() -> Path:
    binary = CACHE / "node_modules" / ".bin" / "node-red"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm not found: Node-RED cannot be installed here")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "node-red@4", "node-red-contrib-influxdb"],
                       cwd=CACHE, check=True, capture_output=True)
    return binary


def flows(mqtt_port: int, influx_port: int, database: str) -> list[dict[str, object]]:
    return [
        {"id": "broker", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(mqtt_port),
         "clientid": "nodered-bench", "autoConnect": True, "usetls": False, "protocolVersion": "4",
         "keepalive": "60", "cleansession": True},
        {"id": "influx", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx_port), "protocol": "http",
         "database": database, "usetls": False, "influxdbVersion": "1.x"},
        {"id": "tab", "type": "tab", "label": "bench"},
        {"id": "in", "type": "mqtt in", "z": "tab", "topic": "alumon/v1/bench/+/telemetry", "qos": "1",
         "datatype": "json", "broker": "broker", "nl": False, "rap": True, "rh": 0, "inputs": 0, "wires": [["fn"]]},
        {"id": "fn", "type": "function", "z": "tab", "name": "to points", "func": TO_POINTS, "outputs": 1,
         "wires": [["out"]]},
        {"id": "out", "type": "influxdb batch", "z": "tab", "influxdb": "influx", "precision": "ms", "wires": []},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--readings", type=int, default=10)
    args = parser.parse_args()
    binary = node_red()
    with tempfile.TemporaryDirectory(prefix="alumon-bench-nodered-") as d:
        tmp = Path(d)
        keep = os.environ.get("ALUMON_BENCH_KEEP")  # a directory to copy Node-RED's log into, for debugging
        broker, influx = start_mosquitto(tmp), start_influxd(tmp)
        proc = None
        try:
            ceiling, _ = raw_ceiling(influx.port, args.readings, args.seconds)
            emit("nodered", f"influx_raw_ceiling_{args.readings}r", ceiling, "points/s")
            db = InfluxClient(f"http://127.0.0.1:{influx.port}", "nodered")
            db.create_database()
            (tmp / "flows.json").write_text(json.dumps(flows(broker.port, influx.port, "nodered")))
            with (tmp / "node-red.log").open("wb") as log:
                # userDir = the npm directory: Node-RED finds contributed nodes in its user directory's node_modules
                proc = subprocess.Popen([str(binary), "--userDir", str(CACHE), "--port", str(free_port()),
                                         str(tmp / "flows.json")], stdout=log, stderr=subprocess.STDOUT)
            time.sleep(8.0)  # Node-RED started, flows deployed, subscribed
            pub = RawPublisher("127.0.0.1", broker.port, "bench-publisher")
            t0_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
            published = 0
            start = time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                dev = DEVICES[published % len(DEVICES)]
                pub.publish(telemetry_topic("bench", dev), payload("bench", dev, published, args.readings, t0_ms))
                published += 1
            pub.close()
            expected = published * args.readings
            stored, last_change, last_stored = 0, time.perf_counter(), -1
            while stored < expected and time.perf_counter() - last_change < 15.0:
                stored = int(db.query_scalar("SELECT count(value) FROM telemetry") or 0)
                if stored != last_stored:
                    last_change, last_stored = time.perf_counter(), stored
                time.sleep(0.5)
            elapsed = last_change - start
            emit("nodered", f"nodered_pipeline_{args.readings}r", stored / elapsed, "readings/s",
                 published=expected, stored=stored, seconds=args.seconds)
            emit("nodered", f"nodered_ratio_to_ceiling_{args.readings}r", stored / elapsed / ceiling, "ratio")
            emit("nodered", f"nodered_lost_readings_{args.readings}r", expected - stored, "readings")
        finally:
            if proc is not None:
                stop_pid(proc.pid, 15)
            if keep:
                shutil.copy(tmp / "node-red.log", keep)
            broker.stop()
            influx.stop()


if __name__ == "__main__":
    main()
