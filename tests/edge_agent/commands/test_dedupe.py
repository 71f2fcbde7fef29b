"""Request ids: remembered across a reopen (a restart), bounded by age and count, and a
damaged file costs the old ids, never the channel."""

from __future__ import annotations

import time
from pathlib import Path

from edge_agent.commands.dedupe import FILE_NAME, RequestLog


def test_ids_survive_a_restart_and_a_cut_off_request_reads_interrupted(tmp_path: Path) -> None:
    first = RequestLog.open_in(tmp_path, 3600, 1000)
    assert first.claim("snapshot", "a")
    assert not first.claim("snapshot", "a")  # a second claim of the same id fails
    assert first.claim("reload", "a")  # ids are per command
    first.finish("snapshot", "a", b'{"outcome":"ok"}')
    seen = first.seen("reload", "a")
    assert seen is not None
    assert (seen.result, seen.interrupted) == (None, False)  # running in this process
    first.close()
    time.sleep(0.01)
    second = RequestLog.open_in(tmp_path, 3600, 1000)
    done = second.seen("snapshot", "a")
    cut = second.seen("reload", "a")
    assert done is not None
    assert cut is not None
    assert done.result == b'{"outcome":"ok"}'
    assert (cut.result, cut.interrupted) == (None, True)
    assert second.seen("snapshot", "b") is None


def test_bounded_by_age_and_count(tmp_path: Path) -> None:
    requests = RequestLog(tmp_path / FILE_NAME, 0.05, 100)
    for index in range(150):
        requests.claim("snapshot", f"r{index}")
    assert len(requests) <= 150
    requests.prune()
    assert len(requests) <= 100
    time.sleep(0.1)
    requests.prune()
    assert len(requests) == 0


def test_a_damaged_file_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    requests = RequestLog.open_in(tmp_path, 3600, 1000)
    assert requests.path == tmp_path / FILE_NAME
    assert requests.claim("snapshot", "a")
    assert list(tmp_path.glob(f"{FILE_NAME}.damaged-*"))


def test_an_unwritable_state_dir_keeps_ids_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    requests = RequestLog.open_in(blocker / "state", 3600, 1000)  # a folder under a file
    assert requests.path is None
    assert requests.claim("snapshot", "a")
    assert not requests.claim("snapshot", "a")


def test_stored_results_are_bounded_in_bytes(tmp_path: Path, monkeypatch) -> None:
    from edge_agent.commands import dedupe

    monkeypatch.setattr(dedupe, "MAX_BYTES", 10_000)
    requests = RequestLog(tmp_path / FILE_NAME, 3600, 1000)
    for index in range(30):
        requests.claim("snapshot", f"r{index}")
        requests.finish("snapshot", f"r{index}", b"x" * 1000)
    requests.prune()
    assert 9 <= len(requests) <= 10
    assert requests.seen("snapshot", "r29") is not None  # the newest stay
    assert requests.seen("snapshot", "r0") is None
