"""Durable outbox: every detection waits here, in order, until the broker acknowledges it.

SQLite in WAL mode with synchronous=NORMAL: a commit is a write to the WAL (no fsync),
which survives a killed process; a power cut may lose the last moments but never
corrupts the file. One table with an autoincrement id gives the delivery order.
Bounded by message count, bytes and age; what has to go is the oldest, and it is
counted (persistently, so a restart does not hide it).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import AgentError

log = logging.getLogger(__name__)

MEMORY = ":memory:"
CLOCK_SET_AFTER = 1_577_836_800.0
"""2020-01-01 UTC: a timestamp before this was taken with an unset clock."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class SpoolError(AgentError):
    """The spool cannot store a message (disk full, I/O error, read-only file)."""


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
    ) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._db = self._open(path)
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
        ).fetchone()
        self._count = int(count)
        self._bytes = int(size)
        (last_id,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
        self.last_id = int(last_id)
        """Id of the newest message; a reader is behind while its cursor is below it."""
        self.dropped = 0
        """Messages this process dropped to stay within the bounds."""
        self.dropped_total = self._counter("dropped")
        """Messages ever dropped from this spool file, across restarts."""

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        """Open (creating) the file; a file that is not a usable database is set aside."""
        if path is None:
            return _connect(MEMORY)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _connect(str(path))
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
                raise SpoolError(f"cannot open spool {path}: {exc}") from exc
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.error("spool %s is unreadable (%s); moved to %s, starting empty", path, exc, aside)
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            return _connect(str(path))

    # -- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- writing -----------------------------------------------------------------------

    def append(self, topic: str, payload: bytes, *, keep_after: int = 0) -> int:
        """Store one message; returns how many old ones were dropped to make room.

        Rows up to `keep_after` are with the MQTT client already (in flight), so room is
        made from the oldest rows after them. Any SQLite failure is a SpoolError.
        """
        with self._lock:
            try:
                dropped = self._make_room_locked(1, len(payload), keep_after)
                cursor = self._db.execute(
                    "INSERT INTO messages (created, topic, payload) VALUES (?, ?, ?)",
                    (time.time(), topic, payload),
                )
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write to spool {self.path or MEMORY}: {exc}") from exc
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

    def _drop_locked(self, ids: list[int], freed: int) -> int:
        if not ids:
            return 0
        with _transaction(self._db):
            self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (len(ids),),
            )
        self._count -= len(ids)
        self._bytes -= freed
        self.dropped += len(ids)
        self.dropped_total += len(ids)
        return len(ids)

    def drop_expired(self, now: float | None = None) -> int:
        """Drop messages older than max_age_s, oldest first; returns how many.

        Walks from the oldest row and stops at the first young one (no full scan). A row
        stored while the clock was unset (a Jetson without RTC boots in 1970) has no
        meaningful age: it is kept and left to the size bounds.
        """
        cutoff = (time.time() if now is None else now) - self.max_age_s
        ids: list[int] = []
        freed = 0
        with self._lock:
            rows = self._db.execute(
                "SELECT id, LENGTH(payload), created FROM messages ORDER BY id"
            )
            for row_id, length, created in rows:
                if created < CLOCK_SET_AFTER:
                    continue
                if created >= cutoff:
                    break
                ids.append(row_id)
                freed += length
            rows.close()
            return self._drop_locked(ids, freed)

    def delete(self, ids: list[int]) -> bool:
        """Forget delivered messages; False when SQLite refused (the caller retries)."""
        if not ids:
            return True
        with self._lock:
            freed = removed = 0
            try:
                with _transaction(self._db):
                    for row_id in ids:
                        row = self._db.execute(
                            "DELETE FROM messages WHERE id = ? RETURNING LENGTH(payload)",
                            (row_id,),
                        ).fetchone()
                        if row is not None:
                            removed += 1
                            freed += int(row[0])
            except sqlite3.Error as exc:
                log.warning("spool: cannot delete %d delivered messages: %s", len(ids), exc)
                return False
            self._count -= removed
            self._bytes -= freed
            return True

    # -- reading -----------------------------------------------------------------------

    def after(self, last_id: int, limit: int) -> list[Message]:
        """The next `limit` messages with id > last_id, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, limit),
            ).fetchall()
        return [Message(row_id, topic, bytes(payload)) for row_id, topic, payload in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0


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


def _connect(target: str) -> sqlite3.Connection:
    """Autocommit connection in WAL mode; raises DatabaseError for a file that is not one."""
    db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
    try:
        if target != MEMORY:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("spool %s: WAL unavailable, using journal mode %s", target, mode)
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute("SELECT COUNT(*) FROM messages").fetchone()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db
