"""The notify protocol against a real AF_UNIX datagram socket, as systemd would bind it."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.service.notify import Notifier, ProgressWatchdog, watchdog_interval


class Listener:
    """What systemd's side of $NOTIFY_SOCKET receives."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self) -> bytes:
        return self.sock.recv(4096)

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        return False


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield Listener(sock, str(path))


def test_ready_status_stopping_bytes(listener: Listener) -> None:
    notifier = Notifier.from_environment()
    assert notifier.enabled
    assert notifier.ready()
    assert listener.receive() == b"READY=1"
    assert notifier.ready(status="running 2 cameras")
    assert listener.receive() == b"READY=1\nSTATUS=running 2 cameras"
    assert notifier.status("camera dock-door: reconnecting")
    assert listener.receive() == b"STATUS=camera dock-door: reconnecting"
    assert notifier.stopping()
    assert listener.receive() == b"STOPPING=1"
    assert notifier.watchdog()
    assert listener.receive() == b"WATCHDOG=1"
    assert notifier.extend_timeout(90)
    assert listener.receive() == b"EXTEND_TIMEOUT_USEC=90000000"
    notifier.close()


def test_status_newlines_cannot_inject_fields(listener: Listener) -> None:
    Notifier.from_environment().status("bad config\nREADY=1")
    assert listener.receive() == b"STATUS=bad config READY=1"


def test_send_arbitrary_fields_in_order(listener: Listener) -> None:
    assert Notifier.from_environment().send(STATUS="x", ERRNO=5)
    assert listener.receive() == b"STATUS=x\nERRNO=5"


def test_reloading_carries_monotonic_usec(listener: Listener) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier.from_environment().reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = listener.receive().split(b"\n")
    assert lines[0] == b"RELOADING=1"
    key, value = lines[1].split(b"=")
    assert key == b"MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert len(lines) == 2


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier.from_environment()
        assert notifier.address == "\0" + name
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_environment()
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert not notifier.reloading()
    notifier.close()
    assert not Notifier.from_environment({"NOTIFY_SOCKET": ""}).enabled


def test_socket_removed_warns_once_and_never_raises(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environment()
    assert notifier.ready()
    listener.sock.close()
    Path(listener.env_value).unlink()
    with caplog.at_level(logging.WARNING, logger="edge_agent.service.notify"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        assert not notifier.stopping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_watchdog_interval_is_half_the_period() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == (
        15.0
    )
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_watchdog_interval_for_another_pid_is_none() -> None:
    other = os.getpid() + 1
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(other)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}) is None


def test_watchdog_interval_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_watchdog_pings_only_when_frames_flow(listener: Listener) -> None:
    clock = FakeClock()
    dog = ProgressWatchdog(Notifier.from_environment(), interval=15.0, clock=clock)
    assert dog.enabled
    assert dog.beat(0)  # the first beat pings and sets the baseline
    assert listener.receive() == b"WATCHDOG=1"

    clock.now += 5
    assert not dog.beat(40)  # progress, but too soon after the last ping
    clock.now += 11
    assert dog.beat(40)
    assert listener.receive() == b"WATCHDOG=1"

    for _ in range(5):  # frames stopped: no ping however long we wait
        clock.now += 16
        assert not dog.beat(40)
    assert listener.nothing_pending()

    clock.now += 1
    assert dog.beat(41)  # frames flow again: ping at once, the interval has long passed
    assert listener.receive() == b"WATCHDOG=1"
    assert listener.nothing_pending()


def test_progress_watchdog_without_watchdog_is_a_no_op(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    dog = ProgressWatchdog.from_environment(Notifier.from_environment())
    assert not dog.enabled
    assert not dog.beat(1)
    assert not dog.beat(2)
    assert listener.nothing_pending()


def test_progress_watchdog_from_environment(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    dog = ProgressWatchdog.from_environment(Notifier.from_environment())
    assert dog.interval == 15.0
    assert dog.beat(7)
    assert listener.receive() == b"WATCHDOG=1"
