"""Ingest throughput against the raw InfluxDB write ceiling, measured in the same run on the same machine.

(a) ceiling: prebuilt bodies of distinct ``telemetry`` points (the exact line shape ingest writes, every point
    new as in a live stream), 5000 per POST, one keep-alive session, checked stored;
(b) pipeline: bench/mqtt_load.py's publisher sends telemetry messages (QoS 1) -> mosquitto -> ``alumon ingest`` (its own
    process) -> influxd; readings/s = points stored / (last point stored - first publish);
(c) their ratio, and each process's CPU share during (b).

Both for 10 readings per message (the example site's largest devices) and 100 (the edge benchmark's shape).
Prints one JSON line per figure. Usage: ``python bench/ingest_throughput.py [--seconds 60] [--readings 10 100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import requests
import yaml
from figures import cpu_seconds, emit
from mqtt_load import RawPublisher, payload

from alumon.config import MqttConnection
from alumon.influx import InfluxClient
from alumon.mqtt import connect, make_client
from alumon.stack import start_influxd, start_mosquitto, stop_pid
from alumon.telemetry import Quality, Reading, TelemetryMessage, decode, metrics_topic, telemetry_topic
from ingest.lines import message_lines

REPO = Path(__file__).resolve().parent.parent
DEVICES = [f"dev-{i:03d}" for i in range(100)]
BACKLOG_POINTS = 400_000  # published but not yet stored, at most (about 2-5 s of the pipeline)


def message(device: str, seq: int, readings: int, t0: datetime) -> TelemetryMessage:
    return TelemetryMessage(
        v=1, site="bench", device=device, seq=seq, ts=t0 + timedelta(milliseconds=seq * 1000),
        readings={f"q{j:02d}": Reading(value=1000.0 + seq + j / 10, quality=Quality.GOOD, unit="kWh")
                  for j in range(readings)})


def ceiling_bodies(readings: int, points: int, t0: datetime) -> list[bytes]:
    """Bodies of 5000 distinct ``telemetry`` points (new series or timestamps, as a live stream writes them),
    built with string formatting for speed and checked against ``message_lines`` for the exact line shape."""
    t0_ms = int(t0.timestamp() * 1000)

    def lines_of(seq: int) -> list[str]:
        device, ts = DEVICES[seq % len(DEVICES)], t0_ms + seq * 1000
        return [f'telemetry,device={device},quantity=q{j:02d},site=bench value={1000.0 + seq + j / 10!r},'
                f'quality="good",seq={seq}i,unit="kWh",historical=false {ts}' for j in range(readings)]

    assert lines_of(7) == message_lines(message(DEVICES[7], 7, readings, t0))
    per_body = 5000 // readings
    return [("\n".join(ln for seq in range(b * per_body, (b + 1) * per_body) for ln in lines_of(seq)) + "\n").encode()
            for b in range(points // (per_body * readings))]


def raw_ceiling(influx_port: int, readings: int, seconds: float) -> tuple[float, int]:
    """Points/s InfluxDB stores from prebuilt bodies posted back to back over one keep-alive session, for
    ``seconds`` (as long as the pipeline runs, so both write a like volume). Every point is new: the bodies
    (10 s worth at up to 300 000 points/s) go to a fresh database each round. Returns (points/s, points)."""
    bodies = ceiling_bodies(readings, 3_000_000, datetime(2026, 1, 1, tzinfo=UTC))
    session = requests.Session()
    url = f"http://127.0.0.1:{influx_port}/write"
    points, databases = 0, list[InfluxClient]()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        databases.append(InfluxClient(f"http://127.0.0.1:{influx_port}", f"ceiling_{readings}_{len(databases)}"))
        databases[-1].create_database()
        for body in bodies:
            resp = session.post(url, params={"db": databases[-1].database, "precision": "ms"}, data=body)
            assert resp.status_code == 204, resp.text
            points += body.count(b"\n")
            if time.perf_counter() - start >= seconds:
                break
    rate = points / (time.perf_counter() - start)
    stored = sum(int(db.query_scalar("SELECT count(seq) FROM telemetry") or 0) for db in databases)
    assert stored == points, (stored, points)  # the ceiling counts only what was really stored
    return rate, points


def pipeline(tmp: Path, mqtt_port: int, influx_port: int, readings: int, seconds: float,
             cpu: dict[str, float], others: dict[str, int]) -> tuple[float, int, int]:
    """Readings/s from the first publish until the last point is stored; ``cpu`` receives each process's
    share of one core over that time (ingest, and the ``others`` by name: broker, database, this publisher)."""
    site = yaml.safe_load((REPO / "examples" / "guangxi-demo" / "site.yaml").read_text())
    site["site"]["id"] = "bench"
    site["connections"]["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
    database = f"pipeline_{readings}"
    site["connections"]["influxdb"] = {"url": f"http://127.0.0.1:{influx_port}", "database": database}
    template = site["devices"][0]
    site["devices"] = [dict(template, id=d) for d in DEVICES]
    site["process_units"] = []
    site["ingest"] = {"metrics_interval_s": 0.5}  # the publisher paces itself on ingest's written_points
    site_file = tmp / "site.yaml"
    site_file.write_text(yaml.safe_dump(site, allow_unicode=True))
    log = (tmp / "ingest.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "alumon", "ingest", "--site", str(site_file), "--worker", "bench",
                             "--buffer-dir", str(tmp / "ingest-buffer")], stdout=log, stderr=subprocess.STDOUT)
    db = InfluxClient(f"http://127.0.0.1:{influx_port}", database)
    try:
        time.sleep(2.0)  # ingest connected and subscribed
        conn = MqttConnection(host="127.0.0.1", port=mqtt_port)
        watcher = make_client(conn, "bench-watcher")  # ingest's own count, from its metrics topic
        written = [0]

        def on_metrics(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
            written[0] = int(json.loads(msg.payload)["written_points"])

        watcher.on_message = on_metrics
        connect(watcher, conn, persistent=False)
        watcher.loop_start()
        while not watcher.is_connected():
            time.sleep(0.01)
        watcher.subscribe(metrics_topic("bench", "ingest-bench"), qos=0)
        pub = RawPublisher("127.0.0.1", mqtt_port, "bench-publisher")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        t0_ms = int(t0.timestamp() * 1000)
        assert decode(payload("bench", DEVICES[0], 7, readings, t0_ms)) == message(DEVICES[0], 7, readings, t0)
        published = 0
        throttled = 0.0  # seconds the publisher waited for the pipeline: near 0 means the publisher is the limit
        pids = {"ingest": proc.pid, **others, "publisher": os.getpid()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            dev = DEVICES[published % len(DEVICES)]
            pub.publish(telemetry_topic("bench", dev), payload("bench", dev, published, readings, t0_ms))
            published += 1
            if published % (BACKLOG_POINTS // readings // 4) == 0:
                # Sustained rate, not the drain of a backlog: hold on while more than BACKLOG_POINTS published
                # readings are not in InfluxDB yet (otherwise the broker queues minutes of data at 100 readings
                # per message and the figure measures how fast a backlog drains).
                while published * readings - written[0] > BACKLOG_POINTS and time.perf_counter() - start < seconds:
                    time.sleep(0.05)
                    throttled += 0.05
        assert pub.wait_acked(), "the broker did not acknowledge every publish"
        expected = published * readings
        stored = 0
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:
            stored = int(db.query_scalar("SELECT count(seq) FROM telemetry") or 0)
            if stored >= expected:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        cpu.update({name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()})
        pub.close()
        watcher.loop_stop()
        cpu["publisher_waited_s"] = throttled
        return stored / elapsed, expected, stored
    finally:
        stop_pid(proc.pid, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--readings", type=int, nargs="+", default=[10, 100],
                        help="readings per telemetry message, one pipeline run each (10: the example site's "
                             "largest devices; 100: the edge benchmark's 10 000 tags on 100 devices)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = start_mosquitto(tmp)
        try:
            for readings in args.readings:  # the ceiling of each line shape (series count), then its pipeline
                # Each on an influxd of its own, started empty: the pipeline must not pay for compacting the
                # ceiling's millions of points, nor the ceiling for the pipeline's.
                influx = start_influxd(tmp / f"influx-ceiling-{readings}")
                try:
                    ceiling, points = raw_ceiling(influx.port, readings, args.seconds)
                finally:
                    influx.stop()
                emit("ingest", f"influx_raw_ceiling_{readings}r", ceiling, "points/s", readings_per_message=readings,
                     points=points, note="prebuilt bodies of distinct telemetry points, 5000 lines/POST")
                run_dir = tmp / f"pipeline-{readings}"
                run_dir.mkdir()
                cpu: dict[str, float] = {}
                influx = start_influxd(tmp / f"influx-pipeline-{readings}")
                try:
                    rate, expected, stored = pipeline(run_dir, broker.port, influx.port, readings, args.seconds,
                                                      cpu, {"mosquitto": broker.pid, "influxd": influx.pid})
                finally:
                    influx.stop()
                shape = {"readings_per_message": readings}
                emit("ingest", f"ingest_pipeline_{readings}r", rate, "readings/s", published=expected, stored=stored,
                     seconds=args.seconds, **shape)
                emit("ingest", f"ingest_ratio_to_ceiling_{readings}r", rate / ceiling, "ratio", target=0.5, **shape)
                waited = cpu.pop("publisher_waited_s")
                for name, share in cpu.items():  # where the two cores went during the pipeline run
                    emit("ingest", f"cpu_{name}_{readings}r", share, "cores", **shape)
                emit("ingest", f"publisher_waited_{readings}r", waited, "s", **shape,
                     note="time the publisher held back for the pipeline; near 0: the publisher was the limit")
        finally:
            broker.stop()

if __name__ == "__main__":
    main()
