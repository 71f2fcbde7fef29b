"""The on-disk spool: order, bounds, durability across reopen, bad files, a full disk."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.spool import Spool, SpoolError

BIG = 10**9


def spool_at(path: Path | None, **bounds: float) -> Spool:
    settings = {"max_messages": BIG, "max_bytes": BIG, "max_age_s": 3600.0} | bounds
    return Spool(path, **settings)


def payloads(spool: Spool) -> list[bytes]:
    return [m.payload for m in spool.after(0, 10_000)]


def test_messages_come_back_in_order_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spool.sqlite3"
    spool = spool_at(path)
    for n in range(10):
        spool.append(f"t/{n % 3}", b"%d" % n)
    first = spool.after(0, 4)
    assert [m.payload for m in first] == [b"0", b"1", b"2", b"3"]
    assert [m.topic for m in first] == ["t/0", "t/1", "t/2", "t/0"]
    spool.delete([m.id for m in first])
    assert (len(spool), spool.bytes) == (6, 6)
    # Not closed: a killed process leaves the WAL behind, which is what a reopen reads.
    reopened = spool_at(path)
    assert payloads(reopened) == [b"%d" % n for n in range(4, 10)]
    assert (len(reopened), reopened.bytes, reopened.last_id) == (6, 6, 10)
    assert [m.id for m in reopened.after(7, 100)] == [8, 9, 10]


def test_count_bound_drops_the_oldest_and_counts_them_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = spool_at(path, max_messages=100)
    dropped = sum(spool.append("t", b"%d" % n) for n in range(250))
    assert len(spool) <= 100
    assert dropped == spool.dropped == 250 - len(spool)
    kept = payloads(spool)
    assert kept == [b"%d" % n for n in range(250 - len(kept), 250)]  # the newest, in order
    # A full spool drops a tenth of its bound at a time, not one row per frame.
    assert len(spool) >= 85
    spool.close()
    assert spool_at(path).dropped_total == dropped


def test_byte_bound_drops_a_tenth_of_the_bytes_not_the_backlog(tmp_path: Path) -> None:
    spool = spool_at(tmp_path / "s.sqlite3", max_messages=1000, max_bytes=100_000)
    for _ in range(150):
        spool.append("t", b"x" * 1000)
    assert spool.bytes <= 100_000
    assert len(spool) * 1000 == spool.bytes
    assert len(spool) >= 85  # never most of the backlog because of one big bound


def test_rows_in_flight_are_not_dropped_to_make_room(tmp_path: Path) -> None:
    spool = spool_at(tmp_path / "s.sqlite3", max_messages=10)
    for n in range(10):
        spool.append("t", b"%d" % n)
    spool.append("t", b"new", keep_after=3)  # rows 1..3 are with the MQTT client
    kept = payloads(spool)
    assert kept[:3] == [b"0", b"1", b"2"]
    assert b"3" not in kept
    assert kept[-1] == b"new"


def test_age_bound(tmp_path: Path) -> None:
    spool = spool_at(tmp_path / "s.sqlite3", max_age_s=60.0)
    spool.append("t", b"old")
    spool.append("t", b"new")
    assert spool.drop_expired(now=time.time() + 30) == 0
    assert spool.drop_expired(now=time.time() + 61) == 2
    assert (len(spool), spool.dropped) == (0, 2)


def test_rows_stored_before_the_clock_was_set_do_not_expire(tmp_path: Path) -> None:
    """A Jetson without RTC boots in 1970: NTP must not make its backlog 56 years old."""
    spool = spool_at(tmp_path / "s.sqlite3", max_age_s=60.0)
    spool.append("t", b"1970")
    spool._db.execute("UPDATE messages SET created = 86400")
    spool.append("t", b"now")
    assert spool.drop_expired(now=time.time() + 61) == 1
    assert payloads(spool) == [b"1970"]


def test_a_file_that_is_not_a_database_is_set_aside(tmp_path: Path, caplog) -> None:
    path = tmp_path / "spool.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    spool = spool_at(path)
    spool.append("t", b"fresh")
    assert payloads(spool) == [b"fresh"]
    aside = list(tmp_path.glob("spool.sqlite3.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not sqlite")
    assert "unreadable" in caplog.text


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((SpoolError, OSError)):
        spool_at(blocker / "spool.sqlite3")


def test_a_full_disk_is_a_spool_error_and_keeps_what_was_stored(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = spool_at(path)
    spool.append("t", b"kept")
    # SQLite's own "database or disk is full", as on a full filesystem.
    spool._db.execute("PRAGMA max_page_count = 8")

    def fill() -> None:
        for _ in range(1000):
            spool.append("t", b"y" * 4000)

    with pytest.raises(SpoolError, match="full"):
        fill()
    assert payloads(spool)[0] == b"kept"
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_memory_spool_has_the_same_behaviour() -> None:
    spool = spool_at(None, max_messages=3)
    for n in range(5):
        spool.append("t", b"%d" % n)
    assert payloads(spool) == [b"2", b"3", b"4"]
    assert spool.path is None
