"""The one place that builds paho-mqtt clients (VERSION2 callbacks, MQTT 5, TLS, credentials from env).

paho 2.x silently picks the deprecated VERSION1 callbacks unless told otherwise, and MQTT 5 refuses
``clean_session`` (shared/environment.md §5), so every service gets its client from here.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alumon.config import MqttConnection, secret

READ_CHUNK = 65536
_PUBACK = struct.Struct("!BBH")
SESSION_EXPIRY_S = 7 * 24 * 3600  # a persistent session outlives a week-long outage of the consumer


class _ReadBufferedSocket:
    """A plain TCP socket that reads up to 64 KiB per system call and serves paho's small reads from memory.

    paho reads every packet in about four ``recv`` calls (type, each length byte, body); at thousands of
    messages a second that was a fifth of ingest's network thread. ``pending()`` tells paho's loop, as it
    does for an SSL socket (which buffers by itself), that bytes are already here, so it does not wait in
    ``select`` for them. Everything else is the socket's own."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._sock.recv(max(bufsize, READ_CHUNK)), 0  # b"": closed; may raise
            if not self._buf:
                return b""
        data = self._buf[self._pos:self._pos + bufsize]
        self._pos += len(data)
        return data

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:  # send, fileno, setblocking, close, ...
        return getattr(self._sock, name)


class MqttClient(mqtt.Client):
    """paho's client with two savings for a high-rate consumer. Both use paho 2.2 internals (the version is
    locked; tests/test_ingest.py would catch a change: unacknowledged messages come back)."""

    def _create_socket(self) -> Any:  # where paho opens the connection (TLS wrapping included)
        sock = super()._create_socket()
        return _ReadBufferedSocket(sock) if type(sock) is socket.socket else sock

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK these QoS 1 messages, in this order, in one socket write instead of one each: the bytes
        ``ack`` sends per message (type, length 2, packet id; MQTT 5 allows omitting the reason code), queued
        as one outgoing buffer. Half of ingest's acknowledging cost was paho waking its loop per PUBACK."""
        if mids:
            self._packet_queue(PUBACK, b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in mids), mids[-1], 1)


def make_client(conn: MqttConnection, client_id: str, *, manual_ack: bool = False) -> MqttClient:
    client = MqttClient(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
    )
    user = secret(conn.username_env)
    if user is not None:
        client.username_pw_set(user, secret(conn.password_env))
    if conn.tls:
        ctx = ssl.create_default_context(cafile=str(conn.ca_file) if conn.ca_file else None)
        if conn.cert_file is not None:
            ctx.load_cert_chain(str(conn.cert_file), str(conn.key_file) if conn.key_file else None)
        client.tls_set_context(ctx)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(persistent: bool, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties: a persistent session keeps QoS 1 messages for us while we are away; the receive
    maximum is how many QoS 1 messages the broker may have in flight to us unacknowledged (MQTT 5 §3.1.2.11.3;
    without it mosquitto uses its ``max_inflight_messages``, 20 by default)."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


def connect(client: mqtt.Client, conn: MqttConnection, *, persistent: bool,
            receive_maximum: int | None = None) -> None:
    """Start connecting in the background; paho's loop owns reconnection from then on."""
    client.connect_async(
        conn.host, conn.port, keepalive=conn.keepalive_s, clean_start=not persistent,
        properties=connect_properties(persistent, receive_maximum),
    )
