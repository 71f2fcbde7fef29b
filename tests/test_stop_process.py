"""Stopping child processes: a SIGTERM that is forgotten must not leave one running.

mosquitto 2.0 sets `run = 1` after installing its SIGTERM handler, so a SIGTERM sent
just after its listener opens is lost; CI once saw the test broker outlive stop()."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from edge_agent.tools.bench_loop import private_broker
from tests.helpers import terminate

FORGETS_FIRST_TERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: signal.signal(signal.SIGTERM, signal.SIG_DFL))
print("ready", flush=True)
time.sleep(60)
"""


IGNORES_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def started(code: str) -> subprocess.Popen[bytes]:
    """A Python child running `code`, once it has set its signal handlers."""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def test_terminate_resends_a_forgotten_sigterm() -> None:
    process = started(FORGETS_FIRST_TERM)
    began = time.monotonic()
    terminate(process, timeout=10)
    assert process.returncode == -15  # the second SIGTERM, not SIGKILL after the timeout
    assert time.monotonic() - began < 5


def test_terminate_kills_what_ignores_sigterm() -> None:
    process = started(IGNORES_TERM)
    terminate(process, timeout=1)
    assert process.returncode == -9


def test_bench_private_broker_stops_even_right_after_it_listens() -> None:
    """Enter and leave at once, many times: the window where mosquitto forgets SIGTERM."""
    for _ in range(15):
        with private_broker() as mqtt:
            port = mqtt.port
        with socket.socket() as probe:
            probe.settimeout(0.5)
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "mosquitto still listens"
