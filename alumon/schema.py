"""Contract 4: the InfluxDB schema, in one place, and the line-protocol encoder every writer uses.

Measurements (timestamps in ms; a point's identity is measurement + tags + time, so rewriting the same
message or the same KPI evaluation overwrites instead of double-counting):

``telemetry``   one point per reading
    tags   site, device, quantity
    fields value (float, absent when the device gave none), quality (string), seq (int), unit (string),
           historical (bool), flags (string, comma-separated, absent when none)
``kpi``         one point per KPI evaluation
    tags   site, unit_process, kpi, window
    fields value (float), unit (string), completeness (float 0..1), level (string), benchmark_met (bool),
           estimated (bool), limit_source (string)
           HJ 75 hourly means (kpi ``<pollutant>_hourly``, window ``hour``, time = start of the hour) add
           valid (bool), flag (string: N, or the invalid hour's F/M/C/D/T/B/H), exceeded (bool),
           valid_minutes (int), limit (float, ultra-low), limit_<kind> and exceeded_<kind> for every
           applicable limit (ultra_low, special, normal), emission_kg (the hour's emission); value is absent
           for an hour without a valid minute. Minute values: kpi ``<pollutant>_minute``, window ``minute``,
           fields valid, flag. Month to date: kpi ``<pollutant>_monthly_compliance``, window ``month``, time =
           the month's start, fields valid_hours, exceedance_hours, min_share, met.
``alerts``      one point per alert state change, shaped for Grafana annotations
    tags   site, rule, unit_process, severity
    fields incident (string), state (string), value (float), limit (float), limit_source (string),
           text (string), start_ms (int), end_ms (int, 0 while open)
``pipeline``    the services' self-metrics (analytics/pipeline.py), one point per metrics message and agent
    tags   site, agent (``edge``, ``ingest-1`` ...), device (edge per-device figures only)
    fields every number of the message (nested objects flattened with ``_``: spool_depth, mqtt_acked ...),
           state (string, per device)
``dead_letter`` one point per refused payload
    tags   site, reason
    fields topic (string), detail (string), payload_b64 (string, truncated), size (int)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

TELEMETRY = "telemetry"
KPI = "kpi"
ALERTS = "alerts"
DEAD_LETTER = "dead_letter"
PIPELINE = "pipeline"

FieldValue = float | int | bool | str


def escape_key(s: str) -> str:
    """A tag key, tag value or field key."""
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def field_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("line protocol cannot carry NaN or infinity")
    return repr(value)


def field_text(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return field_float(value)
    return field_text(value)


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None], ts_ms: int) -> str:
    """One line of InfluxDB line protocol (ms precision). Fields whose value is None are omitted."""
    tag_part = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v != "")
    field_part = ",".join(f"{escape_key(k)}={_field(v)}" for k, v in fields.items() if v is not None)
    if not field_part:
        raise ValueError(f"{measurement}: a point needs at least one field")
    return f"{_escape_measurement(measurement)}{tag_part} {field_part} {ts_ms}"
