"""SignalReceiver: real signals to a process arrive in order, through the wakeup fd.

The receiver runs in a fresh interpreter: the test process itself holds the native
threads of every engine earlier tests loaded (OpenVINO, ONNX Runtime), and a signal the
kernel hands to one of those threads is not what this test is about.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

PROGRAM = textwrap.dedent("""
    import os, signal
    from edge_agent.service.agent import SignalReceiver

    receiver = SignalReceiver()
    receiver.install()
    assert receiver.wait(0.05) == []
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
    received = []
    while len(received) < 2 and (batch := receiver.wait(1.0)):
        received += batch
    print(" ".join(signal.Signals(s).name for s in received))
""")


def test_signals_arrive_in_order_without_python_side_effects() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SIGHUP", "SIGTERM"]
    assert done.stderr == ""
