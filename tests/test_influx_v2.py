"""The ``api: v2`` writer (alumon/influx_v2.py) against a real VictoriaMetrics, which takes InfluxDB 2.x writes
on ``/api/v2/write``: exact sample counts read back through VictoriaMetrics' own export API, idempotent
rewrites, outages, the token from the environment, and what a malformed line gets.

VictoriaMetrics stores line protocol as one series per measurement and field: ``telemetry`` with field ``value``
becomes metric ``telemetry_value``, tags become labels; org and bucket are accepted and ignored. The error
statuses VictoriaMetrics never sends (401, 404, partial write, 429, 5xx) are checked against a scripted HTTP
server, through the same library code path.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from alumon.config import InfluxConnection
from alumon.influx import InfluxError, InfluxUnavailable, PartialWrite, open_writer
from alumon.influx_v2 import InfluxV2Client
from alumon.stack import Server, start_victoria_metrics
from alumon.telemetry import TelemetryMessage
from ingest.lines import message_lines
from tests.test_ingest import message as ingest_message

# In the recent past: VictoriaMetrics refuses samples far in the future, and "now" bounds its export.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
_devices = itertools.count()


def device_name(what: str) -> str:
    """A device of this test alone: the session shares one VictoriaMetrics, tests keep to their own series."""
    return f"v2-{what}-{os.getpid()}-{next(_devices)}"


def message(device: str, seq: int) -> TelemetryMessage:
    return ingest_message(device, seq, T0)  # near now: the queries below look back a few hours


def lines_for(device: str, count: int) -> list[str]:
    return [line for seq in range(count) for line in message_lines(message(device, seq))]


def ts_ms(seq: int) -> int:
    return round((T0 + timedelta(seconds=seq)).timestamp() * 1000)


def vm_url(vm: Server) -> str:
    return f"http://127.0.0.1:{vm.port}"


def client_for(vm: Server, timeout_s: float = 5.0) -> InfluxV2Client:
    return InfluxV2Client(vm_url(vm), "gx", "alumon", None, timeout_s)


def export(vm: Server, selector: str) -> list[dict[str, Any]]:
    """Every raw sample of the matching series (``/api/v1/export``, one JSON series per line), after making
    what was just written searchable (rows otherwise wait up to a second in VictoriaMetrics' buffer)."""
    requests.get(f"{vm_url(vm)}/internal/force_flush", timeout=10).raise_for_status()
    resp = requests.post(f"{vm_url(vm)}/api/v1/export", data={"match[]": selector}, timeout=30)
    resp.raise_for_status()
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def by_quantity(series: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """quantity label -> {timestamp ms: value}, refusing a series that holds a timestamp twice."""
    out: dict[str, dict[int, float]] = {}
    for s in series:
        points = dict(zip(s["timestamps"], s["values"], strict=True))
        assert len(points) == len(s["timestamps"]), f"duplicate timestamps in {s['metric']}"
        assert s["metric"]["quantity"] not in out
        out[s["metric"]["quantity"]] = points
    return out


def invalid_influx_rows(vm: Server) -> int:
    """VictoriaMetrics' own count of line-protocol lines it could not parse and skipped."""
    for line in requests.get(f"{vm_url(vm)}/metrics", timeout=10).text.splitlines():
        if line.startswith('vm_rows_invalid_total{type="influx"}'):
            return int(float(line.split()[-1]))
    raise AssertionError("vm_rows_invalid_total{type=\"influx\"} missing from /metrics")


# --- against VictoriaMetrics ---------------------------------------------------------------------------------


def test_exact_counts_read_back(victoria_metrics: Server) -> None:
    device, n = device_name("counts"), 500
    lines = lines_for(device, n)
    assert len(lines) == 3 * n
    client = client_for(victoria_metrics)
    try:
        assert client.database == "alumon"
        assert client.ping()
        client.create_database()  # v2: only checks the server answers
        for start in range(0, len(lines), 400):  # several writes, the last one short
            assert client.write_lines(lines[start:start + 400]) is None
        assert client.write_lines([]) is None
    finally:
        client.close()

    values = export(victoria_metrics, f'telemetry_value{{device="{device}"}}')
    assert [s["metric"] for s in sorted(values, key=lambda s: str(s["metric"]["quantity"]))] == [
        {"__name__": "telemetry_value", "device": device, "quantity": q, "site": "gx-demo"}
        for q in ("line_current_ka", "series_voltage_v")
    ]  # tags became labels, org and bucket left no trace; cells_in_circuit has no value field
    points = by_quantity(values)
    assert points["line_current_ka"] == {ts_ms(s): 400.0 + s % 7 for s in range(n)}
    assert points["series_voltage_v"] == {ts_ms(s): 1190.0 for s in range(n)}

    seqs = by_quantity(export(victoria_metrics, f'telemetry_seq{{device="{device}"}}'))  # on every line
    assert sorted(seqs) == ["cells_in_circuit", "line_current_ka", "series_voltage_v"]
    assert all(p == {ts_ms(s): float(s) for s in range(n)} for p in seqs.values())

    # VictoriaMetrics 1.79 keeps a string field as a series of zeros: the text ("good", "stale") is lost.
    quality = by_quantity(export(victoria_metrics, f'telemetry_quality{{device="{device}"}}'))
    assert sum(len(p) for p in quality.values()) == 3 * n
    assert {v for p in quality.values() for v in p.values()} == {0.0}

    # The same count through PromQL, as a dashboard would see it.
    resp = requests.post(f"{vm_url(victoria_metrics)}/api/v1/query", timeout=30, data={
        "query": f'sum(count_over_time(telemetry_value{{device="{device}"}}[2h]))',
        "time": str(ts_ms(n) // 1000)})
    assert resp.json()["data"]["result"][0]["value"][1] == str(2 * n)


def test_rewrite_does_not_duplicate(victoria_metrics: Server) -> None:
    """Ingest rewrites a redelivered batch; with -dedup.minScrapeInterval=1ms (start_victoria_metrics) the
    second copy of a sample replaces the first. Without the flag VictoriaMetrics 1.79 keeps both."""
    device, n = device_name("rewrite"), 100
    lines = lines_for(device, n)
    client = client_for(victoria_metrics)
    try:
        assert client.write_lines(lines) is None
        assert client.write_lines(lines) is None  # the same batch again
        for line in reversed(lines[: 3 * 10]):  # and part of it once more, one line per write, other order
            assert client.write_lines([line]) is None
    finally:
        client.close()
    points = by_quantity(export(victoria_metrics, f'telemetry_value{{device="{device}"}}'))
    assert points["line_current_ka"] == {ts_ms(s): 400.0 + s % 7 for s in range(n)}
    assert points["series_voltage_v"] == {ts_ms(s): 1190.0 for s in range(n)}


def test_malformed_lines_are_skipped_with_204(victoria_metrics: Server) -> None:
    """VictoriaMetrics answers 204 to a batch holding unparsable lines: it stores the good lines, skips the bad
    ones, logs "cannot unmarshal InfluxDB line ...; skipping it" and counts them in vm_rows_invalid_total.
    So the writer reports full success (None): the skipped lines are visible only in VictoriaMetrics' own
    metric and log. (InfluxDB 2.x/3.x answer 400 instead, see test_error_mapping.)"""
    device = device_name("malformed")
    good = lines_for(device, 5)
    bad = [
        f"telemetry,device={device},quantity=x,site=gx-demo",  # no field set
        "garbage",
        f"telemetry,device={device},quantity=y,site=gx-demo value=1 not-a-timestamp",
    ]
    invalid_before = invalid_influx_rows(victoria_metrics)
    client = client_for(victoria_metrics)
    try:
        assert client.write_lines([*good[:7], *bad, *good[7:]]) is None
    finally:
        client.close()
    points = by_quantity(export(victoria_metrics, f'telemetry_value{{device="{device}"}}'))
    assert points == {"line_current_ka": {ts_ms(s): 400.0 + s % 7 for s in range(5)},
                      "series_voltage_v": {ts_ms(s): 1190.0 for s in range(5)}}
    # The counter shows up on /metrics up to a couple of seconds late (observed with 1.79): wait, then be exact.
    deadline = time.monotonic() + 10
    while invalid_influx_rows(victoria_metrics) - invalid_before < len(bad) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert invalid_influx_rows(victoria_metrics) - invalid_before == len(bad)
    log = Path(victoria_metrics.log).read_text(encoding="utf-8", errors="replace")
    assert 'cannot unmarshal InfluxDB line "garbage"' in log


def test_from_config_with_token_from_env(victoria_metrics: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config names the variable; the token comes from the environment. VictoriaMetrics ignores it (its
    Authorization header is checked against the scripted server in test_token_is_sent)."""
    monkeypatch.setenv("ALUMON_TEST_INFLUX_TOKEN", "s3cret-token")
    conn = InfluxConnection(api="v2", url=vm_url(victoria_metrics), org="gx", bucket="plant-a",
                            token_env="ALUMON_TEST_INFLUX_TOKEN", timeout_s=5.0)
    writer = open_writer(conn)
    assert isinstance(writer, InfluxV2Client)
    assert (writer.url, writer.org, writer.bucket, writer.database, writer.timeout_s) == (
        vm_url(victoria_metrics), "gx", "plant-a", "plant-a", 5.0)
    device = device_name("config")
    try:
        writer.create_database()
        assert writer.write_lines(lines_for(device, 20)) is None
    finally:
        writer.close()
    points = by_quantity(export(victoria_metrics, f'telemetry_value{{device="{device}"}}'))
    assert sum(len(p) for p in points.values()) == 40


def test_server_stopped_is_unavailable(tmp_path: Path) -> None:
    """A server of its own, stopped between two writes: the second fails at once (connection refused), as
    InfluxUnavailable, so ingest keeps the batch in its disk buffer."""
    vm = start_victoria_metrics(tmp_path)
    client = client_for(vm, timeout_s=3.0)
    try:
        assert client.write_lines(lines_for(device_name("stopped"), 2)) is None
        vm.stop()
        assert not vm.alive()
        began = time.monotonic()
        with pytest.raises(InfluxUnavailable) as info:
            client.write_lines(lines_for(device_name("stopped"), 2))
        assert time.monotonic() - began < client.timeout_s
        assert info.value.retryable and info.value.status is None
        assert "NewConnectionError" in str(info.value)
        assert not client.ping()
        with pytest.raises(InfluxUnavailable):
            client.create_database()
    finally:
        client.close()
        vm.stop()


def test_silent_server_times_out_as_unavailable() -> None:
    """A server that accepts the connection and never answers: InfluxUnavailable after timeout_s, not later
    (no retries inside the library)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections complete in the backlog; nothing ever reads or answers
        client = InfluxV2Client(f"http://127.0.0.1:{listener.getsockname()[1]}", "gx", "alumon", None, 0.5)
        try:
            began = time.monotonic()
            with pytest.raises(InfluxUnavailable) as info:
                client.write_lines(["m v=1 1"])
            elapsed = time.monotonic() - began
        finally:
            client.close()
    assert 0.4 < elapsed < 2.0
    assert "Timeout" in str(info.value)


# --- answers VictoriaMetrics never gives: a scripted server --------------------------------------------------


class Scripted(ThreadingHTTPServer):
    """Answers every request with ``status`` and ``body`` and records the requests it got."""

    status = 204
    body = ""
    received: list[tuple[str, str, dict[str, str], bytes]]


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        self.server.received.append((self.command, self.path, dict(self.headers.items()), data))
        payload = self.server.body.encode()
        self.send_response(self.server.status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_token_is_sent(scripted: Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALUMON_TEST_INFLUX_TOKEN", "s3cret-token")
    conn = InfluxConnection(api="v2", url=f"http://127.0.0.1:{scripted.server_address[1]}/", org="gx org",
                            bucket="plant-a", token_env="ALUMON_TEST_INFLUX_TOKEN")
    writer = InfluxV2Client.from_config(conn)
    try:
        assert writer.write_lines(["m,a=1 v=1 1764000000000", "m,a=2 v=2 1764000000001"]) is None
    finally:
        writer.close()
    ((method, path, headers, body),) = scripted.received
    assert (method, path) == ("POST", "/api/v2/write?org=gx+org&bucket=plant-a&precision=ms")
    assert headers["Authorization"] == "Token s3cret-token"
    assert body == b"m,a=1 v=1 1764000000000\nm,a=2 v=2 1764000000001"


def test_no_token_sends_no_authorization(scripted: Scripted) -> None:
    writer = InfluxV2Client(f"http://127.0.0.1:{scripted.server_address[1]}", "gx", "b", None, 5.0)
    try:
        assert writer.write_lines(["m v=1 1"]) is None
    finally:
        writer.close()
    assert "Authorization" not in scripted.received[0][2]


V2_PARTIAL = ('{"code":"unprocessable entity","message":"failure writing points to database: partial write: '
              'points beyond retention policy dropped=2"}')
V3_PARTIAL = ('{"error":"partial write of line protocol occurred","data":[{"original_line":"bad","line_number":2,'
              '"error_message":"No fields were provided"},{"original_line":"worse","line_number":3,'
              '"error_message":"invalid column type"}]}')


@pytest.mark.parametrize(("status", "body", "partial"), [
    (422, V2_PARTIAL, "failure writing points to database: partial write: points beyond retention policy "
                      "dropped=2"),
    (400, V3_PARTIAL, "partial write of line protocol occurred: No fields were provided dropped=2"),
])
def test_partial_write(scripted: Scripted, status: int, body: str, partial: str) -> None:
    scripted.status, scripted.body = status, body
    writer = InfluxV2Client(f"http://127.0.0.1:{scripted.server_address[1]}", "gx", "b", "t", 5.0)
    try:
        assert writer.write_lines(["m v=1 1", "bad", "worse"]) == PartialWrite(partial)
    finally:
        writer.close()


@pytest.mark.parametrize(("status", "body", "unavailable", "retryable", "text"), [
    (401, '{"code":"unauthorized","message":"unauthorized access"}', True, True, "check the token"),
    (403, '{"code":"forbidden","message":"insufficient permissions for write"}', True, True, "check the token"),
    (404, '{"code":"not found","message":"bucket \\"b\\" not found"}', False, True, "bucket 'b' or org 'gx'"),
    (400, '{"code":"invalid","message":"unable to parse \'bad\': missing fields"}', False, False,
     "unable to parse 'bad'"),
    (413, '{"code":"request too large","message":"cannot read data: points batch is too large"}', False, False,
     "too large"),
    (429, '{"code":"too many requests","message":"org exceeded write limits"}', True, True, "write limits"),
    (500, '{"code":"internal error","message":"engine: cache-max-memory-size exceeded"}', True, True,
     "cache-max-memory-size"),
    (503, "", True, True, "HTTP 503"),
])
def test_error_mapping(scripted: Scripted, status: int, body: str, unavailable: bool, retryable: bool,
                       text: str) -> None:
    scripted.status, scripted.body = status, body
    writer = InfluxV2Client(f"http://127.0.0.1:{scripted.server_address[1]}", "gx", "b", "t", 5.0)
    try:
        with pytest.raises(InfluxError) as info:
            writer.write_lines(["m v=1 1"])
    finally:
        writer.close()
    assert isinstance(info.value, InfluxUnavailable) is unavailable
    assert (info.value.status, info.value.retryable) == (status, retryable)
    assert text in str(info.value)
    assert len(scripted.received) == 1  # one attempt, no retries inside the library
