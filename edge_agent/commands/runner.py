"""One thread per command name, started on first use and kept: at most one request of a
kind runs at a time (another meanwhile is `busy`), kinds run side by side, and a request
costs no thread start (tens of milliseconds on a loaded two-core box)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from edge_agent.workers import Worker

Job = Callable[[Callable[[], None]], None]
"""A job gets `free()`: it may end `busy` before its last step (sending the result), so a
request sent the moment the result arrives is not refused."""


class Runner:
    """Runs one job at a time in worker `command-<name>`."""

    def __init__(self, name: str, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._wake = threading.Condition()
        self._job: tuple[int, Job] | None = None
        self._busy = 0  # the running job's token; 0: free
        self._tokens = 0
        self.worker = Worker(f"command-{name}", self._loop)
        self._started = False

    @property
    def busy(self) -> bool:
        return self._busy != 0

    def try_run(self, job: Job) -> bool:
        """Hand `job` to the thread; False (nothing done) while another job is busy."""
        with self._wake:
            if self._busy:
                return False
            self._tokens += 1
            self._busy = self._tokens
            self._job = (self._tokens, job)
            self._wake.notify()
            start, self._started = not self._started, True
        if start:
            self.worker.start()
        return True

    def join(self, timeout: float) -> None:
        with self._wake:
            self._wake.notify_all()
        self.worker.stop()
        if self._started:
            self.worker.join(timeout)

    def _free(self, token: int) -> None:
        with self._wake:
            if self._busy == token:
                self._busy = 0

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._job is None:
                    if self._stopping.is_set():
                        return
                    self._wake.wait(0.5)
                token, job = self._job
                self._job = None
            try:
                job(lambda token=token: self._free(token))
            finally:
                self._free(token)
