"""Crash loops are given up; health words every worker state the same way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from edge_agent import supervision, workers
from edge_agent.supervision import GuardedWorker, WorkerWatch, is_broken
from edge_agent.workers import Worker, WorkerState


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "FIRST_DELAY_S", 0.01)


def test_a_crash_loop_is_given_up_after_give_up_after_crashes() -> None:
    seen: list[str] = []
    worker = GuardedWorker("t-loop", lambda: 1 / 0, on_crash=lambda w, exc: seen.append(str(exc)))
    worker.start()
    worker.join(10)
    assert worker.given_up
    assert worker.crashes == supervision.GIVE_UP_AFTER
    assert len(seen) == supervision.GIVE_UP_AFTER  # the owner hears of every crash
    assert is_broken(worker)


def test_crashes_spread_wider_than_the_window_are_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervision, "CRASH_WINDOW_S", 0.0)
    runs: list[int] = []

    def body() -> None:
        runs.append(1)
        if len(runs) <= supervision.GIVE_UP_AFTER + 1:
            raise RuntimeError("flaky")

    worker = GuardedWorker("t-spread", body)
    worker.start()
    worker.join(10)
    assert not worker.given_up
    assert worker.state is WorkerState.FINISHED
    assert not is_broken(worker)


RELEASE = threading.Event()
"""Holds the table's workers alive (a thread that is gone counts as dead)."""


@pytest.fixture(autouse=True, scope="module")
def release_workers() -> Iterator[None]:
    yield
    RELEASE.set()


def crashed(
    name: str, state: WorkerState, crashes: int = 1, *, alive: bool = True, **extra: object
) -> Worker:
    """A worker in `state` after `crashes`, its thread alive (waiting) unless `alive` is False."""
    entered = threading.Event()

    def body() -> None:
        entered.set()
        RELEASE.wait()

    worker = Worker(name, body)
    if alive:
        worker.start()
        assert entered.wait(10)
    worker.crashes, worker.state, worker.last_error = crashes, state, "ValueError: boom"
    for key, value in extra.items():
        setattr(worker, key, value)
    return worker


@pytest.mark.parametrize(
    ("worker", "essential", "failed", "degraded"),
    [
        (crashed("a", WorkerState.RUNNING, crashes=0), True, "", ""),
        (crashed("a", WorkerState.BACKOFF), False, "", "worker a crashed (1 so far), restarting"),
        (crashed("a", WorkerState.RUNNING), False, "", "worker a was restarted after a crash"),
        (crashed("a", WorkerState.DEAD), True, "worker a is dead after 1 crash(es)", ""),
        (crashed("a", WorkerState.DEAD), False, "", "worker a is dead after 1 crash(es)"),
        (crashed("a", WorkerState.FINISHED, given_up=True), True, "worker a is dead", ""),
        # A thread gone without finishing (an exception in the backoff wait): dead.
        (crashed("a", WorkerState.BACKOFF, alive=False), True, "worker a is dead", ""),
    ],
)
def test_health_reasons(worker: Worker, essential: bool, failed: str, degraded: str) -> None:
    now = time.monotonic()
    got_failed, got_degraded = WorkerWatch().reasons([worker], now, essential=essential)
    assert [r for r in got_failed if failed and r.startswith(failed)] == got_failed
    assert [r for r in got_degraded if degraded and r.startswith(degraded)] == got_degraded
    assert bool(got_failed) == bool(failed)
    assert bool(got_degraded) == bool(degraded)
    for reason in got_failed + got_degraded:
        assert reason.endswith("ValueError: boom")


def test_a_restart_degrades_for_recent_crash_s_then_clears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = crashed("a", WorkerState.RUNNING)
    watch = WorkerWatch()
    assert watch.reasons([worker], 100.0, essential=True)[1]
    later = 100.0 + supervision.RECENT_CRASH_S + 1
    assert watch.reasons([worker], later, essential=True) == ([], [])
