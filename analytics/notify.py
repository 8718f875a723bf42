"""Alert sinks: a retained MQTT message per active alert (cleared on resolve), a point in InfluxDB ``alerts``
(Grafana annotations), and email, each change recorded in the audit log.

Email path, every step durable before the next: the notice for each addressee is queued on disk
(``NoticeQueue``); once the oldest queued notice for that addressee is ``group_interval_s`` old, all of them
become one email in the outbox; the outbox keeps it until the SMTP server accepted it, and the acceptance is
written to the audit log. An SMTP outage, even across a restart, delays a notice instead of losing it, and a
message the audit log already records as sent is not sent again.

The service delivers from a thread of its own (``start``): drawing a notice's chart takes 0.1 to 0.7 s and the
mail server may be slow or down, and neither may delay the next evaluation of the alert rules. ``dispatch``
(the evaluating thread) only publishes the state and queues the notices; a lock keeps the queue and the audit
log consistent between the two threads. The emails are rendered in a worker process: matplotlib holds the
GIL, and in a thread it took three quarters of it from the evaluations under a burst of notices
(bench/service_load.py). Without ``start``, ``dispatch`` delivers at once (tests, replay).
"""

from __future__ import annotations

import logging
import multiprocessing
import smtplib
import ssl
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import paho.mqtt.client as mqtt

from alumon.alert import Alert, AlertState
from alumon.config import SiteConfig, SmtpConnection, SmtpSecurity, secret
from alumon.influx import InfluxError, LineWriter
from alumon.telemetry import alert_topic
from analytics.audit import AuditLog
from analytics.email import Addressee, Notice, addressees, notice_key, render, template_version
from analytics.evidence import EvidenceLog
from analytics.state import NoticeQueue, Outbox

log = logging.getLogger("alumon.analytics.notify")
DELIVER_EVERY_S = 0.5  # the delivery thread looks for due notices this often (and at once after a dispatch)


def send_email(conn: SmtpConnection, msg: EmailMessage) -> None:
    ctx = ssl.create_default_context(cafile=str(conn.ca_file) if conn.ca_file else None)
    smtp: smtplib.SMTP
    if conn.security is SmtpSecurity.SSL:
        smtp = smtplib.SMTP_SSL(conn.host, conn.port, timeout=conn.timeout_s, context=ctx)
    else:
        smtp = smtplib.SMTP(conn.host, conn.port, timeout=conn.timeout_s)
    with smtp:
        if conn.security is SmtpSecurity.STARTTLS:
            smtp.starttls(context=ctx)
        user = secret(conn.username_env)
        if user is not None:
            smtp.login(user, secret(conn.password_env) or "")
        smtp.send_message(msg)


def render_bytes(notices: list[Notice], config: SiteConfig, to: Addressee) -> bytes:
    """``render`` in the worker process: the email as bytes, which cross the process boundary as they are."""
    return render(notices, config, to).as_bytes(policy=policy.SMTP)


def _render_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))  # not fork: we run threads


def alert_key(alert: Alert) -> str:
    """The alert's place under ``alumon/v1/{site}/alerts/``: one retained message per rule, unit and KPI."""
    return f"{alert.rule}/{alert.unit_process}/{alert.kpi}"


