"""MQTT publishing: status with a last will, retained info, bounded detection stream.

Topics (docs/mqtt.md):
  <prefix>/<device_id>/status             "online"/"offline", retained, QoS 1, last will
  <prefix>/<device_id>/info               JSON, retained, QoS 1, re-sent after each connect
  <prefix>/<device_id>/<camera>/detections JSON, QoS from config, not retained

MQTT 3.1.1, not 5: everything used here (retain, will, QoS 1) is in 3.1.1, and it is what
every broker a site may already run speaks (Aedes in Node-RED, older Mosquitto, cloud
IoT hubs); 5's extras (expiry, aliases, properties) are not needed by this stream.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from enum import Enum

import paho.mqtt.client as mqtt

from edge_agent.config_model import MqttConfig, TlsConfig
from edge_agent.errors import ConfigError

log = logging.getLogger(__name__)

MAX_INFLIGHT = 100
"""QoS>0 messages on the wire awaiting their ack. paho's default of 20 caps QoS 1 at
20 per round trip (250 msg/s on an 80 ms cellular link, below a few cameras' rate);
100 keeps up while bounding the burst re-sent after a reconnect."""

CONTROL_HEADROOM = 8
"""Room kept in paho's queue above `max_queued` for status and info, so "online" still
fits after an outage has filled the queue with detections."""

DROP_LOG_INTERVAL_S = 10.0
RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30


class _Kind(Enum):
    """What an outstanding message is, so its ack lands on the right counter."""

    DETECTION = "detection"
    DETECTION_QOS0 = "detection-qos0"  # paho discards unsent QoS 0 on reconnect
    CONTROL = "control"


class Publisher:
    """One MQTT connection for the whole agent; camera threads share it.

    Never blocks the pipeline: a broker that is down or slow costs dropped detections
    (counted, logged rate-limited), not memory or latency. Counters cover detection
    messages only: `published` (accepted for sending), `acknowledged` (PUBACK for QoS 1/2,
    written to the socket for QoS 0), `dropped` (refused or lost).
    """

    def __init__(self, config: MqttConfig, device_id: str) -> None:
        self._config = config
        self._qos = config.qos
        self._max_queued = config.max_queued
        base = f"{config.topic_prefix.rstrip('/')}/{device_id}"
        self.status_topic = f"{base}/status"
        self.info_topic = f"{base}/info"
        self._detections_base = base
        self.client_id = config.client_id or f"edge-agent-{device_id}"

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0  # detections accepted (or about to be) and not yet acked
        self._pending: dict[int, _Kind] = {}
        self._acked_early: set[int] = set()  # acks that beat publish() returning its mid
        self._info: bytes | None = None
        self._connected = False
        self._closing = False
        self._closed = False
        self._started = False
        self.published = 0
        self.acknowledged = 0
        self.dropped = 0
        self._drops_unlogged = 0
        self._drop_logged_at = float("-inf")
        self._drop_reason = ""
        self.last_error: str | None = None
        """Why the last connection attempt failed or the connection dropped; None once up."""

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        elif config.password is not None:
            raise ConfigError("mqtt.password is set but mqtt.username is not; set both")
        if config.tls is not None:
            client.tls_set_context(_tls_context(config.tls))
            if config.tls.insecure:
                client.tls_insecure_set(True)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(config.max_queued + CONTROL_HEADROOM)
        client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    # -- public API ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected

    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried, not fatal."""
        if self._started:
            return
        self._started = True
        log.info(
            "MQTT connecting to %s:%d as %s%s",
            self._config.host,
            self._config.port,
            self.client_id,
            " (TLS)" if self._config.tls else "",
        )
        self._client.connect_async(self._config.host, self._config.port, self._config.keepalive)
        self._client.loop_start()

    def publish_detections(self, camera_id: str, payload: bytes) -> bool:
        """Queue one frame's detections; False (and a counted drop) when it cannot be held."""
        with self._lock:
            if self._closing:
                self._count_drop_locked("publisher is closed")
                refused = "closed"
            elif self._outstanding >= self._max_queued:
                self._count_drop_locked(f"queue full ({self._max_queued} unacknowledged)")
                refused = "full"
            else:
                self._outstanding += 1  # reserve the slot before paho sees the message
                refused = ""
        if refused:
            self._maybe_log_drops()
            return False

        try:
            info = self._client.publish(
                f"{self._detections_base}/{camera_id}/detections", payload, qos=self._qos
            )
        except ValueError:  # a wildcard in the topic, an oversized payload: a bug upstream
            with self._lock:
                self._release_locked()
            raise
        # QoS>0 while disconnected reports NO_CONN but is queued and sent on reconnect;
        # QoS 0 while disconnected is gone.
        accepted = info.rc == mqtt.MQTT_ERR_SUCCESS or (
            info.rc == mqtt.MQTT_ERR_NO_CONN and self._qos > 0
        )
        with self._lock:
            if accepted:
                self.published += 1
                kind = _Kind.DETECTION if self._qos > 0 else _Kind.DETECTION_QOS0
                self._register_locked(info.mid, kind)
            else:
                self._release_locked()
                self._count_drop_locked(_refusal(info.rc))
        if not accepted:
            self._maybe_log_drops()
        return accepted

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
        info = self._publish_control(f"{self._detections_base}/{subtopic}", payload)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def close(self, timeout: float = 5.0) -> None:
        """Flush, say "offline" (a clean disconnect does not fire the will), disconnect."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing = True
        deadline = time.monotonic() + timeout
        if self._started:
            with self._idle:
                self._idle.wait_for(
                    lambda: self._outstanding == 0 or not self._connected,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                unsent = self._outstanding
            if unsent:
                log.warning("MQTT closing with %d detection messages unacknowledged", unsent)
            if self._connected and not self._say_offline(deadline):
                # "offline" is stuck behind a backlog. A clean DISCONNECT would cancel the
                # will and leave "online" retained, so drop the connection instead: the
                # broker then publishes the will, which is "offline" too.
                log.warning("MQTT offline status not acknowledged; letting the will say it")
                self._abort_connection()
            self._client.disconnect()
            self._client.loop_stop()
        log.info(
            "MQTT closed: %d detection messages published, %d acknowledged, %d dropped",
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
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: mqtt.ReasonCode,
        _properties: object,
    ) -> None:
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
        with self._lock:
            self._connected = True
            info = self._info
            self._forget_lost_qos0_locked()
        self.last_error = None
        log.info("MQTT connected to %s:%d", self._config.host, self._config.port)
        self._maybe_log_drops(force=True)  # what was dropped while the broker was away
        self._publish_control(self.status_topic, b"online")
        if info is not None:
            self._publish_control(self.info_topic, info)

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
        _flags: mqtt.DisconnectFlags,
        reason_code: mqtt.ReasonCode,
        _properties: object,
    ) -> None:
        with self._idle:
            was_connected = self._connected
            self._connected = False
            closing = self._closing
            self._idle.notify_all()
        if closing:
            log.info("MQTT disconnected (%s)", reason_code)
        elif was_connected:
            self.last_error = f"connection lost: {reason_code}"
            log.warning("MQTT connection lost: %s (reconnecting)", reason_code)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        _reason_code: mqtt.ReasonCode,
        _properties: object,
    ) -> None:
        with self._idle:
            kind = self._pending.pop(mid, None)
            if kind is None:
                self._acked_early.add(mid)
            elif kind is not _Kind.CONTROL:
                self.acknowledged += 1
                self._release_locked()

    # -- internals -------------------------------------------------------------------

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

    def _publish_control(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Status and info: retained QoS 1, outside the detection bound."""
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            with self._lock:
                self._register_locked(info.mid, _Kind.CONTROL)
        else:
            log.warning("MQTT could not queue %s: %s", topic, _refusal(info.rc))
        return info

    def _register_locked(self, mid: int, kind: _Kind) -> None:
        """Track an accepted message, or settle it if its ack already arrived."""
        if mid in self._acked_early:
            self._acked_early.discard(mid)
            if kind is not _Kind.CONTROL:
                self.acknowledged += 1
                self._release_locked()
        else:
            self._pending[mid] = kind

    def _release_locked(self) -> None:
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._outstanding = 0
            self._idle.notify_all()

    def _forget_lost_qos0_locked(self) -> None:
        """paho's reconnect() discards QoS 0 packets it had not written: count them lost."""
        lost = [mid for mid, kind in self._pending.items() if kind is _Kind.DETECTION_QOS0]
        for mid in lost:
            del self._pending[mid]
            self._release_locked()
        self._acked_early.clear()
        if lost:
            self._count_drop_locked("QoS 0 messages lost in a reconnect", len(lost))

    def _count_drop_locked(self, reason: str, count: int = 1) -> None:
        self.dropped += count
        self._drops_unlogged += count
        self._drop_reason = reason

    def _maybe_log_drops(self, force: bool = False) -> None:
        """First drop at once, then one line per DROP_LOG_INTERVAL_S with the count."""
        now = time.monotonic()
        with self._lock:
            if not self._drops_unlogged:
                return
            if not force and now - self._drop_logged_at < DROP_LOG_INTERVAL_S:
                return
            count, total, reason = self._drops_unlogged, self.dropped, self._drop_reason
            self._drops_unlogged = 0
            self._drop_logged_at = now
        log.warning("MQTT dropped %d detection message(s) (%d in total): %s", count, total, reason)


def _refusal(rc: mqtt.MQTTErrorCode | int) -> str:
    if rc == mqtt.MQTT_ERR_QUEUE_SIZE:
        return "paho's queue is full"
    if rc == mqtt.MQTT_ERR_NO_CONN:
        return "not connected (QoS 0 is not queued)"
    return mqtt.error_string(rc)


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
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
