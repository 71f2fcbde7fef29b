"""The agent's pid and last-reload files: what `edge-agent reload` trusts to find the agent
and to read how the reload went. A stale or foreign pid must never be signalled."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.service import state_files
from edge_agent.service.state_files import (
    PID_FILE,
    RELOAD_FILE,
    remove_pid,
    running_pid,
    write_pid,
    write_reload_result,
)
from tests.helpers import spawn


@pytest.fixture
def process() -> Iterator:
    """Start a sleeping process with the given extra argv; killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        child = spawn(*argv)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()
        child.wait()


def test_write_pid_creates_the_state_dir_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    write_pid(state)
    assert (state / PID_FILE).read_text() == f"{os.getpid()}\n"
    assert sorted(p.name for p in state.iterdir()) == [PID_FILE]


def test_remove_pid_removes_only_its_own(tmp_path: Path) -> None:
    write_pid(tmp_path)
    remove_pid(tmp_path)
    assert not (tmp_path / PID_FILE).exists()
    remove_pid(tmp_path)  # already gone: nothing to say
    (tmp_path / PID_FILE).write_text("4242\n")  # a newer agent's file: not ours to remove
    remove_pid(tmp_path)
    assert (tmp_path / PID_FILE).read_text() == "4242\n"


def test_running_pid_names_a_live_agent_process(tmp_path: Path, process) -> None:
    # What the check looks for: "edge_agent" or "edge-agent" on the command line.
    agent = process(sys.executable, "-c", "import time; time.sleep(60)", "edge_agent.cli")
    (tmp_path / PID_FILE).write_text(f"{agent.pid}\n")
    assert running_pid(tmp_path) == agent.pid


@pytest.mark.parametrize("content", ["", "not a pid\n", "-\n", "12 13\n"])
def test_running_pid_ignores_a_garbled_file(tmp_path: Path, content: str) -> None:
    (tmp_path / PID_FILE).write_text(content)
    assert running_pid(tmp_path) is None


def test_running_pid_ignores_a_missing_file(tmp_path: Path) -> None:
    assert running_pid(tmp_path) is None


def test_running_pid_ignores_a_dead_agent(tmp_path: Path, process) -> None:
    gone = process(sys.executable, "-c", "pass", "edge_agent.cli")
    gone.wait()
    (tmp_path / PID_FILE).write_text(f"{gone.pid}\n")
    assert running_pid(tmp_path) is None


def test_running_pid_ignores_a_reused_pid_of_another_program(tmp_path: Path, process) -> None:
    """After a crash and reboot the stale pid may belong to anything: never signal it."""
    other = process("sleep", "60")
    (tmp_path / PID_FILE).write_text(f"{other.pid}\n")
    assert running_pid(tmp_path) is None


def test_reload_result_round_trips_as_json(tmp_path: Path) -> None:
    result = {"ok": True, "at": "2026-11-30T04:00:00Z", "changed": ["gate"]}
    write_reload_result(tmp_path, result)
    assert json.loads((tmp_path / RELOAD_FILE).read_text()) == result
    write_reload_result(tmp_path, {"ok": False})  # replaced whole, not appended
    assert json.loads((tmp_path / RELOAD_FILE).read_text()) == {"ok": False}
    assert sorted(p.name for p in tmp_path.iterdir()) == [RELOAD_FILE]


def test_an_unwritable_reload_file_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reload itself happened; failing to record it must not undo or crash it."""
    missing = tmp_path / "no such dir"
    with caplog.at_level(logging.WARNING, logger=state_files.__name__):
        write_reload_result(missing, {"ok": True})
    [record] = caplog.records
    assert record.getMessage().startswith(f"cannot record the reload outcome in {missing}: ")
