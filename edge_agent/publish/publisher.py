"""MQTT publishing: status with a last will, retained info, detections through a spool.

Topics (docs/mqtt.md):
  <prefix>/<device_id>/status             "online"/"offline", retained, QoS 1, last will
  <prefix>/<device_id>/info               JSON, retained, QoS 1, re-sent after each connect
  <prefix>/<device_id>/<camera>/detections JSON, QoS from config, not retained
  <prefix>/<device_id>/<camera>/events     JSON, spooled like detections (docs/events.md)
  <prefix>/<device_id>/cmd/#              subscribed (QoS 1) once `subscribe_commands` is
                                          called; results go out with `publish_message`

MQTT 5 first, 3.1.1 when the broker refuses 5: a 5 broker states its Maximum Packet
Size in CONNACK and says why it drops a connection or refuses a message, which 3.1.1
cannot; both run a clean session (session expiry 0), so delivery is the same.
paho's network loop runs in a `Worker` ("mqtt-network"), so an exception in it (or in a
callback) is logged and the loop restarted, never a silently dead connection.
"""

from __future__ import annotations

import logging
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_agent.config.model import MqttConfig
from edge_agent.publish.message_size import packet_overhead
from edge_agent.publish.mqtt_client import (
    PROTOCOLS,
    UNSUPPORTED_PROTOCOL,
    adopt_network_thread,
    disconnect_reason,
    make_client,
    subscribe_no_local,
    tls_context,
    use_mqtt311,
)
from edge_agent.publish.outbox import MAX_INFLIGHT, Outbox
from edge_agent.publish.spool_config import full_reason, open_spool
from edge_agent.publish.stats import PublisherStats
from edge_agent.workers import Worker

__all__ = ["Publisher", "tls_context"]  # tls_context: watch and doctor import it from here

log = logging.getLogger(__name__)

PACKET_TOO_LARGE = 149
"""MQTT 5 reason code of a message over the broker's size limit."""
CONTROL_HEADROOM = 16
"""Room kept in paho's queue above the detection window for status, info and state
messages, so "online" still fits after an outage."""
RESULT_HEADROOM = 32
"""Room for command results (edge_agent.commands.results keeps at most this many)."""

RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 10
"""A broker on the site LAN is cheap to retry; 30 s made a 20 s outage cost 31 s (soak)."""


