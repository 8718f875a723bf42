"""Alert emails: who gets which notice, and the message itself from the versioned Jinja2 templates
(``analytics/templates``: plain text + HTML, Chinese by default, English per recipient), with the evidence
attached: a PNG chart of the hours around the event and the CSV it was drawn from.

What a regulator needs on one screen: plant and permit id, process unit, what was exceeded, the measured
value with its unit and completeness, the limit with its source and status, the window, start and duration,
and the incident id to quote back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

import jinja2

from alumon.alert import Alert, AlertState, Audience, Severity
from alumon.config import AlertSettings, Recipient, SiteConfig
from analytics.chart import render_png

SEVERITY_ZH = {"critical": "严重", "warning": "警告", "info": "提示"}
STATE_ZH = {"firing": "告警", "resolved": "已恢复", "pending": "待定"}
SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
TEMPLATES = ("alert.zh.txt.j2", "alert.zh.html.j2", "alert.en.txt.j2", "alert.en.html.j2")


@dataclass(frozen=True)
class Addressee:
    address: str
    language: str
    regulator: bool  # regulators see the permit id


@dataclass(frozen=True)
class Notice:
    """One alert state change queued for one addressee, with the evidence captured when it happened."""

    alert: Alert
    evidence_csv: str


def _entries(entries: list[str | Recipient]) -> list[Recipient]:
    return [e if isinstance(e, Recipient) else Recipient(address=e) for e in entries]


def addressees(settings: AlertSettings, audience: Audience, severity: Severity) -> list[Addressee]:
    """Everyone an alert of this audience and severity goes to: by audience, then by each recipient's lowest
    severity."""
    groups: list[tuple[list[str | Recipient], bool]] = []
    if audience in (Audience.ENGINEERS, Audience.BOTH):
        groups.append((list(settings.engineers), False))
    if audience in (Audience.REGULATORS, Audience.BOTH):
        groups.append((list(settings.regulators), True))
    out: dict[str, Addressee] = {}
    for entries, regulator in groups:
        for r in _entries(entries):
            if SEVERITY_RANK[severity] < SEVERITY_RANK[Severity(r.min_severity)]:
                continue
            seen = out.get(r.address)
            out[r.address] = Addressee(r.address, r.language or settings.language,
                                       regulator or (seen is not None and seen.regulator))
    return list(out.values())


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("analytics", "templates"), undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=True)


@cache
def template_version() -> str:
    """A digest of the four templates: the audit log records which text a notice was rendered from."""
    digest = hashlib.sha256()
    for name in TEMPLATES:
        digest.update(resources.files("analytics").joinpath("templates", name).read_bytes())
    return f"t-{digest.hexdigest()[:12]}"


def _time(ts: datetime, zone: ZoneInfo) -> str:
    return f"{ts.astimezone(zone):%Y-%m-%d %H:%M:%S} {zone.key} ({ts:%Y-%m-%d %H:%M:%S} UTC)"


def _view(notice: Notice, config: SiteConfig, lang: str, attachments: list[str]) -> dict[str, object]:
    a = notice.alert
    zone = ZoneInfo(config.site.timezone)
    unit = next((u for u in config.process_units if u.id == a.unit_process), None)
    end = a.resolved_at or a.last_seen
    minutes = (end - a.first_seen).total_seconds() / 60
    zh = lang == "zh"
    return {
        "alert": a,
        "unit_name": unit.name if unit is not None and unit.name else a.unit_process,
        "severity": SEVERITY_ZH[a.severity.value] if zh else a.severity.value,
        "state": STATE_ZH[a.state.value] if zh else a.state.value,
        "value": f"{a.value:.2f}",
        "completeness": "-" if a.completeness is None else f"{a.completeness:.0%}",
        "started": _time(a.first_seen, zone),
        "duration": f"{minutes:.1f} {'分钟' if zh else 'min'}",
        "resolved": _time(a.resolved_at, zone) if a.resolved_at is not None else "",
        "attachments": attachments,
    }


def _subject(notices: list[Notice], config: SiteConfig, lang: str) -> str:
    zh = lang == "zh"
    if len(notices) > 1:
        worst = max((n.alert for n in notices), key=lambda x: SEVERITY_RANK[x.severity]).severity.value
        sev = SEVERITY_ZH[worst] if zh else worst
        return (f"[alumon][{sev}] {config.site.name}: {len(notices)} 条告警通知" if zh
                else f"[alumon][{sev}] {config.site.name}: {len(notices)} alert notices")
    a = notices[0].alert
    view = _view(notices[0], config, lang, [])
    what = a.description_zh if zh else a.description_en
    tag = ("提醒" if zh else "reminder") if a.reminder else view["state"]
    relation = ("超过" if zh else "above") if a.state is not AlertState.RESOLVED else ("对照" if zh else "vs")
    return (f"[alumon][{view['severity']}][{tag}] {view['unit_name']}: {what}: {a.value:.0f} {a.unit} "
            f"{relation} {a.limit_name} {a.limit:g}")


def notice_key(alert: Alert) -> str:
    """``incident.state.reminder``: names one notice (the queue file, the email headers, the demo's check)."""
    return f"{alert.id}.{alert.state.value}.{alert.reminder}"


def message_id(notices: list[Notice], to: Addressee) -> str:
    """Stable for the same notices to the same person: a resend after a crash is recognisably the same mail."""
    key = "|".join(sorted(notice_key(n.alert) for n in notices))
    digest = hashlib.sha256(f"{key}|{to.address}".encode()).hexdigest()[:20]
    first = notices[0].alert
    return f"<{first.id}.{first.state.value}.{digest}@alumon>"


def render(notices: list[Notice], config: SiteConfig, to: Addressee) -> EmailMessage:
    lang = to.language
    files: list[tuple[str, bytes, str, str]] = []  # name, content, maintype, subtype
    views = []
    for i, n in enumerate(notices, 1):
        stem = f"{i}-{n.alert.rule}-{n.alert.unit_process}"
        names = []
        if n.evidence_csv:
            files.append((f"{stem}.csv", n.evidence_csv.encode("utf-8"), "text", "csv"))
            files.append((f"{stem}.png", render_png(n.alert, n.evidence_csv, lang), "image", "png"))
            names = [f"{stem}.png", f"{stem}.csv"]
        views.append(_view(n, config, lang, names))
    context = {"site": config.site, "regulator": to.regulator, "notices": views,
               "template_version": template_version()}
    env = _environment()
    msg = EmailMessage()
    msg["Subject"] = _subject(notices, config, lang)
    msg["From"] = config.connections.smtp.sender
    msg["To"] = to.address
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(notices, to)
    msg["X-Alumon-Incident"] = ", ".join(dict.fromkeys(n.alert.id for n in notices))
    msg["X-Alumon-Notices"] = ", ".join(notice_key(n.alert) for n in notices)
    msg["X-Alumon-Template"] = template_version()
    msg.set_content(env.get_template(f"alert.{lang}.txt.j2").render(context))
    msg.add_alternative(env.get_template(f"alert.{lang}.html.j2").render(context), subtype="html")
    for name, content, maintype, subtype in files:
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return msg
