"""Opening the spool file: tell damage from a disk that is full now, and salvage rows.

Three outcomes, never "move aside and forget":
- the file opens and holds our schema: use it;
- the disk or file system refuses now (full, read-only, I/O error, permissions):
  `SpoolUnavailable`; the caller runs from memory and tries again later, the file is
  left as it is (it is not damaged);
- the file is damaged or holds someone else's schema: it is renamed
  `<name>.corrupt-<time>` (kept for inspection), a new spool is started, and every row
  that can still be read is copied into it, in order; rows that cannot be read are
  counted. SQLite reads most of a damaged file row by row: a damaged page costs the rows
  on it, not the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import AgentError

log = logging.getLogger(__name__)

MEMORY = ":memory:"
OUR_TABLES = {"messages", "counters", "dead_letter", "sqlite_sequence"}
MESSAGE_COLUMNS = ("id", "created", "topic", "payload")
STAMP_COLUMNS = {"boot_id": "TEXT NOT NULL DEFAULT ''", "boot_s": "REAL NOT NULL DEFAULT 0",
                 "synced": "INTEGER NOT NULL DEFAULT 1"}
"""Added to spools written before the stamps existed; their rows keep the old rule (the
wall time counts when it is after 2020)."""
LEGACY_STAMPS = {"boot_id": "", "boot_s": 0.0, "synced": 1}
"""What a salvaged row from a spool written before the stamps gets: the old rule, as the
ALTER TABLE defaults of STAMP_COLUMNS give rows of such a file opened in place."""
DAMAGE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
MAX_PROBES = 2_000_000
"""Ids probed one by one past damaged pages: bounds a salvage to seconds."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    boot_id TEXT NOT NULL DEFAULT '',
    boot_s REAL NOT NULL DEFAULT 0,
    synced INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    set_aside REAL NOT NULL,
    reason TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""
WAL_LIMIT_BYTES = 4 * 1024 * 1024
"""The WAL is truncated to this after each checkpoint (journal_size_limit)."""


class SpoolError(AgentError):
    """The spool cannot store a message (disk full, I/O error, read-only file)."""


class SpoolUnavailable(SpoolError):  # noqa: N818 (a state, not a bug)
    """The file cannot be used now (disk full, read-only, I/O, permission): not damage."""


class ForeignSchemaError(sqlite3.DatabaseError):
    """A SQLite file that is not a spool: never written into."""


class DamagedFileError(sqlite3.DatabaseError):
    """SQLite's own check found damage that plain reads may not report (lost cells)."""


@dataclass(frozen=True)
class Salvage:
    """What became of a damaged or foreign spool file."""

    aside: Path
    reason: str
    salvaged: int
    unreadable: int
    """Row ids that failed to read (an upper bound: an id in a damaged range may have
    been delivered and deleted already); -1 when the file could not be read at all."""

    def describe(self) -> str:
        lost = ("no row could be read" if self.unreadable < 0
                else f"{self.unreadable} row(s) could not be read")
        return (f"spool was unusable ({self.reason}); kept as {self.aside}; "
                f"{self.salvaged} row(s) salvaged, {lost}")


def is_damage(exc: sqlite3.Error) -> bool:
    """Corrupt pages, not a database, or not our schema (as opposed to a refusing disk)."""
    if isinstance(exc, (ForeignSchemaError, DamagedFileError)):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in DAMAGE_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def open_database(path: Path | None) -> tuple[sqlite3.Connection, Salvage | None]:
    """Open (creating) the spool file; salvage a damaged one; SpoolUnavailable otherwise."""
    if path is None:
        return connect(MEMORY), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return connect(str(path)), None
    except OSError as exc:
        raise SpoolUnavailable(f"cannot open spool {path}: {exc}") from exc
    except sqlite3.Error as exc:
        if not is_damage(exc):
            raise SpoolUnavailable(f"cannot open spool {path}: {exc}") from exc
        reason = str(exc)
    report = rebuild(path, reason)
    try:
        db = connect(str(path))
    except (OSError, sqlite3.Error) as exc:
        raise SpoolUnavailable(f"cannot open the salvaged spool {path}: {exc}") from exc
    log.error("%s", report.describe())
    return db, report


