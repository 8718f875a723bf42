"""Ingest throughput against the raw InfluxDB write ceiling, measured in the same run on the same machine.

(a) ceiling: prebuilt bodies of ``telemetry`` lines (the exact shape ingest writes), 5000 per POST, one
    keep-alive session;
(b) pipeline: a paho publisher sends telemetry messages (QoS 1) -> mosquitto -> ``alumon ingest`` (its own
    process) -> influxd; readings/s = points stored / (last point stored - first publish);
(c) their ratio.

Prints one JSON line per figure. Usage: ``python bench/ingest_throughput.py [--seconds 60] [--readings 10]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import yaml
from figures import emit

from alumon.config import MqttConnection
from alumon.influx import InfluxClient
from alumon.mqtt import connect, make_client
from alumon.stack import start_influxd, start_mosquitto, stop_pid
from alumon.telemetry import Quality, Reading, TelemetryMessage, encode, telemetry_topic
from ingest.lines import message_lines

REPO = Path(__file__).resolve().parent.parent
DEVICES = [f"dev-{i:03d}" for i in range(100)]


def message(device: str, seq: int, readings: int, t0: datetime) -> TelemetryMessage:
    return TelemetryMessage(
        v=1, site="bench", device=device, seq=seq, ts=t0 + timedelta(milliseconds=seq * 1000),
        readings={f"q{j:02d}": Reading(value=1000.0 + seq + j / 10, quality=Quality.GOOD, unit="kWh")
                  for j in range(readings)})


def raw_ceiling(influx_port: int, readings: int, seconds: float) -> float:
    db = InfluxClient(f"http://127.0.0.1:{influx_port}", "ceiling")
    db.create_database()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    per_body = 5000 // readings
    bodies = []
    seq = 0
    for _ in range(40):
        lines = []
        for _ in range(per_body):
            lines += message_lines(message(DEVICES[seq % len(DEVICES)], seq, readings, t0))
            seq += 1
        bodies.append(("\n".join(lines) + "\n").encode())
    session = requests.Session()
    url = f"http://127.0.0.1:{influx_port}/write"
    points = 0
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds or i < len(bodies):
        body = bodies[i % len(bodies)]
        resp = session.post(url, params={"db": "ceiling", "precision": "ms"}, data=body)
        assert resp.status_code == 204, resp.text
        points += body.count(b"\n")
        i += 1
    return points / (time.perf_counter() - start)


def pipeline(tmp: Path, mqtt_port: int, influx_port: int, readings: int, seconds: float) -> tuple[float, int, int]:
    site = yaml.safe_load((REPO / "examples" / "guangxi-demo" / "site.yaml").read_text())
    site["site"]["id"] = "bench"
    site["connections"]["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
    site["connections"]["influxdb"] = {"url": f"http://127.0.0.1:{influx_port}", "database": "pipeline"}
    template = site["devices"][0]
    site["devices"] = [dict(template, id=d) for d in DEVICES]
    site["process_units"] = []
    site_file = tmp / "site.yaml"
    site_file.write_text(yaml.safe_dump(site, allow_unicode=True))
    log = (tmp / "ingest.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "alumon", "ingest", "--site", str(site_file)], stdout=log,
                            stderr=subprocess.STDOUT)
    db = InfluxClient(f"http://127.0.0.1:{influx_port}", "pipeline")
    try:
        time.sleep(2.0)  # ingest connected and subscribed
        conn = MqttConnection(host="127.0.0.1", port=mqtt_port)
        pub = make_client(conn, "bench-publisher")
        connect(pub, conn, persistent=False)
        pub.loop_start()
        while not pub.is_connected():
            time.sleep(0.01)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        published = 0
        stop = threading.Event()
        start = time.perf_counter()
        last_info = None
        while time.perf_counter() - start < seconds and not stop.is_set():
            dev = DEVICES[published % len(DEVICES)]
            last_info = pub.publish(telemetry_topic("bench", dev), encode(message(dev, published, readings, t0)),
                                    qos=1)
            published += 1
            if published % 2000 == 0:  # keep paho's outgoing queue bounded: wait for the broker to catch up
                last_info.wait_for_publish(timeout=60)
        if last_info is not None:
            last_info.wait_for_publish(timeout=120)
        expected = published * readings
        stored = 0
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:
            stored = int(db.query_scalar("SELECT count(seq) FROM telemetry") or 0)
            if stored >= expected:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        pub.loop_stop()
        return stored / elapsed, expected, stored
    finally:
        stop_pid(proc.pid, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--readings", type=int, default=10, help="readings per telemetry message")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = start_mosquitto(tmp)
        influx = start_influxd(tmp)
        try:
            ceiling = raw_ceiling(influx.port, args.readings, min(args.seconds, 20.0))
            emit("ingest", "influx_raw_ceiling", ceiling, "points/s", note="prebuilt telemetry bodies, 5000 lines/POST")
            rate, expected, stored = pipeline(tmp, broker.port, influx.port, args.readings, args.seconds)
            emit("ingest", "ingest_pipeline", rate, "readings/s", published=expected, stored=stored,
                 readings_per_message=args.readings, seconds=args.seconds)
            emit("ingest", "ingest_ratio_to_ceiling", rate / ceiling, "ratio", target=0.5)
        finally:
            broker.stop()
            influx.stop()


if __name__ == "__main__":
    main()
