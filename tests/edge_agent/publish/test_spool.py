"""The on-disk spool: order, bounds, durability across reopen, bad files, a full disk."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from edge_agent.publish.spool import Spool, SpoolError
from edge_agent.publish.spool_clock import SpoolClock

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


# -- a file that cannot be used: salvage, not "move aside and forget" ----------------------


def filled_spool(path: Path, rows: int) -> list[bytes]:
    """A real spool file of `rows` JSON messages (about 30 rows a 4 KiB page), closed."""
    spool = spool_at(path)
    sent = [b'{"n": "%06d", "pad": "%s"}' % (n, b"p" * 100) for n in range(rows)]
    for payload in sent:
        spool.append("t", payload)
    spool.close()
    return sent


def test_damaged_pages_cost_only_their_rows(tmp_path: Path, caplog) -> None:
    path = tmp_path / "spool.sqlite3"
    sent = filled_spool(path, 3000)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as file:  # garbage over 3 pages in the middle of the file
        file.seek(pages // 2 * 4096)
        file.write(bytes(range(256)) * 48)
    spool = spool_at(path)
    kept = payloads(spool)
    report = spool.salvage
    assert report is not None
    assert report.aside.exists()
    assert report.aside.name.startswith("spool.sqlite3.corrupt-")
    assert len(kept) == report.salvaged
    assert 3000 - 200 <= len(kept) < 3000  # 3 pages hold ~90 rows
    assert 0 < report.unreadable <= 3000 - len(kept) + 30
    assert kept == sorted(kept)  # still in order, and each one whole
    assert set(kept) <= set(sent)
    assert f"{report.salvaged} row(s) salvaged" in caplog.text
    assert "could not be read" in caplog.text
    # The new file is a sound spool that goes on working.
    spool.append("t", b"after")
    assert payloads(spool)[-1] == b"after"
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize(("where", "pages"), [
    (0.15, 1), (0.5, 1), (0.85, 1), (0.3, 5), (0.98, 2), (0.6, 10)])
def test_damage_anywhere_is_salvaged_in_order(tmp_path: Path, where: float, pages: int) -> None:
    """Other members of the kind: one or many damaged pages, early, late, at the end."""
    path = tmp_path / "spool.sqlite3"
    sent = filled_spool(path, 3000)
    total = path.stat().st_size // 4096
    with path.open("r+b") as file:
        file.seek(max(2, int(total * where)) * 4096)
        file.write(bytes(range(256)) * 16 * pages)
    spool = spool_at(path)
    kept = payloads(spool)
    assert kept == sorted(kept)
    assert set(kept) <= set(sent)
    assert len(kept) >= 3000 - 40 * (pages + 1)  # a 4 KiB page holds ~30 rows
    if spool.salvage is not None:
        assert spool.salvage.salvaged == len(kept)
    else:  # SQLite did not notice (only free space or slack was hit): nothing may be missing
        assert kept == sent
    spool.append("t", b"after")
    assert payloads(spool)[-1] == b"after"


@pytest.mark.parametrize("kept_fraction", [0.99, 0.9, 0.5, 0.1, 0.02, 0.004])
def test_a_file_cut_short_is_salvaged_up_to_the_cut(tmp_path: Path, kept_fraction: float) -> None:
    """A file that lost its tail (a copy cut short, a file-system repair) still says in its
    header how long it was, and SQLite refused all of it: every row before the cut must
    come back, in order, and the rows after it are counted as lost."""
    path = tmp_path / "spool.sqlite3"
    sent = filled_spool(path, 3000)
    with path.open("r+b") as file:
        file.truncate(int(path.stat().st_size * kept_fraction))
    spool = spool_at(path)
    kept = payloads(spool)
    assert spool.salvage is not None
    # Rows fill the file in order but not strictly (b-tree splits move some to new pages
    # at the end); a page holds ~14 of these rows.
    assert len(kept) >= 3000 * kept_fraction * 0.5 - 60
    assert kept == sorted(kept)
    assert set(kept) <= set(sent)  # no zero-filled row
    assert spool.salvage.salvaged == len(kept)
    if kept:
        assert spool.salvage.unreadable >= 3000 - len(kept) - 30
    spool.append("t", b"after")
    assert payloads(spool)[-1] == b"after"


def _open_within(path: Path, seconds: float = 60.0) -> Spool:
    """Open a spool on a thread: a salvage that never ends fails the test, not the run."""
    opened: list[Spool] = []
    thread = threading.Thread(target=lambda: opened.append(spool_at(path)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert opened, f"opening {path} did not finish in {seconds:.0f} s (a salvage loop?)"
    return opened[0]


@pytest.mark.parametrize("into_page", [43, 1000, 2048, 3000, 4095])
@pytest.mark.parametrize("where", [0.02, 0.15, 0.5, 0.95])
def test_a_cut_inside_a_page_is_salvaged_once_in_order(
    tmp_path: Path, where: float, into_page: int
) -> None:
    """A cut inside a page reads that page's cells back zero-filled (id 0): the salvage
    must neither start again from there (it copied the same rows over and over, filling
    the disk) nor send them; every row comes back at most once, in order."""
    path = tmp_path / "spool.sqlite3"
    sent = filled_spool(path, 3000)
    page = max(2, int(path.stat().st_size // 4096 * where))
    with path.open("r+b") as file:
        file.truncate(page * 4096 + into_page)
    spool = _open_within(path)
    kept = payloads(spool)
    assert spool.salvage is not None
    assert len(kept) == len(set(kept))
    assert kept == sorted(kept)
    assert set(kept) <= set(sent)
    assert spool.salvage.salvaged == len(kept)
    if kept:
        assert spool.salvage.unreadable >= 3000 - len(kept) - 30
    else:  # never "0 lost": counted, or -1 when not even the tables could be read
        assert spool.salvage.unreadable == -1 or spool.salvage.unreadable > 2000
    spool.append("t", b"after")
    assert payloads(spool)[-1] == b"after"


@pytest.mark.parametrize(("page", "start", "end"), [(2, 2048, 4096), (5, 0, 4096),
                                                     (40, 100, 3000)])
def test_zeroed_bytes_count_every_row_they_cost(
    tmp_path: Path, page: int, start: int, end: int
) -> None:
    """Zeroed bytes can end SQLite's scan early without an error: the rows after it up to
    the last id ever given are lost and must be counted, not reported as 0 lost."""
    path = tmp_path / "spool.sqlite3"
    filled_spool(path, 3000)
    with path.open("r+b") as file:
        file.seek((page - 1) * 4096 + start)
        file.write(b"\0" * (end - start))
    spool = _open_within(path)
    if spool.salvage is None:  # SQLite saw no damage: nothing may be missing
        assert len(payloads(spool)) == 3000
        return
    assert spool.salvage.salvaged == len(payloads(spool))
    assert spool.salvage.salvaged + max(spool.salvage.unreadable, 0) >= 3000 - 30


def test_salvaged_rows_of_an_old_spool_keep_the_old_clock_rule(tmp_path: Path) -> None:
    """A spool from before the stamps, damaged: its rows come back marked synced (the old
    rule), as they would have opened in place."""
    path = tmp_path / "spool.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,"
        " topic TEXT NOT NULL, payload BLOB NOT NULL);")
    old.executemany("INSERT INTO messages (created, topic, payload) VALUES (?, 't', ?)",
                    [(NOW, b'{"n": %d, "pad": "%s"}' % (n, b"p" * 200)) for n in range(500)])
    old.commit()
    old.close()
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)
    spool = _open_within(path)
    assert spool.salvage is not None
    assert spool.salvage.salvaged > 100
    synced = {row[0] for row in spool._db.execute("SELECT synced FROM messages")}
    assert synced == {1}


def test_a_disk_full_during_a_salvage_keeps_the_damaged_file_for_later(tmp_path: Path) -> None:
    """The salvage's copy hit a full disk: start went on (spool in memory), the damaged
    file stays where it was (not set aside behind a fresh empty spool, which lost every
    row), and once the disk has room the salvage runs and the rows come back."""
    built = tmp_path / "built.sqlite3"
    sent = filled_spool(built, 3000)
    with built.open("r+b") as file:
        file.truncate(built.stat().st_size * 3 // 4)
    damaged = built.read_bytes()
    disk = tmp_path / "disk"
    disk.mkdir()
    size = 3 * len(damaged) + (1 << 20)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    try:
        path = disk / "spool.sqlite3"
        path.write_bytes(damaged)
        with contextlib.suppress(OSError):  # leave about 100 KB: the copy needs more
            (disk / "filler").write_bytes(b"\0" * (size - len(damaged) - 100_000))
        spool = _open_within(path)
        assert spool.error is not None
        assert "cannot salvage" in spool.error
        assert path.read_bytes() == damaged
        assert not list(disk.glob("*.corrupt-*"))
        assert not list(disk.glob("*.salvage*"))
        spool.append("t", b'{"while": "full"}')
        (disk / "filler").unlink()
        assert spool.reopen() is True, spool.error
        kept = payloads(spool)
        assert kept[-1] == b'{"while": "full"}'
        assert len(kept) > 1500
        assert set(kept[:-1]) <= set(sent)
        assert list(disk.glob("spool.sqlite3.corrupt-*"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_damaged_file_header_is_salvaged_as_far_as_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    filled_spool(path, 200)
    with path.open("r+b") as file:
        file.write(b"\0" * 100)  # the SQLite header
    spool = spool_at(path)
    assert spool.salvage is not None
    assert spool.salvage.salvaged == 0
    assert spool.salvage.unreadable == -1
    assert "no row could be read" in spool.salvage.describe()
    assert spool.error is None  # a new, working spool
    spool.append("t", b"x")
    assert len(spool) == 1


@pytest.mark.parametrize("schema", [
    "CREATE TABLE people (name TEXT)",
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)",
    "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL, topic TEXT,"
    " payload BLOB); CREATE TABLE extra (x)",
])
def test_a_foreign_schema_is_never_written_into(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "spool.sqlite3"
    foreign = sqlite3.connect(path)
    foreign.executescript(schema)
    foreign.close()
    before = path.read_bytes()
    spool = spool_at(path)
    assert spool.salvage is not None
    assert "not a spool" in spool.salvage.reason
    assert spool.salvage.aside.read_bytes() == before  # untouched, kept for its owner
    spool.append("t", b"mine")
    assert payloads(spool) == [b"mine"]


def test_an_unwritable_place_leaves_the_spool_in_memory_and_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    spool = spool_at(blocker / "spool.sqlite3")
    assert spool.error is not None
    assert str(blocker) in spool.error
    assert not spool.on_disk
    spool.append("t", b"kept in memory")
    assert payloads(spool) == [b"kept in memory"]
    assert spool.reopen() is False  # still blocked


@pytest.mark.parametrize("refusal", ["full", "read-only"])
def test_a_refusing_disk_at_start_is_not_damage_and_recovers(
    tmp_path: Path, refusal: str,
) -> None:
    """SQLITE_FULL or a read-only file system when opening: not set aside, run from
    memory, reopen once the disk takes writes again, nothing lost."""
    path = tmp_path / "spool.sqlite3"
    sent = filled_spool(path, 50)
    disk = tmp_path / "disk"
    disk.mkdir()
    size = path.stat().st_size + 256 * 1024
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full or read-only disk)")
    try:
        shutil.copy(path, disk / "spool.sqlite3")
        if refusal == "full":
            with contextlib.suppress(OSError):  # fill every byte left
                (disk / "filler").write_bytes(b"\0" * (1 << 20))
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        spool = spool_at(disk / "spool.sqlite3")
        assert spool.error is not None
        assert spool.salvage is None
        assert not list(disk.glob("*.corrupt-*"))
        spool.append("t", b"while refused")
        assert payloads(spool) == [b"while refused"]
        assert spool.reopen() is False
        if refusal == "full":
            (disk / "filler").unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert spool.reopen() is True, spool.error
        assert spool.error is None
        assert payloads(spool) == [*sent, b"while refused"]
        spool.close()
        assert payloads(spool_at(disk / "spool.sqlite3")) == [*sent, b"while refused"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_delivered_rows_that_cannot_be_deleted_are_never_sent_again(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = spool_at(path)
    for n in range(5):
        spool.append("t", b"%d" % n)
    # A real refusal from SQLite for every DELETE on the table.
    spool._db.execute("CREATE TRIGGER refuse BEFORE DELETE ON messages "
                      "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    delivered = [m.id for m in spool.after(0, 3)]
    assert spool.delete(delivered) is False
    assert len(spool) == 2  # not reported as waiting
    assert payloads(spool) == [b"3", b"4"]  # not read again
    spool.close()  # still refused: the ids go to a side file
    assert (tmp_path / "spool.sqlite3.acked").exists()
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()
    reopened = spool_at(path)
    assert payloads(reopened) == [b"3", b"4"]
    assert len(reopened) == 2
    assert not (tmp_path / "spool.sqlite3.acked").exists()


def test_the_wal_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = spool_at(path)
    for n in range(4000):  # ~16 MB through the WAL
        spool.append("t", b"w" * 4000)
        if n % 1000 == 999:
            spool.delete([m.id for m in spool.after(0, 1000)])
            spool.checkpoint()
    wal = path.with_name("spool.sqlite3-wal")
    assert wal.stat().st_size <= 4 * 1024 * 1024


# -- time: ages that a clock step cannot fake ----------------------------------------------


class FakeClock(SpoolClock):
    def __init__(self, wall: float, boot_id: str = "boot-1", synced: bool = True) -> None:
        self.wall_s, self.boot, self.boot_id_value, self.is_synced = wall, 100.0, boot_id, synced

    def wall(self) -> float:
        return self.wall_s

    def boot_s(self) -> float:
        return self.boot

    def boot_id(self) -> str:
        return self.boot_id_value

    def synced(self) -> bool:
        return self.is_synced


NOW = 1_790_000_000.0  # 2026


def test_age_bound_runs_on_the_boot_clock(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    spool = Spool(tmp_path / "s.sqlite3", max_messages=BIG, max_bytes=BIG, max_age_s=60.0,
                  clock=clock)
    spool.append("t", b"old")
    clock.boot += 30
    spool.append("t", b"new")
    assert spool.drop_expired() == 0
    clock.boot += 31
    assert spool.drop_expired() == 1
    assert payloads(spool) == [b"new"]
    assert spool.dropped == 1


@pytest.mark.parametrize("step_s", [-86400 * 365 * 7, -3600.0, 3600.0, 86400 * 365 * 56])
def test_a_wall_clock_step_expires_nothing(tmp_path: Path, step_s: float) -> None:
    """NTP stepping the clock (1970 -> now, or back) is not time passing."""
    clock = FakeClock(NOW, synced=False)
    spool = Spool(tmp_path / "s.sqlite3", max_messages=BIG, max_bytes=BIG, max_age_s=60.0,
                  clock=clock)
    spool.append("t", b"before the step")
    clock.wall_s += step_s
    clock.is_synced = True
    clock.boot += 5
    spool.append("t", b"after the step")
    assert spool.drop_expired() == 0
    assert len(spool) == 2


@pytest.mark.parametrize(("row_synced", "now_synced", "expected"), [
    (True, True, 1),    # both stamps from a synchronised clock: the wall clock decides
    (False, True, 0),   # stored while the clock was unset: its age is unknown, kept
    (True, False, 0),   # the clock is unset now: no age can be trusted, kept
])
def test_ages_across_a_reboot(tmp_path: Path, row_synced: bool, now_synced: bool,
                              expected: int) -> None:
    path = tmp_path / "s.sqlite3"
    before = FakeClock(NOW, boot_id="boot-1", synced=row_synced)
    spool = Spool(path, max_messages=BIG, max_bytes=BIG, max_age_s=60.0, clock=before)
    spool.append("t", b"from the last boot")
    spool.close()
    after = FakeClock(NOW + 3600, boot_id="boot-2", synced=now_synced)
    after.boot = 5.0  # the boot clock started again
    reopened = Spool(path, max_messages=BIG, max_bytes=BIG, max_age_s=60.0, clock=after)
    assert reopened.drop_expired() == expected


def test_a_restart_in_the_same_boot_keeps_the_age(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    clock = FakeClock(NOW, synced=False)
    Spool(path, max_messages=BIG, max_bytes=BIG, max_age_s=60.0, clock=clock).append("t", b"a")
    clock.boot += 61
    clock.wall_s -= 10_000  # and the wall clock went back meanwhile
    reopened = Spool(path, max_messages=BIG, max_bytes=BIG, max_age_s=60.0, clock=clock)
    assert reopened.drop_expired() == 1


def test_old_spool_files_are_upgraded_and_keep_their_rows(tmp_path: Path) -> None:
    """A spool written before the stamps existed opens, and its rows keep the old rule."""
    path = tmp_path / "s.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,"
        " topic TEXT NOT NULL, payload BLOB NOT NULL);"
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);")
    old.executemany("INSERT INTO messages (created, topic, payload) VALUES (?, 't', ?)",
                    [(86400, b"1"), (NOW - 7200, b"2"), (NOW, b"3")])
    old.commit()
    old.close()
    spool = Spool(path, max_messages=BIG, max_bytes=BIG, max_age_s=3600.0,
                  clock=FakeClock(NOW, boot_id="other"))
    assert spool.salvage is None
    assert spool.drop_expired() == 1  # the 1970 row is kept, the two-hour-old one goes
    assert payloads(spool) == [b"1", b"3"]


def test_delivered_ids_of_a_damaged_file_do_not_delete_salvaged_rows(tmp_path: Path) -> None:
    """Salvaged rows get new ids: the old file's list of delivered ids goes with it."""
    path = tmp_path / "spool.sqlite3"
    filled_spool(path, 100)
    (tmp_path / "spool.sqlite3.acked").write_text("1\n2\n3\n")
    with path.open("r+b") as file:
        file.write(b"\0" * 100)
    spool = spool_at(path)
    assert spool.salvage is not None
    assert not (tmp_path / "spool.sqlite3.acked").exists()
    assert (spool.salvage.aside.parent / f"{spool.salvage.aside.name}.acked").exists()


