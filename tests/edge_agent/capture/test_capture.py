"""Capture: real decoding of real files, queue semantics, clear errors for bad sources."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.camera import Camera, Frame, FrameQueue, open_capture
from edge_agent.config.model import FileCamera, GstreamerCamera, RtspCamera, UsbCamera
from edge_agent.errors import SourceError


def _frame(sequence: int) -> Frame:
    return Frame("cam", sequence, np.zeros((2, 2, 3), np.uint8), time.time(), 0.0)


def test_live_queue_keeps_newest_and_counts_drops() -> None:
    queue = FrameQueue(1, drop_oldest=True)
    stop = threading.Event()
    for sequence in range(5):
        queue.put(_frame(sequence), stop)
    assert queue.dropped == 4
    got = queue.get(timeout=0.1)
    assert got is not None
    assert got.sequence == 4


def test_file_queue_blocks_instead_of_dropping() -> None:
    queue = FrameQueue(2, drop_oldest=False)
    stop = threading.Event()
    producer = threading.Thread(target=lambda: [queue.put(_frame(i), stop) for i in range(6)])
    producer.start()
    time.sleep(0.2)
    assert len(queue) == 2  # the producer waits for room
    received = []
    while len(received) < 6:
        frame = queue.get(timeout=1.0)
        assert frame is not None
        received.append(frame.sequence)
    producer.join(2)
    assert received == list(range(6))
    assert queue.dropped == 0


def test_file_camera_delivers_every_frame_then_finishes(samples: Path) -> None:
    video = samples / "media" / "traffic_frames.mp4"
    camera = Camera(FileCamera(id="road", type="file", path=video, realtime=False))
    camera.start()
    sequences = []
    while True:
        frame = camera.frames.get(timeout=5.0)
        if frame is None:
            break
        assert frame.image.shape == (540, 960, 3)
        sequences.append(frame.sequence)
    camera.stop()
    assert sequences == list(range(20))
    assert camera.finished


def test_realtime_file_is_paced_at_its_fps(samples: Path) -> None:
    video = samples / "media" / "vtest.mp4"  # 10 fps
    camera = Camera(FileCamera(id="street", type="file", path=video, realtime=True))
    camera.start()
    started = time.monotonic()
    for _ in range(6):
        assert camera.frames.get(timeout=5.0) is not None
    elapsed = time.monotonic() - started
    camera.stop()
    assert elapsed >= 0.4  # six frames at 10 fps take at least half a second


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"camera c1: video file .*gone\.mp4 not found"):
        open_capture(FileCamera(id="c1", type="file", path=tmp_path / "gone.mp4"))


def test_unplugged_usb_camera_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match=r"camera desk: cannot open USB camera /dev/video97"):
        open_capture(UsbCamera(id="desk", type="usb", device="/dev/video97"))


def test_unreachable_rtsp_hides_the_password() -> None:
    camera = RtspCamera(id="gate", type="rtsp", url="rtsp://admin:secret@127.0.0.1:1/none")
    with pytest.raises(SourceError) as caught:
        open_capture(camera)
    assert "secret" not in str(caught.value)
    assert "rtsp://***@127.0.0.1:1/none" in str(caught.value)


@pytest.mark.skipif(
    "GStreamer:                   YES" in cv2.getBuildInformation(),
    reason="this OpenCV has GStreamer; the error path cannot be reached",
)
def test_gstreamer_without_support_says_what_to_install() -> None:
    camera = GstreamerCamera(id="csi", type="gstreamer", pipeline="videotestsrc ! appsink")
    with pytest.raises(SourceError, match="no GStreamer support"):
        open_capture(camera)


def test_failing_camera_backs_off_and_counts_reconnects(tmp_path: Path) -> None:
    camera = Camera(FileCamera(id="c1", type="file", path=tmp_path / "gone.mp4"))
    camera.start()
    deadline = time.monotonic() + 5
    while camera.reconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    camera.stop()
    assert camera.reconnects >= 1
    assert "not found" in (camera.last_error or "")