@dataclass
class Notifier:
    config: SiteConfig
    mqtt_client: mqtt.Client
    influx: LineWriter
    outbox: Outbox
    notices: NoticeQueue
    audit: AuditLog
    evidence: EvidenceLog
    emails_sent: int = 0
    _pending_lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # notices, pending lines, audit log
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _deliverer: threading.Thread | None = None
    _renderer: ProcessPoolExecutor | None = None

    @classmethod
    def in_dir(cls, config: SiteConfig, client: mqtt.Client, influx: LineWriter, state_dir: Path,
               evidence: EvidenceLog | None = None) -> Notifier:
        return cls(config, client, influx, Outbox(state_dir / "outbox"), NoticeQueue(state_dir / "notices"),
                   AuditLog(state_dir / "audit.jsonl"), evidence or EvidenceLog(config.alerts.evidence_hours))

    def topic(self, alert: Alert) -> str:
        return alert_topic(self.config.site.id, alert_key(alert))

    def dispatch(self, alert: Alert, rules_version: int = 0) -> None:
        """Every sink for one state change. Idempotent: after a crash the engine hands over the same change
        again (same incident id); the notices are queued before the change is audited, and a change already
        audited is not queued again, so no notice is lost or sent twice."""
        log.warning("alert %s %s%s: %s", alert.id, alert.state.value,
                    f" (reminder {alert.reminder})" if alert.reminder else "", alert.summary)
        topic = self.topic(alert)
        if alert.state is AlertState.RESOLVED:
            # The resolution as an event, then an empty retained message: what stays retained is exactly the
            # set of active alerts, so a dashboard connecting later sees no stale ones.
            self.mqtt_client.publish(topic, alert.to_json(), qos=1)
            self.mqtt_client.publish(topic, b"", qos=1, retain=True)
        else:
            self.mqtt_client.publish(topic, alert.to_json(), qos=1, retain=True)
        # Only this thread records state changes, so the check needs no lock (the deliverer records sends).
        new = notice_key(alert) not in self.audit.changes
        evidence = self.evidence.csv(alert) if new else ""
        with self._lock:
            if not alert.reminder:
                self._pending_lines.append(alert.to_line())  # same point again after a crash: overwritten
            if new:
                now_ms = int(time.time() * 1000)
                for to in addressees(self.config.alerts, alert.audience, alert.severity):
                    self.notices.put(to.address, notice_key(alert), {
                        "queued_ms": now_ms, "alert": alert.model_dump(mode="json"), "evidence_csv": evidence,
                        "to": {"address": to.address, "language": to.language, "regulator": to.regulator}})
                self.audit.append("state", incident=alert.id, rule=alert.rule, unit_process=alert.unit_process,
                                  kpi=alert.kpi, state=alert.state.value, reminder=alert.reminder,
                                  at=alert.last_seen.isoformat(), value=alert.value, limit=alert.limit,
                                  limit_source=alert.limit_source, rules_version=rules_version)
        if self._deliverer is None:
            self.flush()
        else:
            self._wake.set()

    def start(self) -> None:
        """Deliver from a thread of its own from now on, rendering in a worker process."""
        self._renderer = _render_pool()
        self._deliverer = threading.Thread(target=self._deliver_loop, name="notifier", daemon=True)
        self._deliverer.start()

    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(DELIVER_EVERY_S)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a bug in one notice must not end delivery of the others
                log.exception("delivering notices failed; retrying")

    def flush(self) -> None:
        """Deliver what is due; keep what fails for the next call."""
        self._write_alert_lines()
        self._compose()
        self._send()

    def _write_alert_lines(self) -> None:
        with self._lock:
            lines, self._pending_lines = self._pending_lines, []
        if lines:
            try:
                self.influx.write_lines(lines)
            except InfluxError as exc:
                log.warning("alerts not written to InfluxDB yet: %s", exc)
                with self._lock:
                    self._pending_lines[:0] = lines

    def close(self) -> None:
        """At shutdown: whatever is queued goes out now rather than waiting out its group interval."""
        if self._deliverer is not None:
            self._stop.set()
            self._wake.set()
            self._deliverer.join()
            self._deliverer = None
        if self._renderer is not None:
            self._renderer.shutdown()
            self._renderer = None
        self._write_alert_lines()
        self._compose(group_ms=0)
        self._send()

    def _compose(self, group_ms: int | None = None) -> None:
        if group_ms is None:
            group_ms = int(self.config.alerts.group_interval_s * 1000)
        with self._lock:
            groups = self.notices.due(int(time.time() * 1000), group_ms)
        for group in groups:  # drawn and rendered outside the lock: evaluations go on meanwhile
            to = Addressee(**group[0][1]["to"])
            notices = [Notice(Alert.model_validate(body["alert"]), body["evidence_csv"]) for _, body in group]
            self.outbox.put(self._render(notices, to))
            with self._lock:
                self.notices.done([path for path, _ in group])

    def _render(self, notices: list[Notice], to: Addressee) -> EmailMessage:
        if self._renderer is None:
            return render(notices, self.config, to)
        try:
            data = self._renderer.submit(render_bytes, notices, self.config, to).result()
        except BrokenProcessPool:  # the worker died (killed, out of memory): a new one for the retry
            self._renderer = _render_pool()
            raise
        msg = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(msg, EmailMessage)
        return msg

    def _send(self) -> None:
        for path, msg in self.outbox.pending():
            message_id = str(msg["Message-ID"])
            with self._lock:
                sent_before = message_id in self.audit.sent  # accepted before a crash that left the file behind
            if sent_before:
                self.outbox.done(path)
                continue
            try:
                send_email(self.config.connections.smtp, msg)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("email %s not sent yet (%s); will retry", message_id, type(exc).__name__)
                return
            with self._lock:
                self.audit.append("notification", message_id=message_id, to=str(msg["To"]),
                                  incidents=str(msg["X-Alumon-Incident"]), subject=str(msg["Subject"]),
                                  template_version=template_version())
            self.outbox.done(path)
            self.emails_sent += 1
            log.info("email %s sent to %s", message_id, msg["To"])
