"""Result messages: their JSON (docs/schemas/command-result.schema.json) and how they
reach the broker.

Results go through paho's own queue at QoS 1, not retained (not the detection spool:
that one is sized and counted for detections, and a result must not wait behind an
hour of spooled frames). paho keeps a QoS 1 message it could not send and sends it
again after reconnecting, so a result survives a broker outage; `ResultSender` keeps at
most WINDOW results unacknowledged, so the queue stays bounded (the publisher sizes
paho's queue for it). A result not yet acknowledged when the process dies is lost,
but it was stored first (dedupe.py): asking again with the same request_id gets it.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from edge_agent.commands.spec import Code, Outcome
from edge_agent.publish.mqtt_client import acknowledged
from edge_agent.publish.payload import iso_utc

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
WINDOW = 32
"""Results handed to paho and not yet acknowledged, at most."""
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class ResultPublisher(Protocol):
    """The MQTT side (edge_agent.publish.publisher.Publisher)."""

    def publish_message(self, subtopic: str, payload: bytes) -> mqtt.MQTTMessageInfo: ...


def result_payload(
    *,
    command: str,
    request_id: str | None,
    outcome: Outcome,
    received_at: float,
    started_at: float,
    finished_at: float,
    duration_ms: float,
    code: Code | None = None,
    reason: str | None = None,
    result: dict[str, Any] | None = None,
    step: str | None = None,
) -> bytes:
    """One result message; `result` must be JSON data (a handler bug otherwise)."""
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "request_id": request_id,
        "outcome": outcome.value,
        "code": code.value if code is not None else None,
        "reason": reason,
        "duplicate": False,
        "received_at": iso_utc(received_at),
        "started_at": iso_utc(started_at),
        "finished_at": iso_utc(finished_at),
        "duration_ms": round(duration_ms, 3),
        "result": result or {},
    }
    if step is not None:
        body["step"] = step
    return _ENCODER.encode(body).encode("utf-8")


def as_duplicate(stored: bytes, received_at: float) -> bytes:
    """A stored result sent again: `duplicate: true` and when the repeat arrived."""
    body = json.loads(stored)
    body["duplicate"] = True
    body["repeat_received_at"] = iso_utc(received_at)
    return _ENCODER.encode(body).encode("utf-8")


class ResultSender:
    """Publishes results on `cmd/<name>/result`, at most WINDOW unacknowledged.

    `send` blocks while the window is full (a broker that is away): the command worker
    waits with it, so inbound requests queue (bounded) instead of results piling up.
    """

    def __init__(self, publisher: ResultPublisher, stopping: threading.Event) -> None:
        self._publisher = publisher
        self._stopping = stopping
        self._lock = threading.Lock()
        self._in_flight: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        self.sent = 0
        self.not_sent = 0

    def send(self, command: str, payload: bytes) -> bool:
        """Queue one result; False when the client refused it (counted and logged)."""
        with self._lock:
            self._wait_for_room()
            info = self._publisher.publish_message(f"cmd/{command}/result", payload)
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._in_flight.append(info)
                self.sent += 1
                return True
        self.not_sent += 1
        log.warning("commands: result of %s not sent: %s", command, mqtt.error_string(info.rc))
        return False

    def _wait_for_room(self) -> None:
        while True:
            while self._in_flight and acknowledged(self._in_flight[0]):
                self._in_flight.popleft()
            if len(self._in_flight) < WINDOW or self._stopping.is_set():
                return
            time.sleep(0.002)
