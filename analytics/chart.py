"""The chart attached to an alert email: the watched value over the hours around the event, the limit and
the reset level, the incident shaded; drawn headless (Agg) from the evidence CSV attached beside it, so the
picture and the numbers cannot disagree. Labels are ASCII: servers rarely have CJK fonts."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from alumon.alert import Alert

EVIDENCE_HEADER = ("time_utc", "value", "unit", "completeness", "limit")


def evidence_csv(alert: Alert, points: list[tuple[int, float, float]]) -> str:
    """The evidence: (t_ms, value, completeness) of the watched KPI, one row each, with the limit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EVIDENCE_HEADER)
    for t_ms, value, completeness in points:
        writer.writerow((datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), f"{value:.6g}",
                         alert.unit, f"{completeness:.4f}", f"{alert.limit:g}"))
    return out.getvalue()


def read_evidence(text: str) -> tuple[list[datetime], list[float]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    times = [datetime.strptime(r["time_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for r in rows]
    return times, [float(r["value"]) for r in rows]


def render_png(alert: Alert, evidence: str, lang: str = "en") -> bytes:
    import matplotlib  # late: a second of start-up that only email rendering pays

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, values = read_evidence(evidence)
    start = alert.first_seen

    def hours(ts: datetime) -> float:  # from the incident's start: the axis an engineer reads the event by
        return (ts - start).total_seconds() / 3600

    x = [hours(t) for t in times]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    try:
        ax.plot(x, values, color="#1f5fa8", linewidth=1.4, label=f"{alert.kpi} ({alert.window})")
        ax.axhline(alert.limit, color="#c0392b", linestyle="--", linewidth=1.2,
                   label=f"limit {alert.limit:g} {alert.unit}")
        end = alert.resolved_at or alert.last_seen
        ax.axvspan(0.0, hours(end), color="#f5b7b1", alpha=0.35, label=f"incident ({alert.state.value})")
        ax.set_title(f"{alert.site} / {alert.unit_process}: {alert.rule}", fontsize=10)
        ax.set_ylabel(alert.unit)
        ax.set_xlabel(f"hours from the incident start, {start:%Y-%m-%d %H:%M:%S} UTC")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
