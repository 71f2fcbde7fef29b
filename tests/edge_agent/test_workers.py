"""Worker threads: a crash is counted, reported and restarted, or marks the worker dead."""

from __future__ import annotations

import threading
import time

import pytest

from edge_agent import workers
from edge_agent.workers import InjectedFaultError, Worker, WorkerState


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "FIRST_DELAY_S", 0.01)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_crashing_body_is_restarted_and_each_crash_reported() -> None:
    runs: list[int] = []
    crashes: list[str] = []

    def body() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ValueError(f"bad frame {len(runs)}")

    worker = Worker("t-restart", body, on_crash=lambda w, exc: crashes.append(str(exc)))
    worker.start()
    worker.join(5)
    assert len(runs) == 3
    assert crashes == ["bad frame 1", "bad frame 2"]
    assert worker.crashes == 2
    assert worker.state is WorkerState.FINISHED
    assert worker.last_error == "ValueError: bad frame 2"


def test_crash_without_restart_marks_the_worker_dead() -> None:
    worker = Worker("t-dead", lambda: 1 / 0, restart=False)
    worker.start()
    worker.join(5)
    assert worker.dead
    assert worker.last_error is not None
    assert worker.last_error.startswith("ZeroDivisionError")


def test_a_failing_crash_handler_does_not_hide_the_crash() -> None:
    def handler(_worker: Worker, _exc: BaseException) -> None:
        raise RuntimeError("handler broke")

    worker = Worker("t-handler", lambda: 1 / 0, restart=False, on_crash=handler)
    worker.start()
    worker.join(5)
    assert worker.dead
    assert worker.crashes == 1


def test_stop_ends_the_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "FIRST_DELAY_S", 30.0)
    worker = Worker("t-stop", lambda: 1 / 0)
    worker.start()
    wait_until(lambda: worker.state is WorkerState.BACKOFF)
    worker.stop()
    worker.join(2)
    assert not worker.is_alive()
    assert worker.state is WorkerState.FINISHED


def test_injected_fault_reaches_a_running_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    seen: list[BaseException] = []

    def loop() -> None:
        while not stop.is_set():
            time.sleep(0.01)

    worker = Worker("t-inject-loop", loop, restart=False, on_crash=lambda w, exc: seen.append(exc))
    worker.start()
    monkeypatch.setenv(workers.FAULT_VARIABLE, "t-inject@0.05")
    workers.inject_faults_from_environment()
    worker.join(5)
    stop.set()
    assert worker.dead
    assert len(seen) == 1
    assert isinstance(seen[0], InjectedFaultError)
