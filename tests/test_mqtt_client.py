"""alumon.mqtt's client: the read-buffered socket and acknowledging many messages in one write, against a
real mosquitto (what the broker redelivers after a reconnect shows exactly which PUBACKs it took)."""

from __future__ import annotations

import socket
import time

import pytest

from alumon.config import MqttConnection
from alumon.mqtt import MqttClient, _ReadBufferedSocket, connect, make_client
from alumon.stack import Server
from tests.conftest import mqtt_client


def test_buffered_socket_serves_small_reads_and_tells_what_is_pending() -> None:
    a, b = socket.socketpair()
    sock = _ReadBufferedSocket(b)
    sock.setblocking(False)  # passed through to the socket, as paho does
    with pytest.raises(BlockingIOError):  # nothing there: the socket's own error, which paho expects
        sock.recv(1)
    a.sendall(b"\x30\x05hello")
    time.sleep(0.05)
    assert sock.recv(1) == b"\x30" and sock.pending() == 6
    assert sock.recv(1) == b"\x05" and sock.recv(100) == b"hello" and sock.pending() == 0
    a.close()
    time.sleep(0.05)
    assert sock.recv(1) == b""  # the peer closed: paho sees the connection lost
    sock.close()


def receive(port: int, client_id: str, n: int, timeout_s: float = 10.0) -> tuple[MqttClient, list[int]]:
    """A persistent manual-ack subscriber; returns it (still connected) with the mids of what arrived."""
    conn = MqttConnection(host="127.0.0.1", port=port)
    client = make_client(conn, client_id, manual_ack=True)
    mids: list[int] = []
    client.on_message = lambda _c, _u, msg: mids.append(msg.mid)
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe("ackmany/t", qos=1)
    connect(client, conn, persistent=True, receive_maximum=1000)
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while len(mids) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # anything beyond n would have arrived by now
    return client, mids


def test_ack_many_acknowledges_exactly_the_given_messages(mosquitto: Server) -> None:
    client, first = receive(mosquitto.port, "ack-many", 0, timeout_s=1.0)  # the session exists and subscribes
    assert first == []
    publisher = mqtt_client(mosquitto.port)
    for i in range(50):
        publisher.publish("ackmany/t", str(i), qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 10
    while len(first) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(first) == 50  # the receive maximum lets all of them in before any acknowledgement
    client.ack_many(first[:20])
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()

    again, redelivered = receive(mosquitto.port, "ack-many", 30)
    assert redelivered == first[20:]  # the broker took the 20 acknowledgements, and only those
    again.ack_many(redelivered)
    time.sleep(0.5)
    again.disconnect()
    again.loop_stop()

    last, nothing = receive(mosquitto.port, "ack-many", 0, timeout_s=1.0)
    assert nothing == []
    last.disconnect()
    last.loop_stop()
    publisher.loop_stop()
