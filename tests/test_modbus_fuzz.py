"""Fuzzing the edge's Modbus side: a raw TCP server answers each request with bytes hypothesis draws (noise, a
right header around a wrong body, wrong function codes and byte counts, exception codes, foreign transaction
and unit ids, truncated and overlong frames). Every poll must come back as a result, never an exception;
a bad answer is refused with its reason and never produces a good reading; a healthy device polled in the
same event loop keeps its exact values."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alumon.config import Device
from alumon.profiles import DeviceProfile
from alumon.stack import free_port
from alumon.telemetry import Quality
from edge.lines import build_lines
from edge.poller import DevicePoller

PROFILE = DeviceProfile.model_validate({"profile": "fuzz-meter", "fields": [
    {"name": "energy_kwh", "address": 0, "type": "u32", "scale": 0.1, "unit": "kWh", "kind": "counter"},
    {"name": "power_kw", "address": 2, "type": "f32", "unit": "kW"}]})
GOOD_REGISTERS = [0, 12345, 0x4148, 0x0000]  # 1234.5 kWh (ABCD u32) and 12.5 kW (f32 0x41480000)

Answer = Callable[[int, int], bytes]  # (transaction id, unit id) -> the bytes sent back


def mbap(tid: int, unit: int, pdu: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1 if length is None else length, unit) + pdu


def answers() -> st.SearchStrategy[Answer]:
    noise = st.binary(min_size=0, max_size=40).map(lambda b: (lambda _t, _u: b))
    body = st.binary(min_size=0, max_size=20)
    wrong_body = body.map(lambda pdu: (lambda t, u: mbap(t, u, pdu)))
    wrong_function = st.tuples(st.integers(0, 255).filter(lambda f: f != 3), body).map(
        lambda a: (lambda t, u: mbap(t, u, bytes([a[0]]) + a[1])))
    wrong_count = st.tuples(st.integers(0, 255), st.binary(max_size=20)).map(
        lambda a: (lambda t, u: mbap(t, u, bytes([3, a[0]]) + a[1])))
    exception = st.integers(0, 255).map(lambda code: (lambda t, u: mbap(t, u, bytes([0x83, code]))))
    foreign = st.tuples(st.integers(0, 65535), st.integers(0, 255)).map(
        lambda a: (lambda t, u: mbap(a[0] if a[0] != t else t ^ 1, a[1], bytes([3, 8]) + bytes(8))))
    bad_length = st.integers(0, 65535).map(lambda n: (lambda t, u: mbap(t, u, bytes([3, 8]) + bytes(8), n)))
    return st.one_of(noise, wrong_body, wrong_function, wrong_count, exception, foreign, bad_length)


def good(tid: int, unit: int) -> bytes:
    return mbap(tid, unit, bytes([3, 8]) + b"".join(struct.pack(">H", r) for r in GOOD_REGISTERS))


async def serve(port: int, respond: Callable[[], Answer]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _proto, length, unit = struct.unpack(">HHHB", header)
                await reader.readexactly(length - 1)
                writer.write(respond()(tid, unit))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


def device(name: str, port: int) -> Device:
    return Device.model_validate({"id": name, "profile": "fuzz-meter", "timeout_s": 0.15, "retries": 0,
                                  "failures_to_open": 100, "transport": {"type": "tcp", "host": "127.0.0.1",
                                                                          "port": port}})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=st.lists(answers(), min_size=1, max_size=3))
def test_malformed_modbus_answers_are_refused_and_never_disturb_a_healthy_device(bad: list[Answer]) -> None:
    async def scenario() -> None:
        fuzz_port, good_port = free_port(), free_port()
        queue = list(bad)
        servers = [await serve(fuzz_port, lambda: queue.pop(0) if queue else bad[-1]),
                   await serve(good_port, lambda: good)]
        fuzzed, healthy = device("fuzzed", fuzz_port), device("healthy", good_port)
        lines = build_lines([fuzzed, healthy])
        pollers = [DevicePoller(d, PROFILE, lines[d.id], lambda _r: None) for d in (fuzzed, healthy)]
        try:
            for _ in range(len(bad)):
                now = time.time()
                results = await asyncio.gather(*(p.poll_once(now) for p in pollers))
                fuzz_result, good_result = results
                if fuzz_result.ok:  # only a structurally valid answer can be good: then its values are decoded
                    assert all(r.quality is Quality.GOOD for r in fuzz_result.readings.values())
                else:
                    assert fuzz_result.reason  # refused with a reason
                    assert all(r.quality is not Quality.GOOD and r.value is None
                               for r in fuzz_result.readings.values()), fuzz_result
                assert good_result.ok, good_result.reason
                assert {k: r.value for k, r in good_result.readings.items()} == {
                    "energy_kwh": 1234.5, "power_kw": 12.5}
        finally:
            for line in lines.values():
                line.close()
            for server in servers:
                server.close()
                await server.wait_closed()

    asyncio.run(scenario())
