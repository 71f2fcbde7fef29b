"""Request ids remembered across restarts, so a command runs at most once per id.

A small SQLite file in the state directory (`commands.db`): a row is written, and synced
(synchronous=FULL), when a request is claimed, before its handler runs; the final result
is written into it before the result is sent. So a redelivered or repeated request finds
its row whether the agent crashed, lost power or restarted in between, and is answered
from it instead of running again. A row still without a result after a restart was cut
off by the stop: it is answered `failed` (code `interrupted`), never run a second time.
Rows older than `dedupe_hours`, beyond `dedupe_max_entries` or beyond MAX_BYTES of
results are deleted. synchronous=NORMAL: a crash or SIGKILL loses nothing; a power cut
may lose the last claims (an fsync per request would cost ~10 ms on an SD card).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "commands.db"
PRUNE_EVERY = 100
"""Claims between two prunes (and on open)."""
MAX_BYTES = 32 * 1024 * 1024
"""Stored results, in all, at most (the oldest rows go first); with results kept to
edge_agent.commands.channel.MAX_STORED_RESULT each, the file stays small."""


@dataclass(frozen=True)
class Seen:
    """What the store knows of a (command, request_id): its final result, or None while
    it has none (running now, or cut off by a stop: `interrupted`)."""

    result: bytes | None
    interrupted: bool


class RequestLog:
    """(command, request_id) -> final result, bounded by age and count; thread-safe."""

    def __init__(self, path: Path | None, max_age_s: float, max_entries: int) -> None:
        """`path` None keeps the log in memory (tests; a state_dir that cannot be written)."""
        self.path = path
        self._max_age_s = max_age_s
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._claims = 0
        self._db = self._open(path)
        self._boot = time.time()
        self.prune()

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        target = ":memory:"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            target = str(path)
        db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS requests (command TEXT NOT NULL, "
                "request_id TEXT NOT NULL, claimed REAL NOT NULL, result BLOB, "
                "PRIMARY KEY (command, request_id))"
            )
            db.execute("CREATE INDEX IF NOT EXISTS requests_claimed ON requests (claimed)")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @classmethod
    def open_in(cls, state_dir: Path, max_age_s: float, max_entries: int) -> RequestLog:
        """The log in `state_dir`; a damaged file is moved aside and a new one started
        (losing old ids beats refusing every command), an unwritable folder keeps it in
        memory (ids survive until the next restart only); both are logged."""
        path = state_dir / FILE_NAME
        try:
            return cls(path, max_age_s, max_entries)
        except (OSError, sqlite3.Error) as exc:
            problem: Exception = exc
        if path.is_file():
            aside = path.with_name(f"{FILE_NAME}.damaged-{int(time.time())}")
            log.error("commands: cannot open %s (%s); moving it to %s and starting anew",
                      path, problem, aside)
            try:
                path.rename(aside)
                return cls(path, max_age_s, max_entries)
            except (OSError, sqlite3.Error) as exc:
                problem = exc
        log.error("commands: cannot keep request ids in %s (%s); keeping them in memory "
                  "until the next restart", path, problem)
        return cls(None, max_age_s, max_entries)

    def seen(self, command: str, request_id: str) -> Seen | None:
        """The stored row, or None for a request never claimed (or forgotten by age)."""
        with self._lock:
            row = self._db.execute(
                "SELECT claimed, result FROM requests WHERE command=? AND request_id=?",
                (command, request_id),
            ).fetchone()
        if row is None:
            return None
        claimed, result = row
        return Seen(result, result is None and claimed < self._boot)

    def claim(self, command: str, request_id: str) -> bool:
        """Record the request as running, durably; False if it was already there."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO requests (command, request_id, claimed) VALUES (?, ?, ?)",
                    (command, request_id, time.time()),
                )
            except sqlite3.IntegrityError:
                return False
            self._claims += 1
            due = self._claims % PRUNE_EVERY == 0
        if due:
            self.prune()
        return True

    def finish(self, command: str, request_id: str, result: bytes) -> None:
        """Store the final result (before it is sent)."""
        with self._lock:
            self._db.execute(
                "UPDATE requests SET result=? WHERE command=? AND request_id=?",
                (result, command, request_id),
            )

    def prune(self) -> int:
        """Forget rows past the age and count bounds; how many went."""
        with self._lock:
            before = self._db.total_changes
            self._db.execute("DELETE FROM requests WHERE claimed < ?",
                             (time.time() - self._max_age_s,))
            self._db.execute(
                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
                "ORDER BY claimed DESC LIMIT -1 OFFSET ?)", (self._max_entries,),
            )
            self._db.execute(
                "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM (SELECT rowid, "
                "SUM(LENGTH(result)) OVER (ORDER BY claimed DESC) AS newer FROM requests) "
                "WHERE newer > ?)", (MAX_BYTES,),
            )
            return self._db.total_changes - before

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
