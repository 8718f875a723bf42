"""`alumon influx init` against the real influxd: policies, continuous queries, idempotence, rollup values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alumon import schema
from alumon.influx import InfluxClient
from alumon.stack import Server
from ingest.setup import backfill, init_database
from tests.conftest import write_site


def test_init_is_idempotent_and_rolls_up(influxd: Server) -> None:
    client = InfluxClient(f"http://127.0.0.1:{influxd.port}", "init_test")
    first = init_database(client)
    assert "created database init_test" in first and len(first) == 6
    assert init_database(client) == []  # a second run changes nothing
    (rps,) = client.query('SHOW RETENTION POLICIES ON "init_test"')
    assert {r[0]: r[4] for r in rps["values"]}["raw"] is True  # the default: ingest writes there
    # Two minutes of 1 s readings of one series written to raw, then the rollups for that range.
    t0 = 1_795_500_000_000 - 1_795_500_000_000 % 3_600_000
    lines = [schema.line(schema.TELEMETRY, {"site": "gx-demo", "device": "d", "quantity": "q"},
                         {"value": float(i), "quality": "good", "seq": i}, t0 + i * 1000) for i in range(120)]
    client.write_lines(lines)
    backfill(client, t0, t0 + 3_600_000)
    (minutes,) = client.query('SELECT value, min, max, samples FROM "rollup_1m"."telemetry_1m"')
    # minute 0: values 0..59 -> mean 29.5, min 0, max 59, 60 samples; minute 1: 60..119 -> mean 89.5
    assert [row[1:] for row in minutes["values"]] == [[29.5, 0.0, 59.0, 60], [89.5, 60.0, 119.0, 60]]
    (hours,) = client.query('SELECT value, min, max, samples FROM "rollup_1h"."telemetry_1h"')
    assert [row[1:] for row in hours["values"]] == [[59.5, 0.0, 119.0, 120]]


def test_cli(tmp_path: Path, influxd: Server) -> None:
    site = write_site(tmp_path / "site.yaml", connections__influxdb={
        "url": f"http://127.0.0.1:{influxd.port}", "database": "init_cli"})
    run = [sys.executable, "-m", "alumon", "influx", "init", "--site", str(site)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "created continuous query cq_telemetry_1h" in first.stdout
    again = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to do" in again.stdout
