"""The RTSP test camera (tests/rtsp.py) serves frames OpenCV can read, and dies on demand."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.rtsp import RtspServer


@pytest.fixture(autouse=True)
def _rtsp_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV's FFmpeg reads this when a capture opens; TCP avoids UDP loss and port use."""
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")


def read_frames(url: str, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    try:
        assert capture.isOpened(), f"OpenCV could not open {url}"
        frames = []
        for _ in range(count):
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
        return frames
    finally:
        capture.release()


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def short_clip(tmp_path: Path, samples: Path) -> Path:
    """Two seconds (20 frames) of the sample video, so reading past its end is cheap."""
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(samples / "media" / "vtest.mp4"),
         "-frames:v", "20", "-an", "-c:v", "libx264", "-preset", "ultrafast", str(clip)],
        check=True,
    )  # fmt: skip
    return clip


def test_serves_the_sample_video_and_closes_on_stop(samples: Path) -> None:
    camera = RtspServer(samples / "media" / "vtest.mp4")
    with camera:
        assert camera.url == f"rtsp://127.0.0.1:{camera.port}/cam"
        frames = read_frames(camera.url, 30)
        assert len(frames) == 30
        assert all(frame.shape == (576, 768, 3) for frame in frames)
        camera.stop()
        assert not camera.running
        assert not port_accepts(camera.port)


@pytest.mark.slow
def test_comes_back_on_the_same_port_after_an_outage(short_clip: Path) -> None:
    with RtspServer(short_clip) as camera:
        assert len(read_frames(camera.url, 5)) == 5
        port = camera.port
        camera.stop()
        assert not port_accepts(port)
        camera.start()
        assert camera.port == port
        assert len(read_frames(camera.url, 5)) == 5


@pytest.mark.slow
def test_loops_past_the_end_of_the_file(short_clip: Path) -> None:
    with RtspServer(short_clip) as camera:
        frames = read_frames(camera.url, 50)
    assert len(frames) == 50, "the camera stopped at the end of the 20-frame clip"


@pytest.mark.slow
def test_without_loop_the_stream_ends_with_the_file(short_clip: Path) -> None:
    with RtspServer(short_clip, loop=False) as camera:
        frames = read_frames(camera.url, 50)
    assert 0 < len(frames) <= 20
