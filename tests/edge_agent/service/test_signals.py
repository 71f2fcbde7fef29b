"""SignalReceiver: real signals to this process arrive in order, through the wakeup fd,
and the handler itself does nothing the main loop could trip over."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from edge_agent.service.signals import SignalReceiver


@pytest.fixture
def receiver() -> Iterator[SignalReceiver]:
    """An installed receiver; this process's own handlers are put back afterwards."""
    watched = (*SignalReceiver.SIGNALS, signal.SIGUSR1)
    saved = {signum: signal.getsignal(signum) for signum in watched}
    installed = SignalReceiver()
    installed.install()
    try:
        yield installed
    finally:
        signal.set_wakeup_fd(-1)
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def received(receiver: SignalReceiver, count: int) -> list[int]:
    found: list[int] = []
    deadline = time.monotonic() + 5.0
    while len(found) < count and time.monotonic() < deadline:
        found += receiver.wait(0.5)
    return found


def test_signals_arrive_in_order_without_python_side_effects(receiver: SignalReceiver) -> None:
    assert receiver.wait(0.05) == []
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
    assert received(receiver, 2) == [signal.SIGHUP, signal.SIGTERM]


def test_sigint_is_recorded_not_raised(receiver: SignalReceiver) -> None:
    """Ctrl-C in a foreground run stops the agent in order, not with a KeyboardInterrupt
    thrown into whatever the main thread was doing."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs here, between bytecodes: it must not raise
    assert received(receiver, 1) == [signal.SIGINT]


def test_other_signals_are_not_reported(receiver: SignalReceiver) -> None:
    """A signal with a Python handler of its own also reaches the wakeup fd: the receiver
    reports only the ones the agent acts on."""
    seen: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, _frame: seen.append(signum))
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGHUP)
    assert received(receiver, 1) == [signal.SIGHUP]
    assert seen == [signal.SIGUSR1]


def test_wait_returns_nothing_after_its_timeout(receiver: SignalReceiver) -> None:
    started = time.monotonic()
    assert receiver.wait(0.2) == []
    assert 0.15 <= time.monotonic() - started < 5.0
