"""Alert sinks: a retained MQTT message per alert, a point in InfluxDB ``alerts``, and email.

Every email goes to a durable outbox (one file per message, analytics/state.py) before the first attempt and
leaves it only once the SMTP server accepted it, so an SMTP outage, even across a restart, delays a notice
instead of losing it; the stable Message-ID makes a resend recognisable.
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
from analytics.state import Outbox

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
    outbox: Outbox
    emails_sent: int = 0
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
            self.outbox.put(render(alert, self.config, to))
        self.flush()

    def flush(self) -> None:
        """Deliver what is queued; keep what fails for the next call."""
        if self._pending_lines:
            try:
                self.influx.write_lines(self._pending_lines)
                self._pending_lines.clear()
            except InfluxError as exc:
                log.warning("alerts not written to InfluxDB yet: %s", exc)
        for path, msg in self.outbox.pending():
            try:
                send_email(self.config.connections.smtp, msg)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("email %s not sent yet (%s); will retry", msg["Message-ID"], type(exc).__name__)
                return
            self.outbox.done(path)
            self.emails_sent += 1
            log.info("email %s sent to %s", msg["Message-ID"], msg["To"])
