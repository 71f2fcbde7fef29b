"""Durable outbox: every detection waits here, in order, until the broker acknowledges it.

SQLite in WAL mode with synchronous=NORMAL: a commit is a write to the WAL (no fsync),
which survives a killed process; a power cut may lose the last moments but never
corrupts the file. One table with an autoincrement id gives the delivery order.
Bounded by message count, bytes and age; what has to go is the oldest, and it is
counted (persistently, so a restart does not hide it). The WAL is checkpointed and
truncated regularly, so the file set stays near `max_bytes` plus a few MB.

A file that cannot be used now (disk full, read-only) leaves the spool in memory, with
`error` saying why, until `reopen()` succeeds; a damaged file is salvaged
(`edge_agent.publish.spool_salvage`). Ages come from `edge_agent.publish.spool_clock`, never from a
bare wall clock.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent.publish.spool_clock import SpoolClock, Stamp
from edge_agent.publish.spool_salvage import (
    MEMORY,
    Salvage,
    SpoolError,
    SpoolUnavailable,
    open_database,
)

__all__ = ["Message", "Spool", "SpoolError", "SpoolUnavailable"]

log = logging.getLogger(__name__)

DEAD_LETTER_KEEP = 100
"""Set-aside messages kept for inspection; older ones go (they are counted)."""


@dataclass(frozen=True)
class Message:
    id: int
    topic: str
    payload: bytes


class Spool:
    """A bounded FIFO of (topic, payload) on disk, or in memory when `path` is None.

    Thread-safe: camera threads append, the publisher's sender reads and deletes.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_messages: int,
        max_bytes: int,
        max_age_s: float,
        clock: SpoolClock | None = None,
    ) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock or SpoolClock()
        self._lock = threading.Lock()
        self.error: str | None = None
        """Why the spool file is not in use now (None: it is, or none was asked for)."""
        self.salvage: Salvage | None = None
        """What a damaged file at start yielded; None when it opened cleanly."""
        self._acked: set[int] = set()  # delivered, not yet deleted (a delete failed)
        self.dropped = 0
        """Messages this process dropped to stay within the bounds."""
        try:
            self._db, self.salvage = open_database(path)
        except SpoolUnavailable as exc:
            log.error("%s; detections wait in memory until it works", exc)
            self.error = str(exc)
            self._db, _ = open_database(None)
        self._load_state_locked()
        self._forget_acked_file()

    def _load_state_locked(self) -> None:
        count, size, last_id = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(MAX(id), 0) "
            "FROM messages"
        ).fetchone()
        self._count = int(count)
        self._bytes = int(size)
        self.last_id = int(last_id)
        """Id of the newest message; a reader is behind while its cursor is below it."""
        self.dropped_total = self._counter("dropped")
        """Messages ever dropped from this spool file, across restarts."""
        self.dead_lettered_total = self._counter("dead_lettered")

    @property
    def on_disk(self) -> bool:
        return self.path is not None and self.error is None

    # -- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Messages waiting for the broker (delivered ones awaiting deletion excluded)."""
        return max(0, self._count - len(self._acked))

    @contextlib.contextmanager
    def _counted_locked(self) -> Iterator[None]:
        """The counts follow the file even when an exception lands between a write and
        its bookkeeping (a worker's fault can strike at any line): on one that is not
        SQLite's own, they are read again from the file before it goes on."""
        try:
            yield
        except (sqlite3.Error, SpoolError):
            raise
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._load_state_locked()
                if self._acked:
                    marks = ", ".join("?" for _ in self._acked)
                    self._acked &= {row[0] for row in self._db.execute(
                        f"SELECT id FROM messages WHERE id IN ({marks})",  # noqa: S608
                        list(self._acked))}
            raise

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- writing -----------------------------------------------------------------------

    def append(self, topic: str, payload: bytes, *, keep_after: int = 0) -> int:
        """Store one message; returns how many old ones were dropped to make room.

        Rows up to `keep_after` are with the MQTT client already (in flight), so room is
        made from the oldest rows after them. Any SQLite failure is a SpoolError.
        """
        stamp = self.clock.stamp()
        with self._lock, self._counted_locked():
            try:
                dropped = self._make_room_locked(1, len(payload), keep_after)
                cursor = self._db.execute(
                    "INSERT INTO messages (created, topic, payload, boot_id, boot_s, synced) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (stamp.wall, topic, payload, stamp.boot_id, stamp.boot_s, int(stamp.synced)),
                )
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write to spool {self._where()}: {exc}") from exc
            self._count += 1
            self._bytes += len(payload)
            self.last_id = int(cursor.lastrowid or self.last_id + 1)
            return dropped

    def _make_room_locked(self, count: int, size: int, keep_after: int) -> int:
        """Drop the oldest rows past a bound, and a tenth of that bound more, so a full
        spool pays one DELETE per many frames rather than one per frame."""
        over_count = self._count + count - self.max_messages
        over_bytes = self._bytes + size - self.max_bytes
        if over_count <= 0 and over_bytes <= 0:
            return 0
        want_rows = over_count + self.max_messages // 10 if over_count > 0 else 0
        want_bytes = over_bytes + self.max_bytes // 10 if over_bytes > 0 else 0
        rows = self._db.execute(
            "SELECT id, LENGTH(payload) FROM messages WHERE id > ? ORDER BY id", (keep_after,)
        )
        ids: list[int] = []
        freed = 0
        for row_id, length in rows:
            if len(ids) >= want_rows and freed >= want_bytes:
                break
            ids.append(row_id)
            freed += length
        rows.close()
        return self._drop_locked(ids, freed)

    def _drop_locked(self, ids: list[int], freed: int, counter: str = "dropped") -> int:
        if not ids:
            return 0
        with _transaction(self._db):
            self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))
            self._bump_locked(counter, len(ids))
        self._count -= len(ids)
        self._bytes -= freed
        if counter == "dropped":
            self.dropped += len(ids)
            self.dropped_total += len(ids)
        return len(ids)

    def _bump_locked(self, name: str, count: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, count),
        )

    def drop_expired(self) -> int:
        """Drop messages older than max_age_s, oldest first; returns how many.

        Walks from the oldest row and stops at the first young one. A row whose age no
        clock can vouch for (stored in another boot while the clock was not synchronised)
        is kept and left to the size bounds: a clock step must never empty the spool.
        """
        ids: list[int] = []
        freed = 0
        with self._lock, self._counted_locked():
            rows = self._db.execute(
                "SELECT id, LENGTH(payload), created, boot_id, boot_s, synced "
                "FROM messages ORDER BY id"
            )
            for row_id, length, created, boot_id, boot_s, synced in rows:
                age = self.clock.age(Stamp(created, boot_id, boot_s, bool(synced)))
                if age is None or row_id in self._acked:
                    continue
                if age < self.max_age_s:
                    break
                ids.append(row_id)
                freed += length
            rows.close()
            return self._drop_locked(ids, freed)

    def delete(self, ids: list[int]) -> bool:
        """Forget delivered messages. When SQLite refuses, they are remembered as
        delivered (never read again, not counted as waiting) and deleted later."""
        with self._lock, self._counted_locked():
            self._acked.update(ids)
            if not self._acked:
                return True
            freed = removed = 0
            try:
                with _transaction(self._db):
                    for row_id in self._acked:
                        row = self._db.execute(
                            "DELETE FROM messages WHERE id = ? RETURNING LENGTH(payload)",
                            (row_id,),
                        ).fetchone()
                        if row is not None:
                            removed += 1
                            freed += int(row[0])
            except sqlite3.Error as exc:
                log.warning("spool: cannot delete %d delivered messages (kept as delivered, "
                            "retried): %s", len(self._acked), exc)
                return False
            self._count -= removed
            self._bytes -= freed
            self._acked.clear()
            return True

    def set_aside(self, row_id: int, reason: str) -> bool:
        """Move one message to the dead-letter table (a poison message); False if gone."""
        with self._lock, self._counted_locked():
            try:
                with _transaction(self._db):
                    row = self._db.execute(  # as bytes: a damaged topic may not be UTF-8
                        "DELETE FROM messages WHERE id = ? "
                        "RETURNING CAST(topic AS BLOB), CAST(payload AS BLOB)", (row_id,)
                    ).fetchone()
                    if row is None:
                        return False
                    self._db.execute(
                        "INSERT INTO dead_letter (set_aside, reason, topic, payload) "
                        "VALUES (?, ?, ?, ?)", (self.clock.wall(), reason, row[0], row[1]))
                    self._db.execute(
                        "DELETE FROM dead_letter WHERE id <= "
                        "(SELECT MAX(id) FROM dead_letter) - ?", (DEAD_LETTER_KEEP,))
                    self._bump_locked("dead_lettered", 1)
            except sqlite3.Error as exc:
                log.warning("spool: cannot set message %d aside: %s", row_id, exc)
                return False
            self._count -= 1
            self._bytes -= len(row[1])
            self.dead_lettered_total += 1
            return True

    def dead_letters(self) -> list[tuple[str, str, bytes]]:
        """(reason, topic, payload) of the messages set aside, oldest first."""
        with self._lock:
            return [(r, _topic(t), bytes(p)) for r, t, p in self._db.execute(
                "SELECT reason, CAST(topic AS BLOB), CAST(payload AS BLOB) FROM dead_letter "
                "ORDER BY id")]

    # -- reading -----------------------------------------------------------------------

    def after(self, last_id: int, limit: int) -> list[Message]:
        """The next `limit` waiting messages with id > last_id, oldest first."""
        with self._lock:
            # As bytes: a row a damaged or edited file holds (a non-UTF-8 topic, a text
            # payload) must reach the sender, which sets it aside, not fail the read.
            rows = self._db.execute(
                "SELECT id, CAST(topic AS BLOB), CAST(payload AS BLOB) FROM messages "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, limit + len(self._acked)),
            ).fetchall()
            acked = set(self._acked)
        messages = [Message(i, _topic(t), bytes(p or b"")) for i, t, p in rows if i not in acked]
        return messages[:limit]

    # -- the file ----------------------------------------------------------------------

    def reopen(self) -> bool:
        """Try the spool file again after it was unusable; True once it is in use.

        The waiting messages move from memory into it, in order and with new ids, so the
        caller must have none in flight and start reading from id 0 again.
        """
        if self.path is None or self.error is None:
            return False
        try:
            db, salvage = open_database(self.path)
        except SpoolUnavailable as exc:
            self.error = str(exc)
            return False
        with self._lock:
            try:
                with _transaction(db):
                    for row in self._db.execute(
                        "SELECT id, created, topic, payload, boot_id, boot_s, synced "
                        "FROM messages ORDER BY id"
                    ):
                        if row[0] not in self._acked:
                            db.execute("INSERT INTO messages (created, topic, payload, boot_id, "
                                       "boot_s, synced) VALUES (?, ?, ?, ?, ?, ?)", row[1:])
            except sqlite3.Error as exc:
                db.close()
                self.error = f"cannot write to spool {self.path}: {exc}"
                return False
            old, self._db = self._db, db
            old.close()
            self._acked.clear()
            self.salvage = self.salvage or salvage
            self.error = None
            self._load_state_locked()
        log.warning("spool %s is usable again; %d waiting messages moved into it",
                    self.path, self._count)
        self._forget_acked_file()
        return True

    def checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it: keeps the WAL from growing."""
        if not self.on_disk:
            return
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                log.warning("spool %s: checkpoint failed: %s", self.path, exc)

    def close(self) -> None:
        """Close; delivered rows that still cannot be deleted are written to a side file
        (`<spool>.acked`), so the next start deletes them instead of sending them again."""
        if self._acked:
            self.delete([])
        with self._lock:
            if self._acked and self.on_disk:
                self._remember_acked_locked()
            self._db.close()

    def _remember_acked_locked(self) -> None:
        side = self._acked_file()
        try:
            side.write_text("".join(f"{i}\n" for i in sorted(self._acked)), encoding="ascii")
        except OSError as exc:
            log.error("spool: %d delivered messages could not be deleted nor recorded (%s); "
                      "they will be sent again after a restart", len(self._acked), exc)

    def _forget_acked_file(self) -> None:
        if not self.on_disk:
            return
        side = self._acked_file()
        try:
            ids = [int(line) for line in side.read_text(encoding="ascii").split()]
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("spool: ignoring unreadable %s: %s", side, exc)
            return
        if self.delete(ids):
            side.unlink(missing_ok=True)
            log.info("spool: deleted %d messages delivered before the last stop", len(ids))

    def _acked_file(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".acked")

    def _where(self) -> str:
        return str(self.path) if self.on_disk else MEMORY

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0


def _topic(raw: bytes | None) -> str:
    """A stored topic as text; bytes that are not UTF-8 survive as surrogates, which
    the sender's topic check (`edge_agent.publish.poison.unsendable_topic`) refuses."""
    return bytes(raw or b"").decode("utf-8", "surrogateescape")


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One commit for a batch: the connection is in autocommit mode otherwise."""
    db.execute("BEGIN")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # also when COMMIT itself failed: never leave it open
            db.execute("ROLLBACK")
        raise
