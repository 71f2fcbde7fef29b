"""The /metrics server under hostile clients: real sockets against the real server.

The monitor is a stand-in with no snapshot yet (what a starting agent serves); the
server, its sockets, timeouts and threads are the real ones. test_metrics.py does the
same against a whole agent process.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from edge_agent.health import local_http
from edge_agent.health.metrics import MetricsServer


class NoSnapshotYet:
    """A HealthMonitor before its first snapshot: /healthz says starting."""

    def latest(self) -> None:
        return None

    def report_problem(self, _name: str, _problem: str | None) -> None:
        raise AssertionError("the server should listen")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsServer]:
    monkeypatch.setattr(local_http, "IDLE_TIMEOUT_S", 1.0)  # the defaults are 5 s and 10 s
    monkeypatch.setattr(local_http, "REQUEST_TIMEOUT_S", 2.0)
    metrics = MetricsServer(NoSnapshotYet(), "127.0.0.1:0")  # type: ignore[arg-type]
    metrics.start()
    yield metrics
    metrics.stop()


def get(port: int, path: str = "/metrics") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def ended_by_server(port: int, sent: bytes) -> str:
    """Send, read until the server ends the connection: closed, reset or timed out."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(15)
        try:
            sock.sendall(sent)
            while sock.recv(65536):
                pass
        except TimeoutError:
            return "timed out"
        except OSError:
            return "reset"  # a large unread request: the kernel answers the close with RST
        return "closed"


def warnings_from_server(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "edge_agent.health.local_http" and r.levelno >= logging.WARNING]


def test_idle_connections_hold_no_threads_and_scrapes_still_answer(
    server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's 600 sockets made 616 threads; here they make none, and are closed."""
    caplog.set_level(logging.WARNING)
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(600)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= before + local_http.MAX_HANDLERS
        assert threading.active_count() <= before + 2  # idle ones are parked, thread-less
        assert get(server.port, "/healthz") == (
            503, b'{"status": "starting", "reasons": [], "timestamp": null}')
        assert get(server.port) == (200, b"")  # no snapshot yet: no samples
        # 600 > MAX_PENDING: the oldest were closed at once; the rest after the idle timeout.
        deadline = time.monotonic() + 20
        closed = 0
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            closed += sock.recv(1) == b""
        assert closed == 600
    finally:
        for sock in idle:
            sock.close()
    records = warnings_from_server(caplog)
    assert 1 <= len(records) <= 2, [r.getMessage() for r in records]  # rate-limited
    assert all(r.exc_info is None for r in records)


@pytest.mark.parametrize("sent", [
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n",  # headers never finished
    b"GET /metr",  # request line cut
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello to a plain port
    b"GARBAGE\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",  # request line too long
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",  # too many headers
])
def test_a_broken_request_is_closed_with_one_line_and_no_traceback(
    server: MetricsServer, caplog: pytest.LogCaptureFixture, sent: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    assert ended_by_server(server.port, sent) in ("closed", "reset")
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    records = warnings_from_server(caplog)
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert records[0].exc_info is None
    assert "closed a connection from 127.0.0.1" in records[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info], "no traceback anywhere"
    assert get(server.port)[0] == 200  # and it still serves


def test_slow_client_is_cut_off_at_the_request_deadline(server: MetricsServer) -> None:
    """One header byte per 0.5 s never trips the idle timeout; the request deadline does."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        ended = "open"
        while ended == "open" and time.monotonic() - started < 15:
            try:
                sock.sendall(b"X")
            except OSError:
                ended = "cut off"
            time.sleep(0.5)
    assert ended == "cut off"
    assert time.monotonic() - started < 10


def test_concurrency_is_capped(server: MetricsServer) -> None:
    """Clients that send half a request each hold a handler; never more than the cap."""
    half = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
    try:
        for sock in half:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        time.sleep(0.5)
        assert server._server is not None
        assert server._server.handler_threads() == local_http.MAX_HANDLERS
        assert get(server.port)[0] == 200  # waits for a free handler, then answers
    finally:
        for sock in half:
            sock.close()


def test_the_accept_loop_is_a_worker_that_comes_back(server: MetricsServer) -> None:
    (worker,) = server.workers()
    assert worker.name == "metrics"
    assert worker.is_alive()
    local_http_thread = next(t for t in threading.enumerate() if t.name == "metrics")
    import ctypes

    from edge_agent.workers import InjectedFaultError
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(local_http_thread.ident), ctypes.py_object(InjectedFaultError))
    deadline = time.monotonic() + 15
    while worker.crashes == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker.crashes == 1
    while time.monotonic() < deadline:
        try:
            if get(server.port)[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    assert get(server.port)[0] == 200
