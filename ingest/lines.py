"""Telemetry message -> line protocol (the ``telemetry`` measurement of alumon/schema.py)."""

from __future__ import annotations

from alumon import schema
from alumon.telemetry import TelemetryMessage


def message_lines(msg: TelemetryMessage) -> list[str]:
    """One point per reading. Tags and timestamp depend only on the message, so rewriting a redelivered
    message overwrites the same points instead of adding new ones."""
    ts = msg.ts_ms
    lines = []
    for quantity, reading in msg.readings.items():
        lines.append(schema.line(
            schema.TELEMETRY,
            {"site": msg.site, "device": msg.device, "quantity": quantity},
            {
                "value": reading.value,
                "quality": reading.quality.value,
                "seq": msg.seq,
                "unit": reading.unit,
                "historical": msg.historical,
                "flags": ",".join(reading.flags) or None,
            },
            ts,
        ))
    return lines
