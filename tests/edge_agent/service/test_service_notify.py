"""The real agent process speaks sd_notify: READY, WATCHDOG only while frames flow, STOPPING."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import Broker, write_config
from tests.rtsp import RtspServer


def _read(sock: socket.socket, seconds: float) -> list[bytes]:
    received, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            received.append(sock.recv(4096))
        except TimeoutError:
            break
    return received


def test_watchdog_pings_only_while_frames_flow(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    with RtspServer(samples / "media" / "traffic_frames.mp4") as server:
        cameras = f"  - id: gate\n    type: rtsp\n    url: {server.url}\n"
        config = write_config(tmp_path, samples, broker, unique_prefix, cameras)
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            first: list[bytes] = []
            deadline = time.monotonic() + 30
            while not any(b"READY=1" in m for m in first) and time.monotonic() < deadline:
                first += _read(sock, 1.0)
            assert any(b"READY=1" in m for m in first), first
            flowing = _read(sock, 4.0)
            assert sum(m == b"WATCHDOG=1" for m in flowing) >= 3
            server.stop()  # the camera goes dark: no frames, so no progress
            time.sleep(1.5)
            settling = _read(sock, 0.1)  # pings sent before the stop was noticed
            stalled = _read(sock, 3.0)
            assert b"WATCHDOG=1" not in stalled
            sent = first + flowing + settling + stalled
            statuses = [m for m in sent if m.startswith(b"STATUS=")]
            assert b"STATUS=1/1 cameras running on openvino/CPU" in statuses, statuses
            assert any(m.startswith(b"STATUS=0/1 cameras running") and b"gate BACKOFF" in m
                       for m in statuses), statuses
        finally:
            agent.send_signal(signal.SIGTERM)
            output, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0, output
    assert any(b"STOPPING=1" in m for m in _read(sock, 1.0))
    sock.close()
