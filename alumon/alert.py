"""Contract 5: an alert, as published (retained) on ``alumon/v1/{site}/alerts/{rule}``, written to InfluxDB
and rendered into emails."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from alumon import schema
from alumon.telemetry import format_ts

ALERT_SCHEMA_VERSION = 1


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Audience(StrEnum):
    ENGINEERS = "engineers"
    REGULATORS = "regulators"
    BOTH = "both"


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = ALERT_SCHEMA_VERSION
    id: str  # incident id: one per episode (pending -> firing -> resolved)
    site: str
    rule: str
    unit_process: str
    severity: Severity
    audience: Audience
    state: AlertState
    kpi: str  # what is watched, e.g. al_liquid_ac or so2_corrected
    value: float
    unit: str
    limit: float
    limit_name: str  # e.g. "GB 21346-2022 level 3"
    limit_source: str  # standard, clause, edition and status
    window: str  # averaging window, e.g. rolling_60s
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None = None
    summary: str = ""
    kind: str = "limit"  # or data_quality
    description_zh: str = ""
    description_en: str = ""
    reminder: int = 0  # 0: the state change itself; n: the n-th reminder of a long firing incident
    suppresses: tuple[str, ...] = ()  # data quality: the limit rules of the unit held while this fires
    completeness: float | None = None  # data coverage of the value that triggered the change

    def to_json(self) -> bytes:
        body = self.model_dump(mode="json")
        for key in ("first_seen", "last_seen", "resolved_at"):
            ts = getattr(self, key)
            body[key] = None if ts is None else format_ts(ts)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def to_line(self) -> str:
        """The ``alerts`` measurement point for this state change (Grafana annotation: start, end, text)."""
        end_ms = int(self.resolved_at.timestamp() * 1000) if self.resolved_at else 0
        # The firing point sits at the episode start and the resolution at its end, so the two never share a
        # timestamp (which would make one overwrite the other) and an annotation spans start..end.
        ts = self.resolved_at or self.first_seen
        return schema.line(
            schema.ALERTS,
            {"site": self.site, "rule": self.rule, "unit_process": self.unit_process, "severity": self.severity},
            {
                "incident": self.id,
                "state": self.state.value,
                "value": float(self.value),
                "limit": float(self.limit),
                "limit_source": self.limit_source,
                "text": self.summary,
                "start_ms": int(self.first_seen.timestamp() * 1000),
                "end_ms": end_ms,
            },
            int(ts.timestamp() * 1000),
        )
