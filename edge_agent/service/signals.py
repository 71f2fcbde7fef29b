"""Signals recorded by a wakeup fd; the main loop reads and acts on them."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
from types import FrameType


class SignalReceiver:
    """Handlers only record the signal; the main loop acts on it.

    Python runs handlers in the main thread between bytecodes, so a handler that takes
    a lock (Event.set) can deadlock against the main thread holding it (seen: SIGTERM
    during Event.wait). Here the C-level wakeup fd writes each signal's number to a
    socket and the Python handler does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def install(self) -> None:
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in self.SIGNALS:
            signal.signal(signum, self._record)

    @staticmethod
    def _record(_signum: int, _frame: FrameType | None) -> None:
        """The wakeup fd already has the signal number; nothing else may happen here."""

    def wake(self) -> None:
        """End a `wait` now from another thread (work for the main loop); no signal."""
        with contextlib.suppress(OSError):  # full (BlockingIOError): it wakes anyway
            self._writer.send(b"\0")

    def wait(self, timeout: float) -> list[int]:
        """Signals received, oldest first, waiting at most `timeout` for the first."""
        ready, _, _ = select.select([self._reader], [], [], timeout)
        if not ready:
            return []
        try:
            return [signum for signum in self._reader.recv(64) if signum in self.SIGNALS]
        except BlockingIOError:
            return []
