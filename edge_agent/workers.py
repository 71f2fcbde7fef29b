"""Worker threads that never die quietly.

A bare `threading.Thread` whose body raises prints a traceback to stderr and is gone: the
agent keeps running with a camera, the MQTT sender or the health loop missing, and
nothing reports it. `Worker` runs a body, logs and counts any exception, tells its owner
through `on_crash`, and restarts the body with a growing, randomised delay (or stays
dead when `restart=False`, so the owner can end the process with a non-zero exit).

`EDGE_AGENT_FAULT` injects a crash into a running thread for fault tests:
`name@seconds[,name@seconds...]` raises `InjectedFaultError` inside the first live thread
whose name starts with `name`, that many seconds after `inject_faults_from_environment`.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import random
import threading
import time
from collections.abc import Callable

from edge_agent.redact import redact

log = logging.getLogger(__name__)

FAULT_VARIABLE = "EDGE_AGENT_FAULT"
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 10.0
HEALTHY_AFTER_S = 60.0
"""A body that ran this long before crashing starts its backoff from the first delay."""


class InjectedFaultError(RuntimeError):
    """Raised inside a thread by EDGE_AGENT_FAULT (fault-injection tests only)."""


class WorkerState(enum.Enum):
    RUNNING = "running"
    BACKOFF = "backoff"
    FINISHED = "finished"
    """The body returned: the work is done (a file played to its end, a stop asked)."""
    DEAD = "dead"
    """The body raised and `restart=False`: the owner must act."""


class Worker:
    """A daemon thread running `body`; a crash is logged, counted and reported, never silent.

    `on_crash(worker, exc)` is called in the worker's thread after each crash (it must not
    raise). With `restart=True` the body runs again after 1, 2, 4 ... 10 s (jittered);
    `stop()` ends the waiting, not the body: the body watches its own stop signal.
    """

    def __init__(
        self,
        name: str,
        body: Callable[[], None],
        *,
        restart: bool = True,
        on_crash: Callable[[Worker, BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self.restart = restart
        self.crashes = 0
        self.last_error: str | None = None
        self.state = WorkerState.RUNNING
        self._body = body
        self._on_crash = on_crash
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No more restarts; a worker waiting to restart finishes now."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def dead(self) -> bool:
        """True once the body crashed with no restart to come."""
        return self.state is WorkerState.DEAD

    def _run(self) -> None:
        delay = FIRST_DELAY_S
        while True:
            started = time.monotonic()
            self.state = WorkerState.RUNNING
            try:
                self._body()
            except BaseException as exc:  # a worker reports every death
                if not self._crashed(exc):
                    return
            else:
                self.state = WorkerState.FINISHED
                return
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                delay = FIRST_DELAY_S
            self.state = WorkerState.BACKOFF
            if self._stopping.wait(delay * random.uniform(0.8, 1.2)):
                self.state = WorkerState.FINISHED
                return
            delay = min(delay * 2, MAX_DELAY_S)

    def _crashed(self, exc: BaseException) -> bool:
        """Record a crash; True when the body should run again."""
        self.crashes += 1
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.last_error = redact(text)  # may be published
        again = self.restart and not self._stopping.is_set()
        if not again:
            self.state = WorkerState.DEAD
        if self._on_crash is not None:
            try:
                self._on_crash(self, exc)  # may give the worker up (stop)
            except Exception:
                log.exception("worker %s: crash handler failed", self.name)
        log.error(
            "worker %s crashed (%s), %s", self.name, self.last_error,
            "restarting" if again and not self._stopping.is_set() else "not restarted",
            exc_info=exc,
        )
        return again


def inject_faults_from_environment() -> None:
    """Arm EDGE_AGENT_FAULT (see the module docstring); does nothing when it is unset."""
    spec = os.environ.get(FAULT_VARIABLE, "").strip()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, seconds = item.partition("@")
        timer = threading.Timer(float(seconds or 0), _raise_in_thread, args=(name,))
        timer.daemon = True
        timer.start()
        log.warning("fault injection armed: %s in %s s", name, seconds or 0)


def _raise_in_thread(prefix: str) -> None:
    for thread in threading.enumerate():
        if thread.name.startswith(prefix) and thread.ident is not None and thread.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(InjectedFaultError)
            )
            log.warning("fault injection: raised InjectedFaultError in thread %s", thread.name)
            return
    log.warning("fault injection: no live thread named %s*", prefix)