class _FaultAfter:
    """The spool's connection, raising a worker fault right after the first statement
    that starts with `prefix` has run: the exception lands between a write and the
    counts kept for it, as an injected fault (or any bug) in a worker thread can."""

    def __init__(self, db: sqlite3.Connection, prefix: str) -> None:
        self._db, self._prefix, self.fired = db, prefix, False

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        cursor = self._db.execute(sql, *args)
        if not self.fired and sql.lstrip().startswith(self._prefix):
            self.fired = True
            raise RuntimeError("a fault between the write and its bookkeeping")
        return cursor

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


@pytest.mark.parametrize("prefix", ["INSERT INTO messages", "COMMIT"])
def test_counts_follow_the_file_when_a_fault_lands_mid_write(tmp_path: Path, prefix: str) -> None:
    """A fault injected into the pipeline thread landed after an INSERT and before the
    count: the count went below the rows, then negative after the deletes, and the
    agent's stop failed on `__len__() should return >= 0` (exit 1)."""
    spool = spool_at(tmp_path / "spool.sqlite3")
    for n in range(3):
        spool.append("t", b"%d" % n)
    real = spool._db
    spool._db = _FaultAfter(real, prefix)  # type: ignore[assignment]
    write = (lambda: spool.delete([1, 2])) if prefix == "COMMIT" else (
        lambda: spool.append("t", b"3"))
    with pytest.raises(RuntimeError, match="bookkeeping"):
        write()
    assert spool._db.fired
    spool._db = real
    rows = real.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert len(spool) == rows
    spool.delete([m.id for m in spool.after(0, 100)])
    assert len(spool) == 0
    assert len(payloads(spool)) == 0
