"""The agent's process leaves only after its worker threads have, or without finalizing.

Real processes: a daemon thread still blocked when the interpreter finalizes is what made
the agent abort after SIGTERM (exit -6) while a thread was inside OpenVINO.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

SCRIPT = """
import logging, sys, threading, time
from edge_agent.service.shutdown import exit_status
logging.basicConfig(level=logging.INFO)
threading.Thread(target=time.sleep, args=({sleep},), daemon=True, name="pipeline-gate").start()
# An idle executor worker (non-daemon, joined by the interpreter itself) is never waited for.
from concurrent.futures import ThreadPoolExecutor
ThreadPoolExecutor(1).submit(int).result()
print("status", exit_status({code}, timeout={timeout}), flush=True)
sys.exit(7)
"""


@pytest.mark.parametrize(
    ("sleep", "timeout", "code", "returned"),
    [
        (0.3, 5.0, 0, True),  # the thread ends in time: the caller gets its status back
        (0.3, 5.0, 3, True),
        (60.0, 0.5, 0, False),  # still blocked: the process leaves with the status itself
        (60.0, 0.5, 1, False),
    ],
)
def test_exit_waits_for_threads_or_leaves_with_the_status(
    sleep: float, timeout: float, code: int, returned: bool
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(sleep=sleep, timeout=timeout, code=code)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    took = time.monotonic() - started
    if returned:
        assert f"status {code}" in done.stdout, done
        assert done.returncode == 7, done
        assert "still running" not in done.stderr
    else:
        assert done.returncode == code, done
        assert "status" not in done.stdout  # exit_status never returned
        assert "1 thread(s) still running" in done.stderr, done.stderr
        assert "pipeline-gate" in done.stderr
        assert took < 20, took
