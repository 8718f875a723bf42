"""Alert sinks: a retained MQTT message per alert, a point in InfluxDB ``alerts``, and email.

Email failures (SMTP down) keep the notification in a retry queue, retried every evaluation tick, so an
outage delays a notice instead of losing it. The queue is in memory in this version: a restart during an
SMTP outage loses the pending notices (a durable queue is tracked with the alerts issue).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage

import paho.mqtt.client as mqtt

from alumon.alert import Alert
from alumon.config import SiteConfig, SmtpConnection, SmtpSecurity, secret
from alumon.influx import InfluxClient, InfluxError
from alumon.telemetry import alert_topic
from analytics.email import recipients, render

log = logging.getLogger("alumon.analytics.notify")


def send_email(conn: SmtpConnection, msg: EmailMessage) -> None:
    ctx = ssl.create_default_context()
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


@dataclass
class Notifier:
    config: SiteConfig
    mqtt_client: mqtt.Client
    influx: InfluxClient
    emails_sent: int = 0
    _pending_email: list[EmailMessage] = field(default_factory=list)
    _pending_lines: list[str] = field(default_factory=list)

    def topic(self, alert: Alert) -> str:
        return alert_topic(self.config.site.id, f"{alert.rule}.{alert.unit_process}")

    def dispatch(self, alert: Alert) -> None:
        log.warning("alert %s %s: %s", alert.id, alert.state.value, alert.summary)
        # Retained: a dashboard or gateway connecting later sees the current state; the resolved state stays
        # retained too, so a late subscriber learns the episode ended.
        self.mqtt_client.publish(self.topic(alert), alert.to_json(), qos=1, retain=True)
        self._pending_lines.append(alert.to_line())
        to = recipients(self.config.alerts, alert.audience)
        if to:
            self._pending_email.append(render(alert, self.config, to))
        self.flush()

    def flush(self) -> None:
        """Deliver what is queued; keep what fails for the next call."""
        if self._pending_lines:
            try:
                self.influx.write_lines(self._pending_lines)
                self._pending_lines.clear()
            except InfluxError as exc:
                log.warning("alerts not written to InfluxDB yet: %s", exc)
        while self._pending_email:
            msg = self._pending_email[0]
            try:
                send_email(self.config.connections.smtp, msg)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("email %s not sent yet (%s); will retry", msg["Message-ID"], type(exc).__name__)
                return
            self._pending_email.pop(0)
            self.emails_sent += 1
            log.info("email %s sent to %s", msg["Message-ID"], msg["To"])
