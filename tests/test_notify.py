"""Alert sinks against a real SMTP server, mosquitto and influxd: routing by audience, severity and language,
grouping, the content a regulator needs with its evidence attached, retained MQTT state cleared on resolve,
InfluxDB annotation points, the audit log, and no loss or duplicate while SMTP is down."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from alumon.alert import Alert, AlertState, Audience, Severity
from alumon.config import load_site
from alumon.demo import notices_per_incident, read_emails
from alumon.influx import InfluxClient
from alumon.stack import Server, start_smtp_sink
from analytics.audit import verify
from analytics.evidence import EvidenceLog
from analytics.kpi_row import KpiRow
from analytics.notify import Notifier
from tests.conftest import REPO, maildir_messages, mqtt_client, write_site

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
REGULATOR = "monitoring@hbj.gx.example"


def alert(state: AlertState, rule: str = "energy_above_level3", audience: Audience = Audience.BOTH,
          severity: Severity = Severity.CRITICAL) -> Alert:
    end = START + timedelta(minutes=12)
    return Alert(id=f"gx-demo-{rule}-potline-1-20261124T080000Z", site="gx-demo", rule=rule,
                 unit_process="potline-1", severity=severity, audience=audience, state=state,
                 kpi="al_liquid_ac", value=13612.4, unit="kWh/t", limit=13350, limit_name="GB 21346-2022 level 3",
                 limit_source="GB 21346-2022 §4.1 Table 1 (2022), to_verify", window="rolling_60s",
                 first_seen=START, last_seen=end, resolved_at=end if state is AlertState.RESOLVED else None,
                 summary="potline-1 above level 3", description_zh="铝液交流电耗超过 GB 21346-2022 3级限额",
                 description_en="aluminium-liquid AC energy above GB 21346-2022 level 3", completeness=0.98)


def evidence() -> EvidenceLog:
    """Three hours of the KPI around the event: 13 000 before 08:00, 13 612 after."""
    log = EvidenceLog(hours=6)
    for i in range(0, 180):
        t = START + timedelta(minutes=i - 120)
        log.add([KpiRow(int(t.timestamp() * 1000), "potline-1", "al_liquid_ac", "rolling_60s",
                        13000.0 if t < START else 13612.4, "kWh/t", 1.0, "", "src")])
    return log


def parse(msg: object) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(bytes(msg))  # type: ignore[call-overload]
    assert isinstance(parsed, EmailMessage)
    return parsed


def by_recipient(server: Server) -> dict[str, list[EmailMessage]]:
    out: dict[str, list[EmailMessage]] = {}
    for m in maildir_messages(server):
        mail = parse(m)
        out.setdefault(str(mail["To"]), []).append(mail)
    return out


def test_firing_and_resolved_reach_every_sink(site_file: Path, mosquitto: Server, smtp_sink: Server,
                                              influx_db: InfluxClient, tmp_path: Path) -> None:
    site = load_site(site_file)  # group_interval_s 5 in the example site: the digest test is below
    pub = mqtt_client(mosquitto.port)
    seen: list[tuple[str, bytes, bool]] = []
    watcher = mqtt_client(mosquitto.port)
    # Live messages only: the broker is shared by the session, other tests leave retained alerts behind.
    watcher.on_message = lambda _c, _u, m: None if m.retain else seen.append((m.topic, bytes(m.payload), False))
    watcher.subscribe("alumon/v1/gx-demo/alerts/#", qos=1)
    time.sleep(0.5)
    notifier = Notifier.in_dir(site.config.model_copy(update={"alerts": site.config.alerts.model_copy(
        update={"group_interval_s": 0})}), pub, influx_db, tmp_path / "state", evidence())
    notifier.dispatch(alert(AlertState.FIRING))
    notifier.dispatch(alert(AlertState.RESOLVED))
    notifier.dispatch(alert(AlertState.FIRING, rule="energy_above_benchmark", audience=Audience.ENGINEERS,
                            severity=Severity.WARNING))
    mails = by_recipient(smtp_sink)
    # Regulators get the level-3 firing and resolution, not the engineers-only warning; each engineer gets 3.
    assert {k: len(v) for k, v in mails.items()} == {
        "energy-team@gx-demo.example": 3, "env-team@gx-demo.example": 3, REGULATOR: 2}
    assert notifier.emails_sent == 8
    firing = next(m for m in mails[REGULATOR] if "告警" in str(m["Subject"]))
    assert str(firing["Subject"]).startswith("[alumon][严重][告警] 一电解系列 Potline 1: 铝液交流电耗超过")
    text = firing.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    for needle in ("排污许可证编号：91450500MA5DEMO01P001V", "GB 21346-2022 §4.1 Table 1", "to_verify",
                   "13612.40 kWh/t", "数据完整率 98%", "rolling_60s",
                   "2026-11-24 16:00:00 Asia/Shanghai (2026-11-24 08:00:00 UTC)",
                   "gx-demo-energy_above_level3-potline-1-20261124T080000Z"):
        assert needle in body, needle
    assert firing.get_body(("html",)) is not None
    # The engineer who asked for English gets English, and no permit id (that is for regulators).
    english = next(m for m in mails["env-team@gx-demo.example"] if "[firing]" in str(m["Subject"])
                   and "level 3" in str(m["Subject"]))
    english_text = english.get_body(("plain",))
    assert english_text is not None and "Process unit   一电解系列 Potline 1 (potline-1)" in english_text.get_content()
    assert "permit" not in english_text.get_content()

    # Evidence: a PNG of the series and the CSV it was drawn from.
    files = {p.get_filename(): p for p in firing.iter_attachments()}
    assert set(files) == {"1-energy_above_level3-potline-1.png", "1-energy_above_level3-potline-1.csv"}
    csv_text = files["1-energy_above_level3-potline-1.csv"].get_content()
    assert csv_text.splitlines()[0] == "time_utc,value,unit,completeness,limit" and len(csv_text.splitlines()) == 181
    png = matplotlib.image.imread(io.BytesIO(files["1-energy_above_level3-potline-1.png"].get_content()))
    assert png.shape[:2] == (360, 800)
    line_blue = np.all(np.abs(png[:, :, :3] - np.array([0x1F, 0x5F, 0xA8]) / 255) < 0.03, axis=2)
    assert line_blue.sum() > 500  # the series is drawn

    # MQTT: the retained message of a resolved alert is cleared; the active warning stays retained.
    time.sleep(0.5)
    level3 = [(p, r) for t, p, r in seen if t.endswith("/energy_above_level3/potline-1/al_liquid_ac")]
    assert [json.loads(p)["state"] if p else "" for p, _ in level3] == ["firing", "resolved", ""]
    late: list[tuple[str, bytes]] = []
    late_client = mqtt_client(mosquitto.port)
    late_client.on_message = lambda _c, _u, m: late.append((m.topic, bytes(m.payload)))
    late_client.subscribe("alumon/v1/gx-demo/alerts/#", qos=1)
    time.sleep(1)
    retained = {t.split("/alerts/")[1]: p for t, p in late}
    assert "energy_above_level3/potline-1/al_liquid_ac" not in retained  # cleared on resolve
    assert json.loads(retained["energy_above_benchmark/potline-1/al_liquid_ac"])["state"] == "firing"
    rows = influx_db.query("SELECT incident, state, start_ms, end_ms FROM alerts")
    assert len(rows[0]["values"]) == 3

    # Audit: three state changes and eight notifications, chained.
    records = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("state") == 3
    assert [r["event"] for r in records].count("notification") == 8
    assert verify(tmp_path / "state" / "audit.jsonl") == (11, [])
    for c in (pub, watcher, late_client):
        c.loop_stop()


def test_notices_within_the_group_interval_are_one_email(site_file: Path, mosquitto: Server, smtp_sink: Server,
                                                          influx_db: InfluxClient, tmp_path: Path) -> None:
    site = load_site(site_file)
    pub = mqtt_client(mosquitto.port)
    notifier = Notifier.in_dir(site.config, pub, influx_db, tmp_path / "state", evidence())
    notifier.dispatch(alert(AlertState.FIRING))
    notifier.dispatch(alert(AlertState.FIRING, rule="energy_above_benchmark", severity=Severity.WARNING))
    assert maildir_messages(smtp_sink) == []  # waiting for the 5 s group interval
    time.sleep(5.2)
    notifier.flush()
    mails = by_recipient(smtp_sink)
    assert {k: len(v) for k, v in mails.items()} == {
        "energy-team@gx-demo.example": 1, "env-team@gx-demo.example": 1, REGULATOR: 1}
    digest = mails[REGULATOR][0]
    assert str(digest["Subject"]) == "[alumon][严重] 广西示范铝业 Guangxi Demo Aluminium: 2 条告警通知"
    assert len(str(digest["X-Alumon-Incident"]).split(", ")) == 2
    assert len(list(digest.iter_attachments())) == 4  # a chart and a CSV per notice
    pub.loop_stop()


def test_smtp_down_60s_then_delivered_exactly_once(tmp_path: Path, mosquitto: Server, influx_db: InfluxClient,
                                                   request: pytest.FixtureRequest) -> None:
    """SMTP down while an incident fires: 60 s with --long, 15 s in the default run (CI's time budget)."""
    outage_s = 60 if request.config.getoption("--long") else 15
    sink = start_smtp_sink(tmp_path / "smtp")
    port = sink.port
    sink.stop()  # SMTP is down when the alert fires
    site = load_site(write_site(tmp_path / "site.yaml", connections__smtp={
        "host": "127.0.0.1", "port": port, "security": "none", "sender": "alumon@gx-demo.example"},
        alerts={"regulators": [REGULATOR], "group_interval_s": 0}))
    pub = mqtt_client(mosquitto.port)
    state = tmp_path / "state"
    notifier = Notifier.in_dir(site.config, pub, influx_db, state)
    notifier.dispatch(alert(AlertState.FIRING))
    down_until = time.monotonic() + outage_s
    while time.monotonic() < down_until:  # analytics retries every evaluation tick
        notifier.flush()
        time.sleep(2)
    assert notifier.emails_sent == 0
    assert len(list((state / "outbox").glob("*.eml"))) == 1  # queued on disk
    # analytics restarts while SMTP is still down: a new notifier finds the queued email
    restarted = Notifier.in_dir(site.config, pub, influx_db, state)
    sink = start_smtp_sink(tmp_path / "smtp", port=port)
    try:
        restarted.flush()
        restarted.flush()
        assert restarted.emails_sent == 1
        (mail,) = maildir_messages(sink)
        assert str(mail["Message-ID"]).startswith("<gx-demo-energy_above_level3-potline-1-20261124T080000Z.firing.")
        assert list((state / "outbox").glob("*.eml")) == []
        # A crash after SMTP accepted but before the file was removed: the audit log knows it was sent.
        again = Notifier.in_dir(site.config, pub, influx_db, state)
        again.outbox.put(parse(mail))
        again.flush()
        assert again.emails_sent == 0 and len(maildir_messages(sink)) == 1
    finally:
        sink.stop()
        pub.loop_stop()


def test_audit_verify_detects_a_modified_line(tmp_path: Path) -> None:
    from analytics.audit import AuditLog

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(5):
        log.append("state", incident=f"inc-{i}", state="firing", value=13600.0 + i)

    def cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "alumon", "audit", "verify", str(path)], capture_output=True,
                              text=True, timeout=60)

    ok = cli()
    assert ok.returncode == 0 and "5 lines, chain intact" in ok.stdout
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("13602.0", "13002.0")
    path.write_text("\n".join(lines) + "\n")
    bad = cli()
    assert bad.returncode == 1
    assert "line 3: content changed" in bad.stderr
    # Forging the hash of the changed line too only moves the break to the next line.
    from analytics.audit import _digest

    forged = json.loads(lines[2])
    forged["hash"] = _digest(forged)
    lines[2] = json.dumps(forged, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    assert verify(path)[1] == ["line 4: does not follow line 3 (prev hash differs)"]
    # A removed line breaks the sequence.
    del lines[2]
    path.write_text("\n".join(lines) + "\n")
    assert any("sequence" in p for p in verify(path)[1])


def test_audit_log_cuts_a_torn_last_line_and_says_so(tmp_path: Path) -> None:
    from analytics.audit import AuditLog

    path = tmp_path / "audit.jsonl"
    AuditLog(path).append("state", incident="a")
    with path.open("ab") as fh:
        fh.write(b'{"seq":2,"event":"sta')  # the crash
    reopened = AuditLog(path)
    reopened.append("state", incident="b")
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert events == ["state", "torn_tail_removed", "state"]
    assert verify(path) == (3, [])


def make_certs(out: Path) -> Path:
    """A private CA and a server certificate for 127.0.0.1, by the deploy script a plant would use."""
    subprocess.run(["bash", str(REPO / "deploy" / "tls" / "make-certs.sh"), "-o", str(out), "127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return out


def test_smtp_starttls_and_ssl_with_credentials_from_the_environment(
        tmp_path: Path, mosquitto: Server, influx_db: InfluxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = make_certs(tmp_path / "pki")
    monkeypatch.setenv("TEST_SMTP_USER", "alumon")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-relay")
    monkeypatch.setenv("TEST_SINK_PASSWORD", "s3cret-relay")
    pub = mqtt_client(mosquitto.port)
    try:
        for security in ("starttls", "ssl"):
            sink = start_smtp_sink(tmp_path / security, extra_args=(
                "--tls", security, "--cert", str(pki / "server.crt"), "--key", str(pki / "server.key"),
                "--user", "alumon", "--password-env", "TEST_SINK_PASSWORD"))
            try:
                site = load_site(write_site(tmp_path / f"{security}.yaml", connections__smtp={
                    "host": "127.0.0.1", "port": sink.port, "security": security, "ca_file": str(pki / "ca.crt"),
                    "sender": "alumon@gx-demo.example", "username_env": "TEST_SMTP_USER",
                    "password_env": "TEST_SMTP_PASSWORD"}, alerts={"regulators": [REGULATOR], "group_interval_s": 0}))
                notifier = Notifier.in_dir(site.config, pub, influx_db, tmp_path / f"state-{security}")
                monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
                notifier.dispatch(alert(AlertState.FIRING))
                assert notifier.emails_sent == 0 and maildir_messages(sink) == []  # refused: kept in the outbox
                monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-relay")
                notifier.flush()
                assert notifier.emails_sent == 1, security
                (mail,) = maildir_messages(sink)
                assert mail["To"] == REGULATOR
            finally:
                sink.stop()
    finally:
        pub.loop_stop()


def test_the_same_change_handed_over_twice_is_one_notice(site_file: Path, mosquitto: Server, smtp_sink: Server,
                                                         influx_db: InfluxClient, tmp_path: Path) -> None:
    """Analytics saves its episodes after the notifier queued their notices; a crash in between makes the
    engine hand the same change over again after the restart, and that must not become a second email."""
    site = load_site(site_file)
    config = site.config.model_copy(update={"alerts": site.config.alerts.model_copy(update={"group_interval_s": 0})})
    pub = mqtt_client(mosquitto.port)
    Notifier.in_dir(config, pub, influx_db, tmp_path / "state").dispatch(alert(AlertState.FIRING))
    restarted = Notifier.in_dir(config, pub, influx_db, tmp_path / "state")
    restarted.dispatch(alert(AlertState.FIRING))
    restarted.flush()
    assert restarted.emails_sent == 0
    assert {k: len(v) for k, v in by_recipient(smtp_sink).items()} == {
        "energy-team@gx-demo.example": 1, "env-team@gx-demo.example": 1, REGULATOR: 1}
    records = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("state") == 1
    pub.loop_stop()


def test_delivery_thread_sends_each_notice_once_and_keeps_the_audit_chain(
        site_file: Path, mosquitto: Server, smtp_sink: Server, influx_db: InfluxClient, tmp_path: Path) -> None:
    """As the service runs it: dispatch (the evaluating thread) only queues, a thread of the notifier draws and
    sends, both append to the audit log. Twenty incidents dispatched back to back: every notice sent once,
    the hash chain intact, and close() leaves nothing behind."""
    site = load_site(site_file)
    config = site.config.model_copy(update={"alerts": site.config.alerts.model_copy(update={"group_interval_s": 0})})
    pub = mqtt_client(mosquitto.port)
    notifier = Notifier.in_dir(config, pub, influx_db, tmp_path / "state", evidence())
    notifier.start()
    for i in range(10):
        for state in (AlertState.FIRING, AlertState.RESOLVED):
            notifier.dispatch(alert(state).model_copy(update={"id": f"gx-demo-energy_above_level3-potline-1-{i}"}))
    notifier.close()
    assert notifier.emails_sent == len(maildir_messages(smtp_sink))
    # 3 addressees (level 3 goes to engineers and regulators); each gets each change once, grouped or not.
    assert notices_per_incident(read_emails(Path(smtp_sink.run_dir) / "maildir")) == {
        f"gx-demo-energy_above_level3-potline-1-{i}": {to: {"firing": 1, "resolved": 1} for to in
                                                       ("energy-team@gx-demo.example", "env-team@gx-demo.example",
                                                        REGULATOR)} for i in range(10)}
    assert verify(tmp_path / "state" / "audit.jsonl")[1] == []
    assert not list((tmp_path / "state" / "notices").rglob("*.json"))
    assert not list((tmp_path / "state" / "outbox").iterdir())
    pub.loop_stop()