def rebuild(path: Path, reason: str) -> Salvage:
    """Copy the readable rows of the damaged file into a new file beside it, then swap
    them: the damaged file (with its WAL and list of delivered ids) is renamed aside only
    once the copy is committed. A disk that refuses the copy (full, I/O error) leaves
    everything as it was and raises SpoolUnavailable: the agent runs from memory and the
    salvage is tried again with the file, never lost to a fresh empty spool."""
    fresh = path.with_name(path.name + ".salvage")
    target: sqlite3.Connection | None = None
    try:
        _remove(fresh)
        target = sqlite3.connect(str(fresh), isolation_level=None)  # rollback journal
        target.executescript(SCHEMA)
        report = salvage(path, target, reason)
        target.close()
        target = None
        aside = set_aside(path)
        fresh.replace(path)
    except (OSError, sqlite3.Error) as exc:
        if target is not None:
            target.close()
        with contextlib.suppress(OSError):
            _remove(fresh)
        raise SpoolUnavailable(f"cannot salvage the damaged spool {path} ({reason}): "
                               f"{exc}") from exc
    return dataclasses.replace(report, aside=aside)


def _remove(database: Path) -> None:
    """A SQLite file and its journal, if there."""
    for side in (database, database.with_name(database.name + "-journal")):
        side.unlink(missing_ok=True)


