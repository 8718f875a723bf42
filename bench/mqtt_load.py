"""The benchmarks' load generator: telemetry messages published at QoS 1 over a raw MQTT 3.1.1 socket.

The publisher stands in for the plant's edge gateways, which run on other machines; here it shares the two
cores with the broker, ingest and InfluxDB, so it must cost as little as possible, or the figure measures the
load generator. paho spends about 45 µs of Python per QoS 1 publish (0.43 of a core at 9 500 messages/s in
this benchmark); this one frames packets itself, writes them in bursts and counts PUBACKs on a reader thread
(a few µs per message). The payloads are byte-for-byte the JSON the edge sends (checked against
``alumon.telemetry.decode`` by the callers).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import orjson

BURST = 100  # packets per sendall
MAX_UNACKED = 5000  # messages published and not yet acknowledged by the broker, at most


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def payload(site: str, device: str, seq: int, readings: int, t0_ms: int, period_ms: int = 1000) -> bytes:
    """A telemetry message of ``readings`` energy readings, poll ``seq`` of ``device`` (poll time
    ``t0_ms + seq * period_ms``), built straight with orjson (pydantic's encode costs about 5 times more)."""
    t = t0_ms + seq * period_ms
    return orjson.dumps({
        "v": 1, "site": site, "device": device, "seq": seq,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + f".{t % 1000:03d}Z", "historical": False,
        "readings": {f"q{j:02d}": {"value": 1000.0 + seq + j / 10, "quality": "good", "unit": "kWh", "flags": []}
                     for j in range(readings)}})


class RawPublisher:
    """One MQTT 3.1.1 connection publishing QoS 1 (clean session, no keep-alive: it never idles long)."""

    def __init__(self, host: str, port: int, client_id: str):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _utf8(client_id)
        self.sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        connack = self._read_exactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: CONNACK {connack.hex()}")
        self.published = 0
        self.acked = 0
        self._next_id = 0
        self._burst: list[bytes] = []
        self._acked_cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, name="raw-mqtt-acks", daemon=True)
        self._reader.start()

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        """Count PUBACKs (4 bytes each: the only packets a publisher that never subscribes receives)."""
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            whole = len(pending) // 4
            if any(pending[i * 4] != 0x40 for i in range(whole)):
                raise ConnectionError(f"unexpected packet from the broker: {pending[:16].hex()}")
            pending = pending[whole * 4:]
            with self._acked_cond:
                self.acked += whole
                self._acked_cond.notify_all()

    def publish(self, topic: str, data: bytes) -> None:
        """Queue one QoS 1 PUBLISH; sent with the next burst (``flush`` sends a partial one)."""
        self._next_id = self._next_id % 65535 + 1  # packet ids 1..65535, never 0
        head = _utf8(topic) + struct.pack("!H", self._next_id)
        self._burst.append(b"\x32" + _remaining_length(len(head) + len(data)) + head + data)
        self.published += 1
        if len(self._burst) >= BURST:
            self.flush()

    def flush(self) -> None:
        if self._burst:
            with self._acked_cond:  # bound what is in flight (and keep packet ids unique among it)
                self._acked_cond.wait_for(lambda: self.published - self.acked <= MAX_UNACKED, timeout=120)
            self.sock.sendall(b"".join(self._burst))
            self._burst = []

    def wait_acked(self, timeout_s: float = 120.0) -> bool:
        """Flush, then wait until the broker acknowledged everything published."""
        self.flush()
        with self._acked_cond:
            return self._acked_cond.wait_for(lambda: self.acked >= self.published, timeout=timeout_s)

    def close(self) -> None:
        self.wait_acked(30)
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()
            self._reader.join(timeout=5)
