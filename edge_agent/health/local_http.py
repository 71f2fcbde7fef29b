"""A small HTTP server for the box's local endpoints that no client can knock over.

`http.server.ThreadingHTTPServer` gives every connection its own thread with no timeout
(600 idle sockets: 600 threads, forever) and prints a traceback per broken request. Here
one loop (a `Worker`, restarted if it ever crashes) accepts connections and keeps them,
thread-less, until their request arrives; only then does a handler thread take them, at
most `max_handlers` at once. Every connection has a deadline: an idle one is closed
after `idle_timeout_s`, a request not finished within `request_timeout_s` is cut off.
Connections beyond `max_pending` close the oldest waiting one. Whatever goes wrong with
a client is one log line, rate-limited, never a traceback.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from edge_agent.workers import Worker

log = logging.getLogger(__name__)

MAX_HANDLERS = 16
MAX_PENDING = 256
IDLE_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0
PROBLEM_LOG_INTERVAL_S = 60.0


class ClientProblems:
    """Client faults as one log line: the first at once, then one per interval with a count."""

    def __init__(self, name: str, interval_s: float = PROBLEM_LOG_INTERVAL_S) -> None:
        self.name = name
        self.interval_s = interval_s
        self.total = 0
        self._held = 0
        self._logged_at: float | None = None
        self._lock = threading.Lock()

    def report(self, problem: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.total += 1
            if self._logged_at is not None and now - self._logged_at < self.interval_s:
                self._held += 1
                return
            held, self._held, self._logged_at = self._held, 0, now
        more = f" (and {held} more in the last {self.interval_s:g} s)" if held else ""
        log.warning("%s: closed a connection from %s: %s%s", self.name, client, problem, more)


class LocalHTTPServer:
    """Serve `handler_class` (a BaseHTTPRequestHandler) on host:port, bounded everywhere."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        handler_class: type[BaseHTTPRequestHandler],
        *,
        max_handlers: int | None = None,
        max_pending: int | None = None,
        idle_timeout_s: float | None = None,
        request_timeout_s: float | None = None,
    ) -> None:
        """Bind now (an OSError says the port is taken); `start` serves."""
        self.name = name
        self.handler_class = handler_class
        self.max_pending = max_pending or MAX_PENDING
        self.idle_timeout_s = idle_timeout_s or IDLE_TIMEOUT_S
        self.request_timeout_s = request_timeout_s or REQUEST_TIMEOUT_S
        self.problems = ClientProblems(name)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._slots = threading.BoundedSemaphore(max_handlers or MAX_HANDLERS)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[socket.socket, float] = {}  # handled connection -> its deadline
        self.worker = Worker(name, self._serve)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self._stop.set()
        self.worker.stop()
        self.worker.join(5)
        self._listener.close()
        with self._lock:
            for connection in list(self._active):
                _close(connection)

    def handler_threads(self) -> int:
        """Connections being handled now (each holds one thread)."""
        with self._lock:
            return len(self._active)

    def _serve(self) -> None:
        """Accept, park idle connections without a thread, hand ready ones to handlers."""
        waiting: collections.OrderedDict[socket.socket, tuple[Any, float]] = (
            collections.OrderedDict()
        )  # connection -> (address, deadline)
        ready: collections.deque[tuple[socket.socket, Any]] = collections.deque()
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    events = selector.select(0.05 if ready else 0.5)
                    now = time.monotonic()
                    for key, _mask in events:
                        if key.fileobj is self._listener:
                            self._accept(selector, waiting, ready, now)
                        else:
                            connection = key.fileobj
                            selector.unregister(connection)
                            address, _deadline = waiting.pop(connection)
                            ready.append((connection, address))
                    while ready and self._slots.acquire(blocking=False):
                        self._hand_over(*ready.popleft())
                    self._expire(selector, waiting, now)
            finally:
                for connection in [*waiting, *(item[0] for item in ready)]:
                    _close(connection)

    def _accept(self, selector: selectors.BaseSelector,
                waiting: collections.OrderedDict[socket.socket, tuple[Any, float]],
                ready: collections.deque[tuple[socket.socket, Any]], now: float) -> None:
        for _ in range(64):  # drain what the kernel queued, a bounded batch per turn
            try:
                connection, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, mostly: wait, do not spin
                self.problems.report(f"cannot accept: {exc.strerror or exc}", "?")
                time.sleep(0.1)
                return
            connection.setblocking(False)
            if len(waiting) + len(ready) >= self.max_pending:  # close the oldest
                if waiting:
                    oldest, (old_address, _) = waiting.popitem(last=False)
                    selector.unregister(oldest)
                else:
                    oldest, old_address = ready.popleft()
                _close(oldest)
                self.problems.report(
                    f"more than {self.max_pending} connections waiting", _host(old_address)
                )
            waiting[connection] = (address, now + self.idle_timeout_s)
            selector.register(connection, selectors.EVENT_READ)

    def _expire(self, selector: selectors.BaseSelector,
                waiting: collections.OrderedDict[socket.socket, tuple[Any, float]],
                now: float) -> None:
        while waiting:
            connection, (address, deadline) = next(iter(waiting.items()))
            if deadline > now:
                break  # oldest first: the rest are younger
            del waiting[connection]
            selector.unregister(connection)
            _close(connection)
            self.problems.report(f"sent nothing for {self.idle_timeout_s:g} s", _host(address))
        with self._lock:
            overdue = [conn for conn, deadline in self._active.items() if deadline <= now]
            for connection in overdue:
                self._active[connection] = math.inf  # cut off once, reported once
        for connection in overdue:  # a slow client: wakes its handler, which then ends
            self.problems.report(
                f"request not finished within {self.request_timeout_s:g} s", _peer(connection)
            )
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _hand_over(self, connection: socket.socket, address: Any) -> None:
        with self._lock:
            self._active[connection] = time.monotonic() + self.request_timeout_s
        try:
            threading.Thread(target=self._handle, args=(connection, address),
                             name=f"{self.name}-client", daemon=True).start()
        except BaseException:
            self._finished(connection)
            raise

    def _handle(self, connection: socket.socket, address: Any) -> None:
        try:
            connection.setblocking(True)
            connection.settimeout(self.idle_timeout_s)
            handler = self.handler_class(connection, address, self)  # type: ignore[arg-type]
            problem = getattr(handler, "problem", None)
            if problem:
                self.problems.report(problem, _host(address))
        except Exception as exc:  # a client fault: one line, never a traceback
            self.problems.report(_describe(exc), _host(address))
        finally:
            self._finished(connection)

    def _finished(self, connection: socket.socket) -> None:
        with self._lock:
            self._active.pop(connection, None)
        _close(connection)
        self._slots.release()


class QuietHandler(BaseHTTPRequestHandler):
    """Keeps what went wrong with the request in `problem` instead of printing it."""

    problem: str | None = None

    def log_error(self, format: str, *args: Any) -> None:
        self.problem = format % args

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s", self.address_string(), format % args)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "request timed out"
    if isinstance(exc, OSError):
        return f"connection failed: {exc.strerror or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def _host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _peer(connection: socket.socket) -> str:
    try:
        return _host(connection.getpeername())
    except OSError:
        return "?"


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.close()
