"""SignalReceiver: real signals to a process arrive in order, through the wakeup fd, and
the handler itself does nothing the main loop could trip over.

Each check runs in a fresh interpreter: the test process holds the native threads of
every engine earlier tests loaded (OpenVINO, ONNX Runtime), and a real signal to it
once crashed it (exit 139) in a full run; that is not what these tests are about.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import REPO

PRELUDE = textwrap.dedent("""
    import os, signal, time
    from edge_agent.service.signals import SignalReceiver

    receiver = SignalReceiver()
    receiver.install()

    def received(count):
        found, deadline = [], time.monotonic() + 5.0
        while len(found) < count and time.monotonic() < deadline:
            found += receiver.wait(0.5)
        return " ".join(signal.Signals(s).name for s in found)
""")


def run(body: str) -> str:
    """Run PRELUDE + body in a fresh interpreter; its stdout, stripped."""
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.strip()


def test_signals_arrive_in_order_without_python_side_effects() -> None:
    assert run("""
        assert receiver.wait(0.05) == []
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        print(received(2))
    """) == "SIGHUP SIGTERM"


def test_sigint_is_recorded_not_raised() -> None:
    """Ctrl-C in a foreground run stops the agent in order, not with a KeyboardInterrupt
    thrown into whatever the main thread was doing."""
    assert run("""
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, between bytecodes: it must not raise
        print(received(1))
    """) == "SIGINT"


def test_other_signals_are_not_reported() -> None:
    """A signal with a Python handler of its own also reaches the wakeup fd: the receiver
    reports only the ones the agent acts on."""
    assert run("""
        seen = []
        signal.signal(signal.SIGUSR1, lambda signum, _frame: seen.append(signum))
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGHUP)
        print(received(1), seen == [signal.SIGUSR1])
    """) == "SIGHUP True"


def test_wait_returns_nothing_after_its_timeout() -> None:
    assert run("""
        started = time.monotonic()
        nothing = receiver.wait(0.2)
        print(nothing == [], 0.15 <= time.monotonic() - started < 5.0)
    """) == "True True"