class Publisher:
    """One MQTT connection for the whole agent; camera threads share it.

    Detections go through the `Outbox` (spool + sender), so a broker that is down or
    slow costs disk, bounded, never the pipeline's time or memory. Status, info and
    state messages are retained QoS 1 and go straight to the client.
    """

    def __init__(self, config: MqttConfig, device_id: str, state_dir: Path | None = None) -> None:
        self._config = config
        base = f"{config.topic_prefix.rstrip('/')}/{device_id}"
        self.status_topic = f"{base}/status"
        self.info_topic = f"{base}/info"
        self._base = base
        self.client_id = config.client_id or f"edge-agent-{device_id}"
        self._lock = threading.Lock()
        self._info: bytes | None = None
        self._connected = False
        self._closing = False
        self._closed = False
        self._started = False
        self.last_error: str | None = None
        """Why the last connection attempt failed or the connection dropped; None once up."""
        self.last_disconnect: str | None = None
        """The reason of the last dropped connection (kept after reconnecting)."""
        self.disconnects = 0
        self.broker_max_packet: int | None = None
        """The broker's Maximum Packet Size from its MQTT 5 CONNACK; None: not stated."""
        self.control_dropped = 0
        """Status/info/state messages too big for the broker's stated limit."""
        self._protocol = PROTOCOLS[config.protocol]
        self._client = self._make_client(config)
        self.outbox = Outbox(self._client, open_spool(config, state_dir), config.qos,
                             lambda: full_reason(config), self.message_limit)
        self._network = Worker("mqtt-network", self._network_loop)
        self.command_topic = f"{base}/cmd/#"
        self._on_command: Callable[[str, bytes, bool], None] | None = None

    def _make_client(self, config: MqttConfig) -> mqtt.Client:
        client = make_client(config, self.client_id, self._protocol)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(MAX_INFLIGHT + CONTROL_HEADROOM + RESULT_HEADROOM)
        # paho doubles the delay from the minimum; a random minimum per client spreads a
        # site's boxes out when their broker comes back, instead of all at once.
        client.reconnect_delay_set(
            RECONNECT_MIN_DELAY_S * random.uniform(0.5, 1.5), RECONNECT_MAX_DELAY_S
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # -- public API ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected

    @property
    def published(self) -> int:
        return self.outbox.published

    @property
    def acknowledged(self) -> int:
        return self.outbox.acknowledged

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    @property
    def queued(self) -> int:
        """Detections stored and not yet acknowledged by the broker (spool depth)."""
        return self.outbox.queued

    @property
    def protocol(self) -> str:
        """The MQTT version in use (or tried next): "5" or "3.1.1"."""
        return "5" if self._protocol == mqtt.MQTTv5 else "3.1.1"

    def message_limit(self, topic: str) -> int:
        """Largest payload for `topic`: the config's, lowered to what the broker states."""
        limit = self._config.max_message_bytes
        if self.broker_max_packet is not None:
            limit = min(limit, self.broker_max_packet - packet_overhead(topic))
        return limit

    def retained_limit(self, subtopic: str) -> int | None:
        """Largest payload the broker takes on `<base>/<subtopic>`; None while it stated none
        (then nothing is dropped for size, as with MQTT 3.1.1)."""
        if self.broker_max_packet is None:
            return None
        return self.message_limit(f"{self._base}/{subtopic}")

    def workers(self) -> list[Worker]:
        """The publisher's threads, for health: the sender and paho's network loop."""
        return [self.outbox.worker, self._network]

    def stats(self) -> PublisherStats:
        """Counters for health and metrics (see docs/mqtt.md, "Messages the broker refuses")."""
        return PublisherStats(
            **vars(self.outbox.stats()),
            connected=self._connected, last_error=self.last_error, protocol=self.protocol,
            max_message_bytes=self.message_limit(f"{self._base}/x/detections"),
            broker_max_packet=self.broker_max_packet, disconnects=self.disconnects,
            last_disconnect=self.last_disconnect, control_dropped=self.control_dropped,
        )

    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried, not fatal."""
        if self._started:
            return
        self._started = True
        if self.outbox.queued:
            log.info("MQTT spool holds %d detection messages from before; they go first",
                     self.outbox.queued)
        log.info(
            "MQTT connecting to %s:%d as %s%s",
            self._config.host,
            self._config.port,
            self.client_id,
            " (TLS)" if self._config.tls else "",
        )
        self.outbox.start()
        self._connect_async()
        self._network.start()

    def _connect_async(self) -> None:
        clean = {"clean_start": True} if self._protocol == mqtt.MQTTv5 else {}
        self._client.connect_async(
            self._config.host, self._config.port, self._config.keepalive, **clean
        )

    def _network_loop(self) -> None:
        """paho's loop, as loop_start runs it, but in our Worker thread. After a crash
        the socket is cut first: a packet may have been half read."""
        if self._network.crashes:
            self._abort_connection()
        adopt_network_thread(self._client)
        if self._closing:
            return
        self._client.loop_forever(retry_first_connection=True)

    def publish_detections(self, camera_id: str, payload: bytes) -> bool:
        """Store one frame's detections for sending; False (a counted drop) if refused."""
        return self.outbox.put(f"{self._base}/{camera_id}/detections", payload)

    def publish_event(self, camera_id: str, payload: bytes) -> bool:
        """Store one event for sending, through the same spool as detections (so an outage
        or a restart loses none); False (a counted drop) if refused."""
        return self.outbox.put(f"{self._base}/{camera_id}/events", payload)

    def publish_info(self, payload: bytes) -> None:
        """Set the retained info; sent now if connected and again after every reconnect."""
        with self._lock:
            self._info = payload
            send = self._connected and not self._closing
        if send:
            self._publish_control(self.info_topic, payload)

    def publish_retained(self, subtopic: str, payload: bytes) -> bool:
        """A retained QoS 1 state message on `<prefix>/<device_id>/<subtopic>` (health,
        camera state); False when not connected: the next periodic one replaces it."""
        with self._lock:
            if not self._connected or self._closing:
                return False
        info = self._publish_control(f"{self._base}/{subtopic}", payload)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_retained_topic(self, topic: str, payload: bytes) -> bool:
        """Like publish_retained, on a full topic outside the agent's own (Home Assistant
        discovery); False when not connected."""
        with self._lock:
            if not self._connected or self._closing:
                return False
        return self._publish_control(topic, payload).rc == mqtt.MQTT_ERR_SUCCESS
    def subscribe_commands(self, handler: Callable[[str, bytes, bool], None]) -> None:
        """Subscribe to `<base>/cmd/#` at QoS 1, now and after every reconnect (a clean
        session forgets subscriptions); `handler(name, payload, retained)` runs on paho's network
        thread with the part after `cmd/`, so it must only hand the message on."""
        self._on_command = handler
        if self._connected:
            self._subscribe_commands(self._client)

    def publish_message(self, subtopic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """QoS 1, not retained, through paho's queue (re-sent after a reconnect); the
        caller keeps at most RESULT_HEADROOM unacknowledged."""
        return self._publish_control(f"{self._base}/{subtopic}", payload, retain=False)

    def close(self, timeout: float = 5.0) -> None:
        """Flush, say "offline" (a clean disconnect does not fire the will), disconnect.

        What the broker has not acknowledged by then stays in the spool for the next start.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing = True
        deadline = time.monotonic() + timeout
        if self._started:
            self.outbox.drain(timeout)
            if self._connected and not self._say_offline(deadline):
                # "offline" is stuck behind a backlog. A clean DISCONNECT would cancel the
                # will and leave "online" retained, so drop the connection instead: the
                # broker then publishes the will, which is "offline" too.
                log.warning("MQTT offline status not acknowledged; letting the will say it")
                self._abort_connection()
            self._client.disconnect()
            self._network.stop()
            self._network.join(timeout)
        self.outbox.stop()
        log.info(
            "MQTT closed: %d spooled messages (detections and events) published, %d acknowledged, "
            "%d dropped",
            self.published,
            self.acknowledged,
            self.dropped,
        )

    def __enter__(self) -> Publisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        if (reason_code.value == UNSUPPORTED_PROTOCOL and self._protocol == mqtt.MQTTv5
                and self._config.protocol == "auto"):
            # A 3.1.1-only broker: paho reconnects by itself, as 3.1.1 from now on (it
            # downgrades 3.1.1 to 3.1 the same way).
            self._protocol = mqtt.MQTTv311
            use_mqtt311(client)
            log.warning("MQTT %s:%d does not speak MQTT 5; using 3.1.1 (the broker cannot "
                        "state its size limit: see docs/mqtt.md)", self._config.host,
                        self._config.port)
            return
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning(
                "MQTT %s:%d refused the connection: %s (code %d)",
                self._config.host,
                self._config.port,
                reason_code,
                reason_code.value,
            )
            return
        maximum = getattr(properties, "MaximumPacketSize", None)
        self.broker_max_packet = int(maximum) if maximum else None
        with self._lock:
            was_connected, self._connected = self._connected, True
            info = self._info
        if was_connected:
            # paho's loop swallows an unexpected error, reconnects and skips on_disconnect.
            self.disconnects += 1
            self.last_disconnect = "connection lost: the network loop failed (see above)"
            log.warning("MQTT connection was reset by an error in the network loop")
            self.outbox.connected(False)
        self.last_error = None
        log.info("MQTT connected to %s:%d (MQTT %s%s)", self._config.host, self._config.port,
                 self.protocol, f", broker's maximum packet {maximum} bytes" if maximum else "")
        self.outbox.connected(True)
        self._publish_control(self.status_topic, b"online")
        if info is not None:
            self._publish_control(self.info_topic, info)
        if self._on_command is not None:
            self._subscribe_commands(client)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        # paho calls this from inside its `except OSError`, so the cause is still at hand.
        error = sys.exc_info()[1]
        self.last_error = f"cannot connect: {error or 'unknown error'}"
        log.warning(
            "MQTT cannot connect to %s:%d: %s (retrying, at most every %ds)",
            self._config.host,
            self._config.port,
            error or "unknown error",
            RECONNECT_MAX_DELAY_S,
        )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = False
            closing = self._closing
        self.outbox.connected(False)
        reason = disconnect_reason(flags, reason_code, properties)
        if closing:
            log.info("MQTT disconnected (%s)", reason)
        elif was_connected:
            self.disconnects += 1
            self.last_error = self.last_disconnect = f"connection lost: {reason}"
            log.warning("MQTT connection lost: %s (reconnecting)", reason)
            self.outbox.connection_lost()

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        refused = None
        if reason_code.is_failure:
            text = getattr(properties, "ReasonString", None)
            refused = f"{reason_code} (code {reason_code.value}{f': {text}' if text else ''})"
        self.outbox.acknowledged_mid(mid, refused, reason_code.value == PACKET_TOO_LARGE)

    def _on_message(self, _client: mqtt.Client, _data: object, msg: mqtt.MQTTMessage) -> None:
        handler, prefix = self._on_command, self.command_topic[:-1]
        topic = msg._topic.decode("utf-8", "replace")  # .topic raises on bad UTF-8
        if handler is not None and topic.startswith(prefix):
            handler(topic[len(prefix):], msg.payload, bool(msg.retain))

    # -- internals -------------------------------------------------------------------

    def _subscribe_commands(self, client: mqtt.Client) -> None:
        error = subscribe_no_local(client, self.command_topic, self._protocol)
        if error:
            log.warning("MQTT could not subscribe to %s: %s", self.command_topic, error)

    def _say_offline(self, deadline: float) -> bool:
        """Publish retained "offline"; True once the broker acknowledged it."""
        offline = self._publish_control(self.status_topic, b"offline")
        try:
            offline.wait_for_publish(max(0.0, deadline - time.monotonic()))
            return offline.is_published()
        except (RuntimeError, ValueError):  # refused, or the connection went meanwhile
            return False

    def _abort_connection(self) -> None:
        """End the TCP connection without an MQTT DISCONNECT, as a crash would."""
        sock = self._client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as err:
                log.debug("MQTT socket shutdown: %s", err)

    def _publish_control(self, topic: str, payload: bytes,
                         retain: bool = True) -> mqtt.MQTTMessageInfo:
        """Status, info and state: retained QoS 1, outside the detection window (command
        results: not retained). One over the broker's stated limit would cost the
        connection: it is counted instead."""
        limit = self.message_limit(topic) if self.broker_max_packet else None
        if limit is not None and len(payload) > limit:
            self.control_dropped += 1
            log.warning("MQTT %s not sent: %d bytes, over the broker's limit of %d",
                        topic, len(payload), limit)
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_PAYLOAD_SIZE
            return info
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.outbox.register_control(info.mid)
        else:
            log.warning("MQTT could not queue %s: %s", topic, mqtt.error_string(info.rc))
        return info
