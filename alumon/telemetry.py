"""Contract 3: the telemetry message and the MQTT topic tree (schema version 1).

Topic tree (``alumon/v1/...``):

* ``alumon/v1/{site}/{device}/telemetry``  one JSON message per device poll, QoS 1
* ``alumon/v1/{site}/{device}/status``     retained agent/device status, also the MQTT last will
* ``alumon/v1/{site}/alerts/{rule}``       retained alert state (contract 5)
* ``alumon/v1/{site}/deadletter``          payloads ingest refused, with the reason

Payload example::

    {"v": 1, "site": "gx-demo", "device": "pl1-meter", "seq": 42, "ts": "2026-11-24T09:30:00.123Z",
     "historical": false,
     "readings": {"import_kwh": {"value": 123456.7, "quality": "good", "unit": "kWh"}}}

``seq`` increases by one per message of a device and survives edge restarts (it is kept in the spool), so
``(device, seq)`` identifies a message for exactly-once accounting; ``ts`` is the poll time (UTC, ms), which
is also the InfluxDB timestamp, so a redelivered message overwrites itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1
TOPIC_ROOT = "alumon/v1"
MAX_PAYLOAD_BYTES = 256 * 1024


class Quality(StrEnum):
    GOOD = "good"
    BAD = "bad"  # device answered but the value is unusable (exception code, decode error)
    STALE = "stale"  # device did not answer; value is the last good one or absent
    OUT_OF_RANGE = "out_of_range"  # decoded fine but outside the profile's plausible range


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Strict types on numbers and flags: "5" or true for a value is a gateway bug to refuse, not to coerce.
    # NaN and infinity are refused (checked in pydantic's core: this runs for every reading ingest receives).
    value: Annotated[float | None, Field(strict=True, allow_inf_nan=False)]  # None: the device gave nothing usable
    quality: Quality
    unit: Annotated[str, Field(max_length=64)] = ""
    flags: list[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]] = []  # e.g. rollover, reset


class TelemetryMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    site: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    device: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    seq: Annotated[int, Field(strict=True, ge=0, lt=2**63)]
    ts: datetime
    historical: Annotated[bool, Field(strict=True)] = False  # replayed from the edge spool: no live alerts
    readings: Annotated[dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], Reading], Field(max_length=10000)]

    @field_validator("ts", mode="before")
    @classmethod
    def _iso_text(cls, ts: object) -> object:
        if not isinstance(ts, str | datetime):  # pydantic would read a number as epoch seconds
            raise ValueError("ts must be an ISO 8601 time with a UTC offset, e.g. 2026-11-24T09:30:00.123Z")
        return ts

    @field_validator("ts")
    @classmethod
    def _utc(cls, ts: datetime) -> datetime:
        if ts.tzinfo is None:
            raise ValueError("ts must carry a UTC offset (e.g. 2026-11-24T09:30:00.123Z)")
        return ts.astimezone(UTC)

    @cached_property
    def ts_ms(self) -> int:
        return round(self.ts.timestamp() * 1000)


class TelemetryError(ValueError):
    """A payload that is not a valid telemetry message; ``reason`` is short and machine-friendly."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def telemetry_topic(site: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{device}/telemetry"


def status_topic(site: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{device}/status"


def metrics_topic(site: str, agent: str) -> str:
    """Self-metrics of a service (edge agent, ingest): QoS 0, not retained."""
    return f"{TOPIC_ROOT}/{site}/{agent}/metrics"


def alert_topic(site: str, rule: str) -> str:
    return f"{TOPIC_ROOT}/{site}/alerts/{rule}"


def deadletter_topic(site: str) -> str:
    return f"{TOPIC_ROOT}/{site}/deadletter"


def telemetry_subscription(site: str) -> str:
    return f"{TOPIC_ROOT}/{site}/+/telemetry"


def metrics_subscription(site: str) -> str:
    """Every service's self-metrics of a site (analytics stores them for the health dashboard)."""
    return f"{TOPIC_ROOT}/{site}/+/metrics"


def parse_utc_ms(text: str) -> int:
    """ISO 8601 with an offset (``Z`` or ``+08:00``) to epoch milliseconds; a time without one is refused."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"{text}: time must carry a UTC offset (Z or +08:00)")
    return round(ts.timestamp() * 1000)


def format_ts(ts: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and a Z suffix."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def encode(msg: TelemetryMessage) -> bytes:
    body = msg.model_dump(mode="json", exclude_defaults=False)
    body["ts"] = format_ts(msg.ts)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_slowly(payload: bytes) -> object:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TelemetryError("not_utf8", str(exc)) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        reason = "non_finite" if "not allowed" in str(exc) else "not_json"
        raise TelemetryError(reason, str(exc)) from exc


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in telemetry")


def decode(payload: bytes, topic: str | None = None) -> TelemetryMessage:
    """Parse and validate a payload; raise ``TelemetryError`` with a clear reason otherwise."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise TelemetryError("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        data = orjson.loads(payload)  # the fast parser for the normal case (ingest's hot path)
    except orjson.JSONDecodeError:
        data = _parse_slowly(payload)  # says exactly what is wrong, or parses what orjson refuses (big ints)
    if not isinstance(data, dict):
        raise TelemetryError("not_object", f"payload is a JSON {type(data).__name__}, not an object")
    if type(data.get("v")) is not int or data["v"] != SCHEMA_VERSION:  # not true or 1.0, which equal 1
        raise TelemetryError("wrong_version", f"schema version {data.get('v')!r}, expected {SCHEMA_VERSION}")
    try:
        msg = TelemetryMessage.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TelemetryError("invalid", f"{where}: {first['msg']} ({exc.error_count()} error(s))") from exc
    if topic is not None:
        expected = telemetry_topic(msg.site, msg.device)
        if topic != expected:
            raise TelemetryError("topic_mismatch", f"payload is for {expected}, arrived on {topic}")
    return msg


def utc_now() -> datetime:
    return datetime.now(UTC)
