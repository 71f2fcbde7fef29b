"""Detections on their way to the broker: the spool, one sender thread, ack accounting.

Every detection goes into the spool first (`edge_agent.publish.spool`: on disk in the state
directory, or in memory), and the sender hands the spool to paho in order, at most
MAX_INFLIGHT unacknowledged at a time; acknowledged rows are deleted in batches (ACK_BATCH,
ACK_LINGER_S). So a
broker outage, a reconnect or a killed process loses nothing the bounds allow to keep,
and paho's own queue never grows past the window.

A message over the size limit is trimmed as it is sent (`edge_agent.publish.message_size`); one
the broker refuses, or that kills the connection again and again, is set aside in the
spool's dead-letter table (`edge_agent.publish.poison`), so one bad message never blocks the rest.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge_agent.publish.dead_letter import CONTROL, DeadLetters
from edge_agent.publish.drops import DropLog
from edge_agent.publish.message_size import fit_payload
from edge_agent.publish.mqtt_client import forget_message
from edge_agent.publish.poison import PoisonWatch, unsendable_topic
from edge_agent.publish.spool import Message, Spool, SpoolError
from edge_agent.publish.stats import OutboxStats
from edge_agent.workers import Worker

log = logging.getLogger(__name__)

MAX_INFLIGHT = 100
"""QoS>0 messages on the wire awaiting their ack. paho's default of 20 caps QoS 1 at
20 per round trip (250 msg/s on an 80 ms cellular link, below a few cameras' rate);
100 keeps up while bounding the burst re-sent after a reconnect."""

DIRECT = 0
"""Pending value of a detection sent past a failed spool (no row to delete)."""
EXPIRY_CHECK_S = 60.0
"""How often old rows are expired and the WAL checkpointed."""
REOPEN_EVERY_S = 30.0
"""How often a spool file that refused to open (disk full) is tried again."""
ACK_BATCH, ACK_LINGER_S = 32, 0.25
"""Acknowledged rows are deleted 32 at a time or 0.25 s after the first, not one wake-up
and SQLite transaction per frame (a crash re-sends at most those: QoS 1 is at least once)."""


class Outbox(DeadLetters):
    """Moves spooled detections to an MQTT client and counts what happens to them.

    Counters cover detections only: `published` (accepted into the spool),
    `acknowledged` (PUBACK for QoS 1/2, written to the socket for QoS 0), `dropped`
    (refused, or pushed out of a full or expired spool).
    """

    def __init__(
        self,
        client: mqtt.Client,
        spool: Spool,
        qos: int,
        full_reason: Callable[[], str],
        limit_for: Callable[[str], int] | None = None,
    ) -> None:
        self._client = client
        self._spool = spool
        self._qos = qos
        self._full_reason = full_reason
        self._limit_for = limit_for or (lambda _topic: 1 << 28)
        self.poison = PoisonWatch()
        self._sizes: dict[int, int] = {}  # mid -> payload size, detections in flight
        self._forget: list[int] = []  # set-aside mids to take out of paho's queue
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[int, int] = {}  # mid -> spool row id, DIRECT or CONTROL
        self._acked_early: set[int] = set()  # acks that beat publish() returning its mid
        self._acked_rows: list[int] = []  # delivered rows the sender will delete
        self._acked_since = 0.0  # time.monotonic() of the oldest row in _acked_rows
        self._cursor = 0  # last spool row handed to paho
        self._inflight = 0  # detections handed to paho and not acknowledged
        self._rewind = False
        self._resending = False
        self._connected = False
        self._closing = False
        self._stopped = False
        self.worker = Worker("mqtt-sender", self._run)
        self.published = 0
        self.acknowledged = 0
        self._drops = DropLog()
        self.trimmed = 0
        """Detection messages sent with fewer detections to fit the size limit."""
        self.dead_lettered = 0
        """Poison messages set aside in this run (the spool counts them across runs)."""
        self._put_error: str | None = None

    @property
    def queued(self) -> int:
        return len(self._spool) - len(self._acked_rows)

    @property
    def dropped(self) -> int:
        """Detections dropped in this run (refused, or pushed out of the spool)."""
        return self._drops.total

    @property
    def spool(self) -> Spool:
        return self._spool

    @property
    def spool_error(self) -> str | None:
        """Why detections are not kept on disk now; None once the spool works again."""
        return self._spool.error or self._put_error

    def stats(self) -> OutboxStats:
        """The counters health and /metrics read (docs/health.md, the `mqtt` fields)."""
        spool = self._spool
        salvage = spool.salvage
        return OutboxStats(
            queued=self.queued, published=self.published, acknowledged=self.acknowledged,
            dropped=self.dropped, trimmed=self.trimmed, dead_lettered=self.dead_lettered,
            dead_lettered_total=spool.dead_lettered_total, spool_error=self.spool_error,
            spool_dropped_total=spool.dropped_total, spool_on_disk=spool.on_disk,
            spool_salvaged=salvage.salvaged if salvage else 0,
            spool_unreadable=salvage.unreadable if salvage else 0,
            spool_salvage=salvage.describe() if salvage else None,
        )

    def start(self) -> None:
        self.worker.start()

    # -- camera threads ----------------------------------------------------------------

    def put(self, topic: str, payload: bytes) -> bool:
        """Store one detection message for sending; False (a counted drop) if refused."""
        with self._lock:
            closing = self._closing
            if closing:
                self._count_drop_locked("publisher is closed")
        if closing:
            self.log_drops()
            return False
        try:
            pushed_out = self._spool.append(topic, payload, keep_after=self._cursor)
        except SpoolError as exc:
            return self._put_direct(topic, payload, exc)
        with self._wake:
            self._put_error = None
            self.published += 1
            if pushed_out:
                self._count_drop_locked(self._full_reason(), pushed_out)
            self._wake.notify_all()
        if pushed_out:
            self.log_drops()
        return True

    def _put_direct(self, topic: str, payload: bytes, error: SpoolError) -> bool:
        """The spool cannot store (disk full): send straight away if the broker is there."""
        with self._lock:
            room = self._connected and self._inflight < MAX_INFLIGHT
            self._put_error = str(error)
            if not room:
                self._count_drop_locked(f"{error}; broker not reachable")
        if not room:
            self.log_drops()
            return False
        fitted = self._fit(topic, payload)
        if fitted is None:
            return False
        info = self._client.publish(topic, fitted, qos=self._qos)
        accepted = info.rc == mqtt.MQTT_ERR_SUCCESS
        with self._lock:
            if accepted:
                self.published += 1
                self._inflight += 1
                self.register_locked(info.mid, DIRECT)
            else:
                self._count_drop_locked(f"{error}; {mqtt.error_string(info.rc)}")
        if not accepted:
            self.log_drops()
        return accepted

    # -- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        """Keep the sender alive: a spool error costs a pause and a log line, not delivery."""
        while not self._stopped:
            try:
                self._serve()
            except (sqlite3.Error, SpoolError) as exc:
                log.error("MQTT sender: spool error, retrying in 5 s: %s", exc)
                with self._wake:
                    self._wake.wait_for(lambda: self._stopped, timeout=5.0)

    def _serve(self) -> None:
        """Hand spooled rows to paho in order, within the window; delete acknowledged rows."""
        next_expiry = time.monotonic() + EXPIRY_CHECK_S
        next_reopen = time.monotonic() + REOPEN_EVERY_S
        while True:
            with self._wake:
                linger = self._acked_since + ACK_LINGER_S - time.monotonic()
                timeout = min(1.0, max(linger, 0.001)) if self._acked_rows else 1.0
                self._wake.wait_for(self._has_work_locked, timeout=timeout)
                if self._stopped:
                    return
                acked = self._acked_rows if self._acks_due_locked() else []
                self._acked_rows = [] if acked else self._acked_rows
                rewind, self._rewind = self._rewind, False
                forget, self._forget = self._forget, []
                room = MAX_INFLIGHT - self._inflight if self._can_send_locked() else 0
            if acked and not self._spool.delete(acked):
                with self._lock:  # kept: tried again on the next round
                    self._acked_rows[:0] = acked
                time.sleep(0.5)
            elif acked:
                with self._wake:
                    self._wake.notify_all()  # drain() may be waiting for an empty spool
            for mid in forget:
                forget_message(self._client, mid)
            if rewind:
                self._cursor = 0
            if time.monotonic() >= next_expiry:
                next_expiry = time.monotonic() + EXPIRY_CHECK_S
                self._drop_expired()
                self._spool.checkpoint()
            if self._spool.error and time.monotonic() >= next_reopen:
                next_reopen = time.monotonic() + REOPEN_EVERY_S
                self._try_reopen()
            if room > 0 and self._cursor < self._spool.last_id and not self._send(room):
                time.sleep(0.1)  # paho refused (the connection just went): retry shortly

    def _can_send_locked(self) -> bool:
        # After a reconnect paho re-sends what was in flight; new rows wait until those
        # are acknowledged, or they could overtake them.
        return self._connected and not self._resending and self._inflight < MAX_INFLIGHT

    def _has_work_locked(self) -> bool:
        return (
            self._stopped
            or self._acks_due_locked()
            or bool(self._forget)
            or self._rewind
            or (self._can_send_locked() and self._cursor < self._spool.last_id)
        )

    def _acks_due_locked(self) -> bool:
        return bool(self._acked_rows) and (
            len(self._acked_rows) >= ACK_BATCH or self._closing
            or time.monotonic() - self._acked_since >= ACK_LINGER_S)

    def _send(self, room: int) -> bool:
        """Publish up to `room` rows after the cursor; False when paho refused one."""
        newest = self._spool.last_id
        messages = self._spool.after(self._cursor, room)
        if not messages:  # the rest was dropped (bounds, age) before it was sent
            self._cursor = max(self._cursor, newest)
        for message in messages:
            payload = self._fit(message.topic, message.payload)
            if payload is None:
                self._spool.delete([message.id])  # counted by _fit; nothing to send
                self._cursor = message.id
                continue
            refused = unsendable_topic(message.topic)
            try:  # a topic no broker takes (a damaged spool row): set aside, go on
                info = None if refused else self._client.publish(
                    message.topic, payload, qos=self._qos)
            except (ValueError, TypeError) as exc:
                refused, info = f"the MQTT client refused it: {exc}", None
            if info is None:
                self._set_aside_unsendable(message, refused or "refused")
                continue
            # QoS>0 while disconnected reports NO_CONN but is queued and sent on reconnect.
            if not (
                info.rc == mqtt.MQTT_ERR_SUCCESS
                or (info.rc == mqtt.MQTT_ERR_NO_CONN and self._qos > 0)
            ):
                return False
            with self._lock:
                self._inflight += 1
                self._sizes[info.mid] = len(payload)
                self.register_locked(info.mid, message.id)
            self._cursor = message.id
        return True

    def _set_aside_unsendable(self, message: Message, reason: str) -> None:
        """A row the client refuses outright: dead-lettered and counted, never retried."""
        self._spool.set_aside(message.id, reason)
        self._cursor = message.id
        with self._lock:
            self.dead_lettered += 1
        log.error("MQTT set aside spooled message %d on topic %.80r (dead letter %d in this "
                  "run): %s", message.id, message.topic, self.dead_lettered, reason)

    def _fit(self, topic: str, payload: bytes) -> bytes | None:
        """The payload within the size limit (trimmed), or None: dropped and counted."""
        limit = self._limit_for(topic)
        if self.poison.learned_limit is not None:
            limit = min(limit, self.poison.learned_limit)
        fitted = fit_payload(payload, limit)
        if fitted is None:
            with self._lock:
                self._count_drop_locked(
                    f"a {len(payload)}-byte message does not fit the {limit}-byte limit")
            self.log_drops(force=True)
        elif fitted is not payload:
            with self._lock:
                self.trimmed += 1
        return fitted

    def _try_reopen(self) -> None:
        """Move the in-memory spool to its file once the disk takes it (nothing in flight,
        since the rows get new ids)."""
        with self._lock:
            idle = self._inflight == 0 and not self._acked_rows
        if idle and self._spool.reopen():
            self._cursor = 0

    def _drop_expired(self) -> None:
        expired = self._spool.drop_expired()
        if expired:
            with self._lock:
                self._count_drop_locked("too old to keep in the spool", expired)
            self.log_drops()

    # -- connection events (paho's network thread) -------------------------------------

    def connected(self, is_connected: bool) -> None:
        """The connection came up or went; QoS 0 rows paho had not written are sent again."""
        with self._wake:
            self._connected = is_connected
            if is_connected and self._qos == 0:
                self._forget_lost_qos0_locked()
            elif is_connected:
                self._resending = self._inflight > 0
            self._wake.notify_all()
        if is_connected:
            self.log_drops(force=True)  # what was dropped while the broker was away

    def acknowledged_mid(
        self, mid: int, refused: str | None = None, too_large: bool = False
    ) -> None:
        """The broker acknowledged `mid`; `refused` is its reason when it took the message
        but will not deliver it (MQTT 5 PUBACK failure): that message is set aside, and
        only a `too_large` refusal teaches a size limit (not an ACL's "not authorized")."""
        if refused is not None and self._dead_letter(
            mid, f"refused by the broker: {refused}", learn_size=too_large
        ):
            return
        with self._wake:
            row = self._pending.pop(mid, None)
            if row is None:
                self._acked_early.add(mid)
            else:
                self._settle_locked(row, self._sizes.pop(mid, 0))

    def register_control(self, mid: int) -> None:
        with self._lock:
            self.register_locked(mid, CONTROL)

    # -- closing -----------------------------------------------------------------------

    def drain(self, timeout: float) -> None:
        """Refuse new messages; wait until all are acknowledged or the connection is gone."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()  # delivered rows are deleted now, not after a linger
            self._wake.wait_for(
                lambda: not self._busy_locked() or not self._connected, timeout=timeout
            )

    def stop(self) -> None:
        """End the sender, forget delivered rows; the rest stays in the spool."""
        with self._wake:
            self._closing = self._stopped = True
            self._wake.notify_all()
            acked, self._acked_rows = self._acked_rows, []
        self.worker.stop()
        if self.worker.is_alive():
            self.worker.join(5.0)
        self._spool.delete(acked)
        unsent = len(self._spool)
        if unsent:
            where = f"stay in the spool {self._spool.path}" if self._spool.on_disk else "are lost"
            log.warning("MQTT: %d detection messages not acknowledged %s", unsent, where)
        self._spool.close()

    # -- internals -------------------------------------------------------------------

    def _busy_locked(self) -> bool:
        """Detections still waiting for the broker (stored, or sent past the spool)."""
        return self._inflight > 0 or len(self._spool) > len(self._acked_rows)

    def register_locked(self, mid: int, row: int) -> None:
        """Track a message handed to paho, or settle it if its ack already arrived."""
        if mid in self._acked_early:
            self._acked_early.discard(mid)
            self._settle_locked(row)
        else:
            self._pending[mid] = row

    def _settle_locked(self, row: int, size: int = 0) -> None:
        if row == CONTROL:
            return
        self.poison.delivered(row, size)
        self.acknowledged += 1
        wake = self._inflight >= MAX_INFLIGHT or self._closing  # room to send; drain()
        self._inflight -= 1
        if self._inflight <= 0:
            wake |= self._resending
            self._resending = False
        if row > 0:
            self._acked_since = self._acked_since if self._acked_rows else time.monotonic()
            self._acked_rows.append(row)
        if wake or self._acks_due_locked():  # else the sender sleeps on: one wake per frame
            self._wake.notify_all()

    def _forget_lost_qos0_locked(self) -> None:
        """paho's reconnect discards QoS 0 packets it had not written: send those rows again."""
        lost = [mid for mid, row in self._pending.items() if row != CONTROL]
        direct = sum(1 for mid in lost if self._pending[mid] == DIRECT)
        for mid in lost:
            del self._pending[mid]
            self._sizes.pop(mid, None)
        self._inflight -= len(lost)
        self._rewind = self._rewind or len(lost) > direct
        if direct:
            self._count_drop_locked("QoS 0 messages lost in a reconnect", direct)

    def _count_drop_locked(self, reason: str, count: int = 1) -> None:
        self._drops.count(reason, count)

    def log_drops(self, force: bool = False) -> None:
        """First drop at once, then one line per DROP_LOG_INTERVAL_S (edge_agent.publish.drops)."""
        self._drops.log(force)
