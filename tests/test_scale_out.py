"""Scale-out on the engines a plant already runs: two ingest workers sharing the stream (``$share``) and two
analytics processes (one per site) against one broker store the same readings and raise the same alerts as one
ingest and one analytics process serving both sites (``--site A --site B``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alumon.demo import wait_for_clients
from alumon.influx import InfluxClient
from alumon.stack import Server
from alumon.telemetry import Quality, Reading, TelemetryMessage, encode, telemetry_topic
from tests.conftest import mqtt_client, write_site

SITES = ("gx-demo", "gx-demo-b")
SECONDS = 18  # of live telemetry per run: level 3 fires and resolves within it


def site_files(tmp: Path, mosquitto: Server, influxd: Server, smtp_sink: Server, database: str,
               shared_group: str | None) -> list[Path]:
    return [write_site(
        tmp / f"{site}-{database}.yaml", site__id=site,
        connections__mqtt={"host": "127.0.0.1", "port": mosquitto.port},
        connections__influxdb={"url": f"http://127.0.0.1:{influxd.port}", "database": database},
        connections__smtp={"host": "127.0.0.1", "port": smtp_sink.port, "security": "none",
                           "sender": "alumon@gx-demo.example"},
        analytics={"kpi_window_s": 6, "evaluate_every_s": 1, "min_completeness": 0.5, "alert_pending_s": 2},
        # Only potline 1 sends: the other units' silence is not what this test is about.
        alerts={"engineers": ["energy@gx-demo.example"], "group_interval_s": 0, "rules": [
            {"name": "energy_above_level3", "resolve_after_s": 0},
            {"name": "energy_above_benchmark", "resolve_after_s": 0},
            {"name": "source_stale", "enabled": False}, {"name": "analyser_fault", "enabled": False}]},
        ingest={"shared_group": shared_group} if shared_group else {}) for site in SITES]


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "alumon", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def publish_both_sites(port: int) -> int:
    """Potline 1 of each site: 14 000 kWh/t for 10 s, then 12 000; one message per meter a second."""
    pub = mqtt_client(port, f"scale-out-pub-{time.monotonic_ns()}")
    energy, metal, sent = 5_000_000.0, 100.0, 0
    try:
        for seq in range(SECONDS):
            now = datetime.now(UTC)
            for site in SITES:
                for device, quantity, value in (("pl1-ac-meter", "forward_active_kwh", energy),
                                                ("pl1-scale", "metal_tapped_t", metal)):
                    msg = TelemetryMessage(v=1, site=site, device=device, seq=seq, ts=now,
                                           readings={quantity: Reading(value=value, quality=Quality.GOOD)})
                    pub.publish(telemetry_topic(site, device), encode(msg), qos=1).wait_for_publish(5)
                    sent += 1
            energy += 518.0 if seq < 10 else 444.0
            metal += 0.037
            time.sleep(1.0)
    finally:
        pub.loop_stop()
    return sent


def run(tmp: Path, mosquitto: Server, commands: list[list[str]], client_ids: list[str]) -> int:
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    paths = [logs / f"{i}-{cmd[0]}.log" for i, cmd in enumerate(commands)]
    procs = [start(cmd, path) for cmd, path in zip(commands, paths, strict=True)]
    try:
        wait_for_clients(Path(mosquitto.run_dir) / "mosquitto.log", client_ids)
        time.sleep(1)
        sent = publish_both_sites(mosquitto.port)
        time.sleep(4)  # the last writes and evaluations
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p, path in zip(procs, paths, strict=True):
            assert p.wait(timeout=30) == 0, path.read_text()[-2000:]
    return sent


def content(db: InfluxClient) -> dict[str, Any]:
    readings = sorted((s["tags"]["site"], s["tags"]["device"], v[1], v[2]) for s in db.query(
        "SELECT seq, value FROM telemetry GROUP BY site, device") for v in s["values"])
    alerts = {(s["tags"]["site"], s["tags"]["rule"], s["tags"]["unit_process"]): [v[1] for v in s["values"]]
              for s in db.query("SELECT state FROM alerts GROUP BY site, rule, unit_process")}
    # The live kWh/t of each site's potline 1 (period rows depend on how long each process ran: not compared).
    kpi_series = {(s["tags"]["site"], s["tags"]["unit_process"], s["tags"]["kpi"]) for s in db.query(
        "SELECT count(value) FROM kpi WHERE kpi='al_liquid_ac' AND \"window\"='rolling_6s' "
        "GROUP BY site, unit_process, kpi")}
    return {"readings": readings, "alerts": alerts, "kpi_series": kpi_series}


def test_two_ingest_and_two_analytics_equal_one_of_each(tmp_path: Path, mosquitto: Server, influxd: Server,
                                                        smtp_sink: Server) -> None:
    base_url = f"http://127.0.0.1:{influxd.port}"
    results = {}
    for layout in ("one-of-each", "two-of-each"):
        db = f"scale_{layout.replace('-', '_')}_{os.getpid()}"
        InfluxClient(base_url, db).create_database()
        sites = site_files(tmp_path, mosquitto, influxd, smtp_sink, db,
                           None if layout == "one-of-each" else f"ingest{os.getpid()}")
        both = [arg for f in sites for arg in ("--site", str(f))]
        run_dir = tmp_path / layout
        if layout == "one-of-each":
            commands = [["ingest", *both, "--worker", "solo", "--buffer-dir", str(run_dir / "buffer")],
                        ["analytics", *both, "--state-dir", str(run_dir / "state")]]
            ids = [f"alumon-ingest-{s}-solo" for s in SITES] + [f"alumon-analytics-{s}" for s in SITES]
        else:
            commands = [["ingest", *both, "--worker", w, "--buffer-dir", str(run_dir / f"buffer-{w}")]
                        for w in ("w1", "w2")]
            commands += [["analytics", "--site", str(f), "--state-dir", str(run_dir / f"state-{i}")]
                         for i, f in enumerate(sites)]
            ids = [f"alumon-ingest-{s}-{w}" for s in SITES for w in ("w1", "w2")]
            ids += [f"alumon-analytics-{s}" for s in SITES]
        sent = run(run_dir, mosquitto, commands, ids)
        results[layout] = content(InfluxClient(base_url, db))
        assert len(results[layout]["readings"]) == sent == 2 * 2 * SECONDS  # every reading once
    one, two = results["one-of-each"], results["two-of-each"]
    assert one["readings"] == two["readings"]
    assert one["alerts"] == two["alerts"]
    for site in SITES:  # the drift fired and resolved level 3 on each site, in both layouts
        assert one["alerts"][(site, "energy_above_level3", "potline-1")] == ["firing", "resolved"]
    assert one["kpi_series"] == two["kpi_series"] == {(site, "potline-1", "al_liquid_ac") for site in SITES}
    # The two workers really shared the stream: each wrote part of it, together all of it once.
    logs = tmp_path / "two-of-each" / "logs"
    written = [sum(int(n) for n in re.findall(r"stopped: .*?'written_points': (\d+)", (logs / log).read_text()))
               for log in ("0-ingest.log", "1-ingest.log")]
    assert all(n > 0 for n in written) and sum(written) == 2 * 2 * SECONDS, written
