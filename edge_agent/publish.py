"""MQTT publishing: status with a last will, retained info, detections through a spool.

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
import random
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_agent.config_model import MqttConfig, TlsConfig
from edge_agent.errors import ConfigError
from edge_agent.outbox import MAX_INFLIGHT, Outbox
from edge_agent.spool import Spool, SpoolError
from edge_agent.workers import Worker

log = logging.getLogger(__name__)

CONTROL_HEADROOM = 16
"""Room kept in paho's queue above the detection window for status, info and state
messages, so "online" still fits after an outage."""

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
        self._client = self._make_client(config)
        spool, spool_error = _open_spool(config, state_dir)
        self.outbox = Outbox(self._client, spool, config.qos, lambda: _full_reason(config))
        self.outbox.spool_error = spool_error

    def _make_client(self, config: MqttConfig) -> mqtt.Client:
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
            client.tls_set_context(tls_context(config.tls))
            if config.tls.insecure:
                client.tls_insecure_set(True)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(MAX_INFLIGHT + CONTROL_HEADROOM)
        # paho doubles the delay from the minimum; a random minimum per client spreads a
        # site's boxes out when their broker comes back, instead of all at once.
        client.reconnect_delay_set(
            RECONNECT_MIN_DELAY_S * random.uniform(0.5, 1.5), RECONNECT_MAX_DELAY_S
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
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

    def workers(self) -> list[Worker]:  # stub; the publish branch returns its real workers
        return []

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
        self._client.connect_async(self._config.host, self._config.port, self._config.keepalive)
        self._client.loop_start()

    def publish_detections(self, camera_id: str, payload: bytes) -> bool:
        """Store one frame's detections for sending; False (a counted drop) if refused."""
        return self.outbox.put(f"{self._base}/{camera_id}/detections", payload)

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
            self._client.loop_stop()
        self.outbox.stop()
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
        self.last_error = None
        log.info("MQTT connected to %s:%d", self._config.host, self._config.port)
        self.outbox.connected(True)
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
        with self._lock:
            was_connected = self._connected
            self._connected = False
            closing = self._closing
        self.outbox.connected(False)
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
        self.outbox.acknowledged_mid(mid)

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
        """Status, info and state: retained QoS 1, outside the detection window."""
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.outbox.register_control(info.mid)
        else:
            log.warning("MQTT could not queue %s: %s", topic, mqtt.error_string(info.rc))
        return info


def _open_spool(config: MqttConfig, state_dir: Path | None) -> tuple[Spool, str | None]:
    """The on-disk spool, or one in memory and why (disabled, no state dir, unusable)."""
    settings = config.spool
    path = settings.path or (state_dir / "spool.sqlite3" if state_dir else None)
    bounds = {
        "max_messages": config.max_queued,
        "max_bytes": int(settings.max_mb * 1024 * 1024),
        "max_age_s": settings.max_age_h * 3600.0,
    }
    if not settings.enabled:
        return Spool(None, **bounds), None  # chosen in the config: not an error
    if path is None:
        return Spool(None, **bounds), "no state directory for the spool"
    try:
        return Spool(path, **bounds), None
    except (SpoolError, OSError) as exc:
        log.error("MQTT spool unusable, detections wait in memory only: %s", exc)
        return Spool(None, **bounds), f"cannot use {path}: {exc}"


def _full_reason(config: MqttConfig) -> str:
    return (
        f"spool full ({config.max_queued} messages or {config.spool.max_mb:g} MB): "
        "oldest dropped"
    )


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
