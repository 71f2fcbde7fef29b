"""SignalReceiver: real signals to this process arrive in order, through the wakeup fd."""

from __future__ import annotations

import os
import signal

from edge_agent.service.agent import SignalReceiver


def test_signals_arrive_in_order_without_python_side_effects() -> None:
    saved = {signum: signal.getsignal(signum) for signum in SignalReceiver.SIGNALS}
    receiver = SignalReceiver()
    receiver.install()
    try:
        assert receiver.wait(0.05) == []
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        received: list[int] = []
        while len(received) < 2 and (batch := receiver.wait(1.0)):
            received += batch
        assert received == [signal.SIGHUP, signal.SIGTERM]
    finally:
        signal.set_wakeup_fd(-1)
        for signum, handler in saved.items():
            signal.signal(signum, handler)