def set_aside(path: Path) -> Path:
    """Rename the file, its WAL (which holds its latest rows) and its list of delivered
    ids (which name rows of this file, not of the new one) out of the way."""
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    path.rename(aside)
    for suffix in ("-wal", "-shm", ".acked"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(aside.with_name(aside.name + suffix))
    return aside


def salvage(source: Path, target: sqlite3.Connection, reason: str) -> Salvage:
    """Copy every readable message of `source` into `target`, in order, row by row."""
    try:
        src = sqlite3.connect(str(source), isolation_level=None)
        # A file cut short (a copy or an FS repair that lost its tail) still says in its
        # header how long it was; SQLite then refuses even its first page, unless the
        # schema is "writable". Nothing is written here: the pages that remain read.
        src.execute("PRAGMA writable_schema=ON")
    except sqlite3.Error:
        return Salvage(source, reason, 0, -1)
    try:
        try:
            columns = {row[1] for row in src.execute("PRAGMA table_info(messages)")}
        except sqlite3.Error:
            return Salvage(source, reason, 0, -1)
        if not set(MESSAGE_COLUMNS) <= columns:
            return Salvage(source, reason, 0, 0)  # not a spool: nothing of ours in it
        wanted = [*MESSAGE_COLUMNS, *(c for c in STAMP_COLUMNS if c in columns)]
        return _copy_rows(src, target, wanted, source, reason)
    finally:
        src.close()


def _copy_rows(
    src: sqlite3.Connection, target: sqlite3.Connection, columns: list[str],
    source: Path, reason: str,
) -> Salvage:
    """Every readable row into `target`, in id order, in one transaction."""
    copy = _RowCopy(src, target, columns)
    target.execute("BEGIN")
    try:
        copy.run()
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        raise
    return Salvage(source, reason, copy.salvaged, copy.unreadable)


class _RowCopy:
    """Rows in id order, each once: `last` only grows, so a damaged cell read back with a
    smaller id (zero-filled: 0) is counted, never a reason to read the file again; past a
    damaged page the next ids are probed one by one (MAX_PROBES bounds the time)."""

    def __init__(self, src: sqlite3.Connection, target: sqlite3.Connection,
                 columns: list[str]) -> None:
        self.src, self.target = src, target
        self.select = f"SELECT {', '.join(columns)} FROM messages"  # noqa: S608 (fixed)
        legacy = {name: value for name, value in LEGACY_STAMPS.items() if name not in columns}
        names = [*columns[1:], *legacy]
        self.insert = (f"INSERT INTO messages ({', '.join(names)}) "  # noqa: S608
                       f"VALUES ({', '.join('?' for _ in names)})")
        self.extra = tuple(legacy.values())
        self.highest = _highest_id(src)
        self.last = self.salvaged = self.unreadable = self.probes = 0
        self.first: int | None = None
        """The oldest id copied: ids from it on had not been delivered."""

    def run(self) -> None:
        while not self._scan():
            highest = self.highest
            if highest is None or self.last >= highest or self.probes >= MAX_PROBES:
                self.unreadable = _count_the_rest(highest, self.last, self.salvaged,
                                                  self.unreadable)
                break
            self._probe(highest)
        if self.highest is not None and self.first is not None:
            # Delivery deletes the oldest first: an id from the oldest copied to the highest
            # given that did not come back was lost (damage can end a scan, or hide ids from
            # a probe, without an error).
            self.unreadable = max(self.unreadable,
                                  self.highest - self.first + 1 - self.salvaged)

    def _scan(self) -> bool:
        """Copy rows after `last` in order; False when a damaged page stopped the scan."""
        try:
            for row in self.src.execute(f"{self.select} WHERE id > ? ORDER BY id",
                                        (self.last,)):
                self._take(row)
        except sqlite3.DatabaseError:
            return False
        self.unreadable += max(0, (self.highest or 0) - self.last)  # ids it never reached
        return True

    def _probe(self, highest: int) -> None:
        """Ids one by one after a damaged page, up to the first one that reads."""
        while self.last < highest and self.probes < MAX_PROBES:
            self.probes += 1
            candidate = self.last + 1
            try:
                row = self.src.execute(f"{self.select} WHERE id = ?", (candidate,)).fetchone()
            except sqlite3.DatabaseError:
                row = None
            if row is None:  # in a damaged stretch: lost (or delivered: an upper bound)
                self.unreadable += 1
            elif self._take(row):
                return
            self.last = max(self.last, candidate)

    def _take(self, row: tuple[object, ...]) -> bool:
        row_id = row[0]
        if not isinstance(row_id, int) or row_id <= self.last:
            self.unreadable += 1
            return False
        self.last = row_id
        if not _valid(row):
            self.unreadable += 1
            return False
        self.target.execute(self.insert, (*row[1:], *self.extra))
        self.salvaged += 1
        if self.first is None:
            self.first = row_id
        return True


def _count_the_rest(highest: int | None, last: int, salvaged: int, unreadable: int) -> int:
    """Unreadable rows once the scan stops at `last`: the ids up to the highest ever
    given; at least one when that is unknown; -1 ("no row could be read") for none at all."""
    if highest is not None:
        return unreadable + max(0, highest - last)
    return unreadable + 1 if salvaged or unreadable else -1


def _highest_id(src: sqlite3.Connection) -> int | None:
    """The last id ever given (AUTOINCREMENT keeps it apart from the table's pages)."""
    for query in ("SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
                  "SELECT MAX(id) FROM messages"):
        try:
            row = src.execute(query).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None and row[0] is not None:
            return int(row[0])
    return None


def _valid(row: tuple[object, ...]) -> bool:
    """A row as the publisher wrote it: a time, an MQTT topic, a JSON object.

    SQLite reads some damage back without an error: a page cut in two returns its cells
    zero-filled. Every spooled payload is a JSON object (detections, events), so a row
    whose payload is not one was damaged and is counted, never sent.
    """
    _, created, topic, payload = row[:4]
    if not (isinstance(created, (int, float)) and isinstance(topic, str)
            and isinstance(payload, bytes)):
        return False
    if not topic or "\0" in topic or "+" in topic or "#" in topic:
        return False
    try:
        return isinstance(json.loads(payload), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


def connect(target: str) -> sqlite3.Connection:
    """Autocommit connection in WAL mode with a bounded WAL; refuses a foreign schema."""
    db = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=2.0)
    try:
        tables = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables - OUR_TABLES or (tables and "messages" not in tables):
            raise ForeignSchemaError(f"not a spool: tables {', '.join(sorted(tables))}")
        if "messages" in tables:
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if not set(MESSAGE_COLUMNS) <= columns:
                raise ForeignSchemaError(f"not a spool: messages has columns {sorted(columns)}")
            for name, kind in STAMP_COLUMNS.items():
                if name not in columns:
                    db.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
        if target != MEMORY:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("spool %s: WAL unavailable, using journal mode %s", target, mode)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        db.executescript(SCHEMA)
        db.execute("SELECT COUNT(*) FROM messages").fetchone()
        if target != MEMORY:
            # Damage can also hide rows without an error; the check reads every page once
            # (about a second per 100 MB on an SD card), at start only.
            problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise DamagedFileError("; ".join(problems))
    except BaseException:
        db.close()
        raise
    return db
