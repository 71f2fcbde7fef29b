"""The paho client: how it is built, and the few places where paho has no public API.

paho 2 offers no way to cancel a queued publish, to switch protocol version after a
refusal, or to run `loop_forever` in a thread of our own while other threads publish;
`loop_start` and paho's own 3.1.1 -> 3.1 downgrade do these through the attributes used
here. Keeping every such access in this module leaves one place to check on a paho upgrade.
"""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt

from edge_agent.config.model import MqttConfig, TlsConfig
from edge_agent.errors import ConfigError

PROTOCOLS = {"mqtt5": mqtt.MQTTv5, "mqtt3.1.1": mqtt.MQTTv311, "auto": mqtt.MQTTv5}
UNSUPPORTED_PROTOCOL = 132
"""CONNACK reason of a broker that does not speak MQTT 5 (paho maps 3.1.1's code 1 to it)."""


def make_client(config: MqttConfig, client_id: str, protocol: int) -> mqtt.Client:
    """A paho client with the config's credentials and TLS (clean session, MQTT 5 or 3.1.1)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if protocol == mqtt.MQTTv5 else True,
        protocol=protocol,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    elif config.password is not None:
        raise ConfigError("mqtt.password is set but mqtt.username is not; set both")
    if config.tls is not None:
        client.tls_set_context(tls_context(config.tls))
        if config.tls.insecure:
            client.tls_insecure_set(True)
    return client


def use_mqtt311(client: mqtt.Client) -> None:
    """Connect as 3.1.1 from the next attempt on (after a broker refused MQTT 5)."""
    client._protocol = mqtt.MQTTv311
    client._clean_session = True


def adopt_network_thread(client: mqtt.Client) -> None:
    """Make the calling thread the client's network thread, as `loop_start` does, so
    publish() from other threads wakes it instead of writing to the socket itself."""
    if client._sockpairR is None:
        client._sockpairR, client._sockpairW = mqtt._socketpair_compat()
    client._thread = threading.current_thread()
    client._thread_terminate = False


def subscribe_no_local(client: mqtt.Client, topic: str, protocol: int) -> str | None:
    """Subscribe at QoS 1; under MQTT 5 with no-local, so what this client publishes on
    a matching topic (command results on cmd/<name>/result) is not sent back to it.
    Returns paho's error text, None on success."""
    if protocol == mqtt.MQTTv5:
        options = mqtt.SubscribeOptions(qos=1, noLocal=True)
        result, _mid = client.subscribe(topic, options=options)
    else:
        result, _mid = client.subscribe(topic, qos=1)
    return None if result == mqtt.MQTT_ERR_SUCCESS else mqtt.error_string(result)


def acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged a queued QoS 1 message. `is_published()` raises
    for one published while disconnected (rc NO_CONN) even after paho re-sent it on the
    reconnect and the ack came; the flag it guards is right."""
    with info._condition:
        return bool(info._published)


def forget_message(client: mqtt.Client, mid: int) -> None:
    """Drop a message from paho's queue, so a reconnect does not send it again (paho's
    reconnect re-sends all of `_out_messages` and recounts its window from it). Not from
    inside a paho callback: paho may be iterating that queue."""
    with client._out_message_mutex:
        client._out_messages.pop(mid, None)


def oversize_messages(client: mqtt.Client, limit: int) -> list[tuple[int, mqtt.MQTTMessage]]:
    """(mid, message) of queued messages over `limit` bytes; their payload may be replaced
    (paho builds the packet from it when it sends or re-sends)."""
    with client._out_message_mutex:
        return [(mid, message) for mid, message in client._out_messages.items()
                if len(message.payload) > limit]


def disconnect_reason(flags: object, reason_code: mqtt.ReasonCode, properties: object) -> str:
    """The broker's words where it sent any (MQTT 5 DISCONNECT), else paho's."""
    text = f"{reason_code} (code {reason_code.value})"
    string = getattr(properties, "ReasonString", None)
    if string:
        text += f": {string}"
    if getattr(flags, "is_disconnect_packet_from_server", False):
        text = f"the broker said {text}"
    return text


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A verifying TLS 1.2+ context; `insecure` skips only the hostname check."""
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"mqtt.tls.ca_file: cannot load {tls.ca_file}: {err}") from err
    if tls.key_file is not None and tls.cert_file is None:
        raise ConfigError("mqtt.tls.key_file is set but mqtt.tls.cert_file is not; set both")
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file is not None else None
            )
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"mqtt.tls.cert_file/key_file: cannot load {tls.cert_file}: {err}"
            ) from err
    if tls.insecure:
        context.check_hostname = False
    return context
