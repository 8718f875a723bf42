"""One KPI evaluation: what analytics writes to InfluxDB (measurement ``kpi``), replays to JSON lines and
feeds to the alert rules."""

from __future__ import annotations

from typing import NamedTuple

from alumon import schema
from alumon.schema import FieldValue


class KpiRow(NamedTuple):  # immutable and cheap to build: a year replayed hourly makes ~4 million
    t_ms: int
    unit_process: str
    kpi: str
    window: str
    value: float | None  # None only for an hour without a single valid minute
    unit: str
    completeness: float
    level: str
    limit_source: str
    benchmark_met: bool | None = None
    estimated: bool = False
    extra: tuple[tuple[str, FieldValue], ...] = ()  # e.g. HJ 75 validity of an hourly mean

    def to_line(self, site: str) -> str:
        return schema.line(
            schema.KPI,
            {"site": site, "unit_process": self.unit_process, "kpi": self.kpi, "window": self.window},
            {"value": self.value, "unit": self.unit, "completeness": round(self.completeness, 4),
             "level": self.level, "benchmark_met": self.benchmark_met, "estimated": self.estimated,
             "limit_source": self.limit_source, **dict(self.extra)},
            self.t_ms,
        )
