"""Setting aside poison messages: the broker refuses one, or it kills the connection.

`DeadLetters` is the part of `edge_agent.publish.outbox.Outbox` that takes such a message
out of the send window, paho's queue and the spool, and keeps it in the spool's
dead-letter table (`edge_agent.publish.poison` decides when a message is poison), so one
bad message never blocks the rest. It shares the outbox's window state and lock.
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt

from edge_agent.publish.message_size import fit_payload
from edge_agent.publish.mqtt_client import oversize_messages
from edge_agent.publish.poison import PoisonWatch
from edge_agent.publish.spool import Spool

log = logging.getLogger("edge_agent.publish.outbox")  # the lines technicians already grep

CONTROL = -1
"""Pending value of a status/info/state message (not a detection)."""


class DeadLetters:
    """Dead-letter handling of the outbox; the attributes below are the outbox's."""

    _client: mqtt.Client
    _spool: Spool
    _lock: threading.Lock
    _wake: threading.Condition
    _pending: dict[int, int]
    _sizes: dict[int, int]
    _forget: list[int]
    _inflight: int
    _resending: bool
    poison: PoisonWatch
    dead_lettered: int
    trimmed: int

    def connection_lost(self) -> None:
        """The connection dropped: the head message, if it keeps doing this, is poison."""
        with self._lock:
            in_flight = [(row, mid) for mid, row in self._pending.items() if row > 0]
        head, mid = min(in_flight) if in_flight else (None, 0)
        if self.poison.disconnected(head):
            self._dead_letter(mid, f"the connection dropped {self.poison.strikes_needed} "
                              "times in a row while it was being sent")

    def _dead_letter(self, mid: int, reason: str, learn_size: bool = True) -> bool:
        """Take message `mid` out of the window, paho's queue and the spool; keep it in the
        spool's dead-letter table. False when `mid` is not a spooled detection."""
        with self._wake:
            row = self._pending.get(mid)
            if row is None or row <= 0:
                return False
            del self._pending[mid]
            size = self._sizes.pop(mid, 0)
            self._inflight -= 1
            if self._inflight <= 0:
                self._resending = False
            self.dead_lettered += 1
            self._wake.notify_all()
            self._forget.append(mid)  # by the sender: paho may be iterating its queue now
        self._spool.set_aside(row, reason)
        learned = self.poison.learn(size) if learn_size else None
        log.error("MQTT set aside a %d-byte detection message (dead letter %d in this run, "
                  "%d in the spool file): %s", size, self.dead_lettered,
                  self._spool.dead_lettered_total, reason)
        if learned is not None:
            log.warning("MQTT size limit lowered to %d bytes: the broker seems to refuse "
                        "bigger messages without saying so; set mqtt.max_message_bytes to "
                        "its limit", learned)
            self._trim_in_flight(learned)
        return True

    def _trim_in_flight(self, limit: int) -> None:
        """Fit the messages already with paho to a newly learnt limit: after a reconnect
        paho re-sends them from its queue, and each would be poison again."""
        for mid, message in oversize_messages(self._client, limit):
            with self._lock:
                row = self._pending.get(mid)
            if row is None or row == CONTROL:
                continue
            fitted = fit_payload(message.payload, limit)
            if fitted is None:
                self._dead_letter(mid, f"does not fit the learnt {limit}-byte limit",
                                  learn_size=False)
                continue
            message.payload = fitted
            with self._lock:
                self.trimmed += 1
                self._sizes[mid] = len(fitted)
