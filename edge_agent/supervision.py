"""Which crashed workers to restart, which to give up, and what health says about them.

`workers.Worker` restarts a crashed body with backoff. A body that crashes again and
again will not get better by itself: `GuardedWorker` gives up after GIVE_UP_AFTER
crashes within CRASH_WINDOW_S (supervisor's FATAL), so its owner can fail the camera
or end the agent with a non-zero exit and let systemd start it afresh.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge_agent.workers import Worker, WorkerState

log = logging.getLogger(__name__)

GIVE_UP_AFTER = 4
CRASH_WINDOW_S = 120.0
RECENT_CRASH_S = 300.0
"""A worker that crashed and was restarted keeps health degraded this long."""


class GuardedWorker(Worker):
    """A restarting Worker that gives up when it crash-loops; `given_up` says so."""

    def __init__(
        self,
        name: str,
        body: Callable[[], None],
        *,
        on_crash: Callable[[Worker, BaseException], None] | None = None,
    ) -> None:
        super().__init__(name, body, restart=True, on_crash=self._count)
        self.given_up = False
        self._then = on_crash
        self._crash_times: collections.deque[float] = collections.deque(maxlen=GIVE_UP_AFTER)

    def _count(self, worker: Worker, exc: BaseException) -> None:
        now = time.monotonic()
        self._crash_times.append(now)
        if len(self._crash_times) == GIVE_UP_AFTER and now - self._crash_times[0] < CRASH_WINDOW_S:
            self.given_up = True
            self.stop()  # the pending restart is cancelled
            log.error(
                "worker %s crashed %d times within %.0f s; given up (last error: %s)",
                self.name, GIVE_UP_AFTER, CRASH_WINDOW_S, self.last_error,
            )
        if self._then is not None:
            self._then(worker, exc)


def is_broken(worker: Worker) -> bool:
    """Dead, given up, or its thread gone without finishing its work."""
    if worker.dead or getattr(worker, "given_up", False):
        return True
    return worker.crashes > 0 and not worker.is_alive() and worker.state is not WorkerState.FINISHED


@dataclass
class _Seen:
    crashes: int
    at: float


class WorkerWatch:
    """Health's view of every worker: broken ones fail, restarting or recent crashes degrade."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def reasons(
        self, workers: Iterable[Worker], now: float, *, essential: bool
    ) -> tuple[list[str], list[str]]:
        """(failed, degraded) reasons naming each worker and its last error.

        A broken `essential` worker (health, MQTT, metrics) fails the agent; a broken
        camera worker degrades it, as a FAILED camera does.
        """
        failed: list[str] = []
        degraded: list[str] = []
        for worker in workers:
            seen = self._seen.setdefault(worker.name, _Seen(0, now))
            if worker.crashes != seen.crashes:
                seen.crashes, seen.at = worker.crashes, now
            if not worker.crashes:
                continue
            error = worker.last_error or "no detail"
            if is_broken(worker):
                (failed if essential else degraded).append(
                    f"worker {worker.name} is dead after {worker.crashes} crash(es): {error}"
                )
            elif worker.state is WorkerState.BACKOFF:
                degraded.append(
                    f"worker {worker.name} crashed ({worker.crashes} so far), restarting: {error}"
                )
            elif now - seen.at < RECENT_CRASH_S:
                degraded.append(
                    f"worker {worker.name} was restarted after a crash {now - seen.at:.0f} s ago "
                    f"({worker.crashes} so far): {error}"
                )
        return failed, degraded
