"""Alert sinks against a real SMTP server, mosquitto and influxd: routing by audience, content a regulator
needs, retained MQTT state, InfluxDB annotation points, and no loss while SMTP is down."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from alumon.alert import Alert, AlertState, Audience, Severity
from alumon.config import load_site
from alumon.influx import InfluxClient
from alumon.stack import Server, start_smtp_sink
from analytics.notify import Notifier
from analytics.state import Outbox
from tests.conftest import maildir_messages, mqtt_client, write_site

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def alert(state: AlertState, rule: str = "energy_above_level3", audience: Audience = Audience.BOTH) -> Alert:
    end = START + timedelta(minutes=12)
    return Alert(id=f"gx-demo-{rule}-potline-1-20261124T080000Z", site="gx-demo", rule=rule,
                 unit_process="potline-1", severity=Severity.CRITICAL, audience=audience, state=state,
                 kpi="al_liquid_ac", value=13612.4, unit="kWh/t", limit=13350, limit_name="GB 21346-2022 level 3",
                 limit_source="GB 21346-2022 §4.1 Table 1 (2022), to_verify", window="rolling_60s",
                 first_seen=START, last_seen=end, resolved_at=end if state is AlertState.RESOLVED else None,
                 summary="potline-1 above level 3")


def parse(msg: object) -> EmailMessage:
    raw = bytes(msg)  # type: ignore[call-overload]
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_firing_and_resolved_reach_every_sink(site_file: Path, mosquitto: Server, smtp_sink: Server,
                                              influx_db: InfluxClient) -> None:
    site = load_site(site_file)
    pub = mqtt_client(mosquitto.port)
    notifier = Notifier(site.config, pub, influx_db, Outbox(site_file.parent / "outbox"))
    notifier.dispatch(alert(AlertState.FIRING))
    notifier.dispatch(alert(AlertState.RESOLVED))
    notifier.dispatch(alert(AlertState.FIRING, rule="energy_above_benchmark", audience=Audience.ENGINEERS))
    assert notifier.emails_sent == 3
    mails = [parse(m) for m in maildir_messages(smtp_sink)]
    assert len(mails) == 3
    both = [m for m in mails if "monitoring@hbj.gx.example" in m["To"]]
    assert len(both) == 2  # regulators get the level-3 firing and resolution, not the engineers-only warning
    firing = next(m for m in both if "告警" in m["Subject"])
    assert "[alumon][严重]" in firing["Subject"] and "13612" in firing["Subject"] and "13350" in firing["Subject"]
    text = firing.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    for needle in ("91450500MA5DEMO01P001V", "GB 21346-2022 §4.1 Table 1", "to_verify", "13612.40 kWh/t",
                   "rolling_60s", "2026-11-24 08:00:00", "gx-demo-energy_above_level3-potline-1-20261124T080000Z"):
        assert needle in body, needle
    assert firing.get_body(("html",)) is not None

    # A late subscriber sees the retained state of each alert.
    seen: list[dict[str, object]] = []
    late = mqtt_client(mosquitto.port)
    late.on_message = lambda _c, _u, m: seen.append(json.loads(m.payload))
    late.subscribe("alumon/v1/gx-demo/alerts/#", qos=1)
    time.sleep(1)
    states = {(s["rule"], s["state"]) for s in seen}
    assert ("energy_above_level3", "resolved") in states and ("energy_above_benchmark", "firing") in states
    rows = influx_db.query("SELECT incident, state, start_ms, end_ms FROM alerts")
    assert len(rows[0]["values"]) == 3
    pub.loop_stop()
    late.loop_stop()


def test_smtp_down_then_delivered_exactly_once(tmp_path: Path, mosquitto: Server, influx_db: InfluxClient) -> None:
    sink = start_smtp_sink(tmp_path / "smtp")
    port = sink.port
    sink.stop()  # SMTP is down when the alert fires
    site = load_site(write_site(tmp_path / "site.yaml", connections__smtp={
        "host": "127.0.0.1", "port": port, "security": "none", "sender": "alumon@gx-demo.example"}))
    pub = mqtt_client(mosquitto.port)
    outbox = tmp_path / "outbox"
    notifier = Notifier(site.config, pub, influx_db, Outbox(outbox))
    notifier.dispatch(alert(AlertState.FIRING))
    notifier.flush()
    assert notifier.emails_sent == 0
    assert len(list(outbox.glob("*.eml"))) == 1  # queued on disk
    # analytics restarts while SMTP is still down: a new notifier finds the queued email
    restarted = Notifier(site.config, pub, influx_db, Outbox(outbox))
    sink = start_smtp_sink(tmp_path / "smtp", port=port)
    try:
        restarted.flush()
        restarted.flush()
        assert restarted.emails_sent == 1
        (mail,) = maildir_messages(sink)
        assert "gx-demo-energy_above_level3-potline-1-20261124T080000Z.firing@alumon" in str(mail["Message-ID"])
        assert list(outbox.glob("*.eml")) == []
    finally:
        sink.stop()
        pub.loop_stop()
