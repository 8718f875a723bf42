"""Alert emails: subject and bodies (plain text + HTML), Chinese by default, English per site setting.

What a regulator needs on one screen: plant and permit id, process unit, what was exceeded, the measured
value with its unit and completeness, the limit with its source and status, the window, start and duration,
and the incident id to quote back.
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import formatdate

from alumon.alert import Alert, AlertState, Audience
from alumon.config import AlertRouting, SiteConfig
from analytics.rules import rule_by_name

SEVERITY_ZH = {"critical": "严重", "warning": "警告", "info": "提示"}
STATE_ZH = {"firing": "告警", "resolved": "已恢复", "pending": "待定"}


def recipients(routing: AlertRouting, audience: Audience) -> list[str]:
    if audience is Audience.ENGINEERS:
        return list(routing.engineers)
    if audience is Audience.REGULATORS:
        return list(routing.regulators)
    return list(dict.fromkeys([*routing.engineers, *routing.regulators]))


def _unit_name(config: SiteConfig, unit_id: str) -> str:
    unit = next((u for u in config.process_units if u.id == unit_id), None)
    return unit.name if unit is not None and unit.name else unit_id


def _fields(alert: Alert, config: SiteConfig, lang: str) -> tuple[str, list[tuple[str, str]]]:
    rule = rule_by_name(alert.rule)
    unit = _unit_name(config, alert.unit_process)
    duration = (alert.last_seen - alert.first_seen).total_seconds() / 60
    zh = lang == "zh"
    state = STATE_ZH[alert.state.value] if zh else alert.state.value
    sev = SEVERITY_ZH[alert.severity.value] if zh else alert.severity.value
    what = rule.description_zh if zh else rule.description_en
    subject = (f"[alumon][{sev}][{state}] {unit} {alert.value:.0f} {alert.unit} "
               f"{'超过' if zh else 'above'} {alert.limit_name} {alert.limit:g}")
    rows = [
        ("企业 Plant" if zh else "Plant", f"{config.site.name} ({config.site.id})"),
        ("排污许可证 Permit" if zh else "Permit", config.site.permit_id or "-"),
        ("工序 Process unit" if zh else "Process unit", f"{unit} ({alert.unit_process})"),
        ("事件 What" if zh else "What", what),
        ("测量值 Value" if zh else "Value", f"{alert.value:.2f} {alert.unit}"),
        ("限值 Limit" if zh else "Limit", f"{alert.limit_name}: {alert.limit:g} {alert.unit}"),
        ("依据 Source" if zh else "Source", alert.limit_source),
        ("统计窗口 Window" if zh else "Window", alert.window),
        ("开始 Started (UTC)" if zh else "Started (UTC)", f"{alert.first_seen:%Y-%m-%d %H:%M:%S}"),
        ("持续 Duration" if zh else "Duration", f"{duration:.1f} min"),
        ("状态 State" if zh else "State", state),
        ("事件编号 Incident" if zh else "Incident", alert.id),
    ]
    if alert.state is AlertState.RESOLVED and alert.resolved_at is not None:
        rows.append(("恢复 Resolved (UTC)" if zh else "Resolved (UTC)", f"{alert.resolved_at:%Y-%m-%d %H:%M:%S}"))
    return subject, rows


def render(alert: Alert, config: SiteConfig, to: list[str]) -> EmailMessage:
    lang = config.alerts.language
    subject, rows = _fields(alert, config, lang)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = config.connections.smtp.sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(usegmt=True)
    # Stable per incident and state: a resend after an SMTP outage can be recognised as the same notice.
    msg["Message-ID"] = f"<{alert.id}.{alert.state.value}@alumon>"
    msg["X-Alumon-Incident"] = alert.id
    width = max(len(k) for k, _ in rows)
    msg.set_content("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows) + "\n\n-- alumon\n")
    table = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    msg.add_alternative(f"<html><body><h3>{html.escape(subject)}</h3><table>{table}</table>"
                        f"<p>-- alumon</p></body></html>", subtype="html")
    return msg
