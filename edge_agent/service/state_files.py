"""The agent's files in its state directory: the lock, the pid and the last reload.

Written atomically, so `edge-agent reload` never reads half a file. The lock keeps a
second agent off a state directory in use: two agents on one spool would each send and
delete the other's rows (duplicates, and counts that go negative).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from edge_agent.errors import AgentError

log = logging.getLogger(__name__)

PID_FILE = "agent.pid"
LOCK_FILE = "agent.lock"
RELOAD_FILE = "last-reload.json"


def write_pid(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(state_dir / PID_FILE, f"{os.getpid()}\n")


def remove_pid(state_dir: Path) -> None:
    path = state_dir / PID_FILE
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def write_reload_result(state_dir: Path, result: dict[str, object]) -> None:
    try:
        _write_atomic(state_dir / RELOAD_FILE, json.dumps(result) + "\n")
    except OSError as exc:  # the outcome is also logged and in the info message
        log.warning("cannot record the reload outcome in %s: %s", state_dir, exc)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    temporary.replace(path)


def running_pid(state_dir: Path) -> int | None:
    """The agent's pid from its pid file, if that process is alive and is edge-agent."""
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"edge_agent" in command or b"edge-agent" in command else None


class StateDirInUseError(AgentError):
    """Another edge-agent holds the state directory's lock."""


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """Hold `<state_dir>/agent.lock` (flock) while the agent runs; refuse if another does.

    The kernel drops the lock when the process dies, so a crash never leaves it stuck.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = running_pid(state_dir)
            raise StateDirInUseError(
                f"another edge-agent{f' (pid {other})' if other else ''} is running on "
                f"state_dir {state_dir}; stop it first, or give this one its own state_dir "
                "(two agents on one spool would send and delete each other's detections)"
            ) from None
        yield
    finally:
        handle.close()
