"""Dead letters: a refused payload is kept with its reason (InfluxDB ``dead_letter`` and the MQTT dead-letter
topic), so an operator can see what a device or gateway sent and why alumon refused it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from alumon import schema
from alumon.telemetry import format_ts, utc_now

KEEP_BYTES = 4096  # original payload kept (base64) per dead letter


@dataclass(frozen=True)
class DeadLetter:
    site: str
    topic: str
    reason: str
    detail: str
    payload: bytes

    @property
    def payload_b64(self) -> str:
        return base64.b64encode(self.payload[:KEEP_BYTES]).decode("ascii")

    def to_line(self, ts_ms: int) -> str:
        return schema.line(
            schema.DEAD_LETTER,
            {"site": self.site, "reason": self.reason},
            {"topic": self.topic, "detail": self.detail[:500], "payload_b64": self.payload_b64,
             "size": len(self.payload)},
            ts_ms,
        )

    def to_json(self) -> bytes:
        return json.dumps({"reason": self.reason, "detail": self.detail[:500], "topic": self.topic,
                           "payload_b64": self.payload_b64, "size": len(self.payload),
                           "ts": format_ts(utc_now())}, ensure_ascii=False).encode("utf-8")
