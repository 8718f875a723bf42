"""The telemetry contract refuses bad payloads with a clear reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from alumon.telemetry import MAX_PAYLOAD_BYTES, TelemetryError, TelemetryMessage, decode, encode, telemetry_topic

TOPIC = telemetry_topic("gx-demo", "pl1-rectifier")


def good(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 1, "site": "gx-demo", "device": "pl1-rectifier", "seq": 7,
                            "ts": "2026-11-24T09:30:00.123Z",
                            "readings": {"line_current_ka": {"value": 400.5, "quality": "good", "unit": "kA"}}}
    body.update(over)
    return body


def reason(payload: bytes, topic: str = TOPIC) -> str:
    with pytest.raises(TelemetryError) as info:
        decode(payload, topic)
    return info.value.reason


def test_round_trip() -> None:
    msg = decode(json.dumps(good()).encode(), TOPIC)
    assert msg.ts == datetime(2026, 11, 24, 9, 30, 0, 123000, tzinfo=UTC)
    assert msg.ts_ms == 1795512600123
    again = decode(encode(msg), TOPIC)
    assert again == msg


@pytest.mark.parametrize(("payload", "expected"), [
    (b"not json", "not_json"),
    (b"\xff\xfe\x00", "not_utf8"),
    (b"[1, 2]", "not_object"),
    (json.dumps(good(v=2)).encode(), "wrong_version"),
    (json.dumps(good()).replace("400.5", "NaN").encode(), "non_finite"),
    (json.dumps(good()).replace("400.5", "Infinity").encode(), "non_finite"),
    (json.dumps({k: v for k, v in good().items() if k != "seq"}).encode(), "invalid"),
    (json.dumps(good(ts="2026-11-24T09:30:00")).encode(), "invalid"),
    (json.dumps(good(seq=-1)).encode(), "invalid"),
    (json.dumps(good(readings={"x": {"value": "high", "quality": "good"}})).encode(), "invalid"),
    (json.dumps(good(readings={"x": {"value": 1.0, "quality": "great"}})).encode(), "invalid"),
    (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "oversized"),
    # Wrong types are refused, never coerced: true and 1.0 equal 1 in Python, pydantic reads numbers as times.
    (json.dumps(good(v=True)).encode(), "wrong_version"),
    (json.dumps(good(v=1.0)).encode(), "wrong_version"),
    (json.dumps(good(ts=1795512600)).encode(), "invalid"),
    (json.dumps(good(seq="5")).encode(), "invalid"),
    (json.dumps(good(seq=True)).encode(), "invalid"),
    (json.dumps(good(historical=1)).encode(), "invalid"),
    (json.dumps(good(readings={"x": {"value": "1.5", "quality": "good"}})).encode(), "invalid"),
    (json.dumps(good(readings={"x": {"value": True, "quality": "good"}})).encode(), "invalid"),
])
def test_refusals(payload: bytes, expected: str) -> None:
    assert reason(payload) == expected


def test_topic_mismatch() -> None:
    assert reason(json.dumps(good()).encode(), telemetry_topic("gx-demo", "pl2-rectifier")) == "topic_mismatch"


def test_message_model_refuses_nan_directly() -> None:
    with pytest.raises(ValueError, match="finite"):
        TelemetryMessage.model_validate(good(readings={"x": {"value": float("nan"), "quality": "good"}}))
