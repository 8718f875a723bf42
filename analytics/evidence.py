"""The recent history of every KPI an alert rule watches, kept in memory, so an alert email can carry the
hours around the event even when InfluxDB is the thing that is down."""

from __future__ import annotations

from collections import deque

from alumon.alert import Alert
from analytics.chart import evidence_csv
from analytics.kpi_row import KpiRow

Key = tuple[str, str, str]  # process unit, KPI, window


class EvidenceLog:
    def __init__(self, hours: float):
        self.span_ms = int(hours * 3_600_000)
        self.points: dict[Key, deque[tuple[int, float, float]]] = {}

    def add(self, rows: list[KpiRow]) -> None:
        for row in rows:
            if row.value is None:
                continue
            points = self.points.setdefault((row.unit_process, row.kpi, row.window), deque())
            if points and points[-1][0] >= row.t_ms:
                continue  # the same evaluation twice: keep one
            points.append((row.t_ms, row.value, row.completeness))
            while points[0][0] < row.t_ms - self.span_ms:
                points.popleft()

    def csv(self, alert: Alert) -> str:
        return evidence_csv(alert, list(self.points.get((alert.unit_process, alert.kpi, alert.window), ())))
