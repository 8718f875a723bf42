"""Pipeline health into InfluxDB: the self-metrics the edge agent and ingest publish on
``alumon/v1/{site}/{agent}/metrics`` become ``pipeline`` points, so the health dashboard can chart spool depth,
poll failures, ingest lag and the disk buffer next to the data they explain.

Edge: one point for the agent (``spool_depth``, ``spool_oldest_age_s``, ``spool_dropped_*``, ``mqtt_*``) and one
per device (``polls_ok``, ``polls_failed``, ``missed_cycles``, ``last_cycle_ms``, ``max_cycle_ms``, ``state``).
Ingest: one point per worker with every figure of its snapshot (``lag_s``, ``buffer_depth_points``,
``write_rate_points_per_s``, ``received_messages`` ...). Metrics are QoS 0 and advisory: a payload that is not
a JSON object is counted and skipped, never an error.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from alumon import schema
from alumon.schema import FieldValue


def _numbers(body: dict[str, Any], prefix: str = "") -> dict[str, FieldValue]:
    """The numeric (and state) figures of a metrics object, nested objects flattened with ``_``."""
    out: dict[str, FieldValue] = {}
    for key, value in body.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            out[name] = float(value)
        elif isinstance(value, dict) and key not in ("devices", "failures"):
            out |= _numbers(value, f"{name}_")
        elif key == "state" and isinstance(value, str):
            out[name] = value
    return out


def metrics_lines(site: str, topic: str, payload: bytes, now_ms: int) -> list[str]:
    """``pipeline`` lines for one metrics message; [] when it is not a metrics object."""
    agent = topic.rsplit("/", 2)[-2]
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(body, dict):
        return []
    lines = []
    fields = _numbers(body)
    if fields:
        lines.append(schema.line(schema.PIPELINE, {"site": site, "agent": agent}, fields, now_ms))
    devices = body.get("devices")
    for device, figures in (devices.items() if isinstance(devices, dict) else ()):
        if isinstance(figures, dict) and (per_device := _numbers(figures)):
            lines.append(schema.line(schema.PIPELINE, {"site": site, "agent": agent, "device": str(device)},
                                     per_device, now_ms))
    return lines
