"""Telemetry message -> line protocol (the ``telemetry`` measurement of alumon/schema.py).

This is ingest's hot path (every reading of the plant passes here), so it builds the lines from parts that
are the same for the whole message or cached per quantity and unit, instead of calling ``schema.line`` per
reading; the tests check that both give identical lines.
"""

from __future__ import annotations

from functools import lru_cache

from alumon import schema
from alumon.telemetry import Quality, TelemetryMessage


@lru_cache(maxsize=65536)
def _tag(value: str) -> str:
    return schema.escape_key(value)


@lru_cache(maxsize=4096)
def _text(value: str) -> str:
    return schema.field_text(value)


_QUALITY = {q: f"quality={schema.field_text(q.value)}" for q in Quality}


def message_lines(msg: TelemetryMessage) -> list[str]:
    """One point per reading, as ``schema.line`` writes it (tags sorted: device, quantity, site; fields in
    the schema's order). Tags and timestamp depend only on the message, so rewriting a redelivered message
    overwrites the same points instead of adding new ones."""
    head = f"{schema.TELEMETRY},device={_tag(msg.device)},quantity="
    site = f",site={_tag(msg.site)} "
    seq = f",seq={msg.seq}i,unit="
    tail = f",historical={'true' if msg.historical else 'false'}"
    ts = f" {msg.ts_ms}"
    lines = []
    for quantity, r in msg.readings.items():
        value = "" if r.value is None else f"value={schema.field_float(r.value)},"
        flags = f",flags={_text(','.join(r.flags))}" if r.flags else ""
        lines.append(f"{head}{_tag(quantity)}{site}{value}{_QUALITY[r.quality]}{seq}{_text(r.unit)}{tail}{flags}{ts}")
    return lines
