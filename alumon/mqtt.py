"""The one place that builds paho-mqtt clients (VERSION2 callbacks, MQTT 5, TLS, credentials from env).

paho 2.x silently picks the deprecated VERSION1 callbacks unless told otherwise, and MQTT 5 refuses
``clean_session`` (shared/environment.md §5), so every service gets its client from here.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alumon.config import MqttConnection, secret

SESSION_EXPIRY_S = 7 * 24 * 3600  # a persistent session outlives a week-long outage of the consumer


def make_client(conn: MqttConnection, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(
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


def connect_properties(persistent: bool) -> Properties:
    """CONNECT properties: a persistent session keeps QoS 1 messages for us while we are away."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    return props


def connect(client: mqtt.Client, conn: MqttConnection, *, persistent: bool) -> None:
    """Start connecting in the background; paho's loop owns reconnection from then on."""
    client.connect_async(
        conn.host, conn.port, keepalive=conn.keepalive_s, clean_start=not persistent,
        properties=connect_properties(persistent),
    )
