"""`alumon analytics` as a service against real mosquitto, influxd and SMTP: telemetry in, KPI points, one
alert incident with its email, retained MQTT state and `alerts` point out."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from alumon.config import load_site
from alumon.influx import InfluxClient
from alumon.stack import Server
from alumon.telemetry import Quality, Reading, TelemetryMessage, encode, telemetry_topic
from analytics.service import run_analytics
from tests.conftest import maildir_messages, mqtt_client, wired_site


def test_kpi_alert_and_email_from_live_telemetry(tmp_path: Path, mosquitto: Server, influxd: Server,
                                                 smtp_sink: Server, influx_db: InfluxClient) -> None:
    site = load_site(wired_site(
        tmp_path / "site.yaml", mosquitto, influxd, smtp_sink, influx_db.database,
        analytics={"kpi_window_s": 10, "evaluate_every_s": 1, "min_completeness": 0.5, "alert_pending_s": 2}))
    pub = mqtt_client(mosquitto.port, "analytics-test-pub")
    alerts: list[dict[str, object]] = []
    watcher = mqtt_client(mosquitto.port, "analytics-test-watch")
    # Only alerts published while we listen: retained ones left by other tests on the shared broker are old.
    watcher.on_message = lambda _c, _u, m: None if m.retain or not m.payload else alerts.append(json.loads(m.payload))
    watcher.subscribe("alumon/v1/gx-demo/alerts/#", qos=1)
    time.sleep(1.0)
    counters = {"energy": 5_000_000.0, "metal": 100.0, "seq": 0}

    def run_for(seconds: int) -> None:
        """The analytics service running while potline 1 sends 14 000 kWh/t: 518 kWh and 0.037 t a second."""
        stop = threading.Event()
        service = threading.Thread(target=run_analytics, args=(site, stop, tmp_path / "state"), daemon=True)
        service.start()
        try:
            for _ in range(seconds):
                now = datetime.now(UTC)
                for device, quantity, key in (("pl1-ac-meter", "forward_active_kwh", "energy"),
                                              ("pl1-scale", "metal_tapped_t", "metal")):
                    msg = TelemetryMessage(v=1, site="gx-demo", device=device, seq=int(counters["seq"]), ts=now,
                                           readings={quantity: Reading(value=counters[key], quality=Quality.GOOD)})
                    pub.publish(telemetry_topic("gx-demo", device), encode(msg), qos=1)
                counters["energy"] += 518.0
                counters["metal"] += 0.037
                counters["seq"] += 1
                time.sleep(1.0)
            time.sleep(1.5)
        finally:
            stop.set()
            service.join(timeout=15)

    run_for(20)
    rows = influx_db.query("SELECT value, completeness, level FROM kpi WHERE kpi='al_liquid_ac' "
                           "AND unit_process='potline-1'")
    values = [v[1] for v in rows[0]["values"]]
    # 518 / 0.037 = 14 000 kWh/t exactly (float counters in the message: no register rounding)
    assert len(values) >= 10 and all(abs(v - 14_000) < 1.0 for v in values), values
    assert all(v[3] == "above_level3" for v in rows[0]["values"])
    firing = [a for a in alerts if a["rule"] == "energy_above_level3" and a["state"] == "firing"]
    assert len({a["id"] for a in firing}) == 1  # one incident, however many evaluations stayed above
    (incident,) = {str(a["id"]) for a in firing}
    assert json.loads((tmp_path / "state" / "episodes.json").read_text())  # the open episode is on disk

    # Restarted mid-incident (the data still above level 3): the same incident goes on, nothing fires again.
    run_for(8)
    assert {str(a["id"]) for a in alerts if a["rule"] == "energy_above_level3"} == {incident}
    assert len([a for a in alerts if a["rule"] == "energy_above_level3"]) == len(firing)
    pub.loop_stop()
    watcher.loop_stop()

    mails = [m for m in maildir_messages(smtp_sink) if incident in str(m["X-Alumon-Incident"])]
    # One notice of the incident to each of the two engineers and the regulator, across the restart. Notices
    # are grouped for 5 s: the engineers' email also carries the benchmark warning that fired with it.
    assert sorted(str(m["To"]) for m in mails) == [
        "energy-team@gx-demo.example", "env-team@gx-demo.example", "monitoring@hbj.gx.example"]
    (regulator,) = [m for m in mails if m["To"] == "monitoring@hbj.gx.example"]
    assert "13350" in str(regulator["Subject"]) and str(regulator["X-Alumon-Incident"]) == incident
    points = influx_db.query("SELECT incident, state FROM alerts WHERE rule='energy_above_level3'")
    assert [p[2] for p in points[0]["values"]] == ["firing"]


def test_monthly_compliance_survives_restart(site_file: Path, influx_db: InfluxClient) -> None:
    from analytics.kpi_row import KpiRow
    from analytics.service import AnalyticsService

    site = load_site(site_file)
    month_start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    hour_ms = 3_600_000
    rows = [KpiRow(month_start + i * hour_ms, "calciner-stack", "so2_hourly", "hour", 40.0 if i < 2 else 20.0,
                   "mg/m3", 1.0, "", "src", extra=(("valid", True), ("flag", "N"), ("exceeded", i < 2),
                                                   ("valid_minutes", 60))) for i in range(10)]
    influx_db.write_lines([r.to_line("gx-demo") for r in rows])
    service = AnalyticsService(site, threading.Event(), site_file.parent / "state")
    assert service.rebuild_monthly(month_start + 20 * hour_ms) == 10
    (current,) = service.monthly.month_to_date()
    extra = dict(current.extra)
    # 10 valid hours, 2 above the limit: 8 / 10 = 80 % < 95 % -> not compliant
    assert (current.value, extra["valid_hours"], extra["exceedance_hours"], extra["met"]) == (0.8, 10, 2, False)
