"""Leave the process only after the worker threads have left native code.

Worker threads are daemons, so a stuck one never blocks a stop. But a daemon thread that
is still inside a pybind11 call (an OpenVINO request, a blocking start_async) when the
interpreter finalizes is torn down by pthread_exit as it takes the GIL back, and the
unwinding through C++ aborts the process ("terminate called without an active
exception", exit -6): systemd would see a crash on an ordinary stop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback

log = logging.getLogger(__name__)

THREADS_EXIT_S = 10.0
"""How long the worker threads get to finish after the agent stopped (within systemd's
TimeoutStopSec=30, after the pipelines' own drain)."""


def exit_status(code: int, timeout: float = THREADS_EXIT_S) -> int:
    """Return `code` once every other Python thread has ended, waiting up to `timeout` s.

    A thread still running then is left behind with `os._exit(code)` after the logs are
    flushed, so the interpreter never finalizes under it; the status stays `code`.
    """
    deadline = time.monotonic() + timeout
    for thread in _others():
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in _others()]
    if not stuck:
        return code
    frames = sys._current_frames()
    for thread in _others():  # where each one is: what to fix next time
        frame = frames.get(thread.ident or -1)
        where = "".join(traceback.format_stack(frame, limit=4)) if frame else "?"
        log.debug("thread %s still running at:\n%s", thread.name, where)
    log.error(
        "%d thread(s) still running %.0f s after stopping (%s): leaving without interpreter "
        "shutdown, exit status %d", len(stuck), timeout, ", ".join(stuck), code,
    )
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _others() -> list[threading.Thread]:
    """Live daemon threads other than this one: the ones finalization would tear down.

    Non-daemon threads (an idle ThreadPoolExecutor worker, such as OpenVINO's telemetry
    keeps) are joined by the interpreter before it finalizes, so they are safe; threads
    started outside `threading` (a runtime's callback thread seen from Python) cannot be
    joined and are not ours to wait for."""
    current = threading.current_thread()
    return [
        thread for thread in threading.enumerate()
        if thread is not current and thread.is_alive() and thread.daemon
        and not isinstance(thread, threading._DummyThread)
    ]
