"""The doctor's broker check: does a detection message on the agent's own topic come back?

MQTT 3.1.1 gives a publisher no way to learn that the broker took a message and then
dropped it: an ACL that denies the topic, a `$`-prefixed (reserved) topic, or a message
over `message_size_limit` are all acknowledged and never delivered. So the doctor
subscribes to the agent's own detection topic and sends two marker messages there: a
small one (is the topic delivered at all?) and one of `mqtt.max_message_bytes` (does
the broker deliver messages that big?). Both are valid detection messages with no
detections, from a model named `edge-agent-doctor-<nonce>`, so consumers on the topic
see one empty frame each. Only the configured broker is contacted.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from edge_agent.config.model import AgentConfig
from edge_agent.errors import ConfigError
from edge_agent.tools.doctor_host import FAIL, OK, Check


def marker(camera: str, nonce: str, size: int) -> bytes:
    """A detection message with no detections, padded with JSON whitespace to `size`."""
    message = {
        "schema_version": 1,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "camera": camera, "sequence": 0, "frame": {"width": 1, "height": 1},
        "model": {"name": f"edge-agent-doctor-{nonce}",
                  "sha256": hashlib.sha256(nonce.encode()).hexdigest()},
        "backend": "doctor", "device": "doctor", "inference_ms": 0, "detections": [],
    }
    body = json.dumps(message, separators=(",", ":")).encode()
    return body + b" " * max(0, size - len(body))


class _RoundTrip:
    """Collects the marker messages that come back on the detection topic."""

    def __init__(self, topic: str, markers: tuple[bytes, ...]) -> None:
        self.topic, self.markers = topic, markers
        self.arrived: set[int] = set()
        self.event = threading.Condition()
        self.subscribed = threading.Event()
        self.refused = False

    def on_message(self, _client: object, _userdata: object, message: object) -> None:
        payload = getattr(message, "payload", b"")
        if getattr(message, "topic", None) == self.topic and payload in self.markers:
            with self.event:
                self.arrived.add(len(payload))
                self.event.notify_all()

    def on_subscribe(self, _c: object, _u: object, _m: object, codes: list[object],
                     _p: object) -> None:
        self.refused = any(getattr(code, "is_failure", False) for code in codes)
        self.subscribed.set()

    def sent_back(self, client: Any, payload: bytes, seconds: float) -> bool:
        client.publish(self.topic, payload, qos=1)
        with self.event:
            return self.event.wait_for(lambda: len(payload) in self.arrived, seconds)


def check_broker(config: AgentConfig, timeout: float = 10.0) -> Check:
    """Connect as configured; round-trip a small and a full-size detection message."""
    from edge_agent.tools.watch import BrokerError, connect

    mqtt_config = config.mqtt
    nonce = uuid.uuid4().hex[:12]
    cameras = [camera.id for camera in config.cameras if camera.enabled] or ["doctor"]
    topic = f"{mqtt_config.topic_prefix.rstrip('/')}/{config.device_id}/{cameras[0]}/detections"
    where = f"{mqtt_config.host}:{mqtt_config.port}" + (" (TLS)" if mqtt_config.tls else "")
    size = mqtt_config.max_message_bytes
    small, big = marker(cameras[0], nonce, 0), marker(cameras[0], nonce, size)
    trip = _RoundTrip(topic, (small, big))
    try:
        # Never the agent's own client id: the broker would disconnect the running agent.
        client = connect(mqtt_config, f"edge-agent-doctor-{nonce}", timeout, trip.on_message)
    except BrokerError as exc:
        return Check("broker", FAIL, f"{where}: {exc.detail}", exc.fix)
    except ConfigError as exc:  # TLS files that cannot be loaded
        return Check("broker", FAIL, str(exc), "fix the mqtt.tls file paths")
    who = mqtt_config.username or "anonymous clients"
    reserved = mqtt_config.topic_prefix.startswith("$")
    topic_fix = ("mqtt.topic_prefix starts with '$': brokers reserve such topics ($SYS) and "
                 "leave them out of '#' subscriptions; choose a prefix without '$'" if reserved
                 else f"the broker's ACL must let {who} publish and subscribe to {topic} "
                 f"(e.g. a mosquitto acl_file line 'topic readwrite "
                 f"{topic.rsplit('/', 3)[0]}/#')")
    problem = None
    try:
        client.on_subscribe = trip.on_subscribe
        started = time.monotonic()
        client.subscribe(topic, qos=1)
        if not trip.subscribed.wait(timeout) or trip.refused:
            problem = f"connected, but the subscription to {topic} was refused"
        elif not trip.sent_back(client, small, timeout / 2):
            problem = (f"connected, but a test detection message on {topic} did not come back "
                       f"within {timeout / 2:.0f} s: the broker takes the agent's detections "
                       "and delivers none")
        elapsed_ms = (time.monotonic() - started) * 1000
        if problem is None and not trip.sent_back(client, big, timeout / 2):
            return Check("broker", FAIL, f"{where}: a {size}-byte test detection message on "
                         f"{topic} did not come back (a {len(small)}-byte one did): the broker "
                         "drops messages this big (e.g. mosquitto message_size_limit or "
                         "max_packet_size)",
                         f"set mqtt.max_message_bytes below the broker's limit (the agent then "
                         f"trims bigger frames), or raise the broker's limit above {size} bytes")
    finally:
        client.loop_stop()
        client.disconnect()
    if problem is None and reserved:
        problem = (f"test messages on {topic} came back, but subscribers to '#' (dashboards, "
                   "bridges, recorders) never see topics that start with '$'")
    if problem is not None:
        return Check("broker", FAIL, f"{where}: {problem}", topic_fix)
    user = f" as {mqtt_config.username}" if mqtt_config.username else ""
    return Check("broker", OK, f"{where}: connected{user}; a test message came back in "
                 f"{elapsed_ms:.0f} ms, and one of {size} bytes on {topic}")
