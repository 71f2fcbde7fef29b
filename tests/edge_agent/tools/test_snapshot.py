"""`edge-agent snapshot`: the real command, a real video, real OpenVINO, a real JPEG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_agent.tools.snapshot import draw, write_jpeg
from engines.base import Detections
from tests.helpers import REPO, free_port, snapshot_config


def snapshot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "snapshot", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )


def test_snapshot_draws_the_detections_of_one_frame(tmp_path: Path, samples: Path) -> None:
    video = samples / "media" / "vtest.mp4"
    camera = f"  - id: street\n    type: file\n    path: {video}\n"
    config = snapshot_config(tmp_path, samples, camera)
    out = tmp_path / "aim.jpg"
    done = snapshot("street", "--config", str(config), "-o", str(out))
    assert done.returncode == 0, done.stderr

    capture = cv2.VideoCapture(str(video))
    ok, raw = capture.read()
    capture.release()
    assert ok
    image = cv2.imread(str(out))
    assert image is not None, "the JPEG does not decode"
    assert image.shape == raw.shape
    # Boxes and labels are drawn: the saved image differs from the raw frame far more
    # than JPEG compression alone would make it.
    recompressed = cv2.imdecode(cv2.imencode(".jpg", raw)[1], cv2.IMREAD_COLOR)
    drawn_diff = np.abs(image.astype(int) - raw.astype(int)).max(axis=2) > 60
    jpeg_diff = np.abs(recompressed.astype(int) - raw.astype(int)).max(axis=2) > 60
    assert drawn_diff.sum() > 20 * max(jpeg_diff.sum(), 1)

    lines = done.stdout.splitlines()
    assert lines[0].startswith("camera street: 768x576 frame, ")
    people = [line for line in lines if line.split()[:1] == ["person"]]
    assert len(people) >= 2  # the street scene always has pedestrians in view
    assert f"saved {out}" in done.stdout
    assert not list(tmp_path.glob(".aim.jpg.*")), "the temporary file was left behind"


def test_snapshot_json_is_the_agents_payload(tmp_path: Path, samples: Path) -> None:
    video = samples / "media" / "vtest.mp4"
    camera = f"  - id: street\n    type: file\n    path: {video}\n"
    config = snapshot_config(tmp_path, samples, camera)
    done = snapshot("street", "--config", str(config), "-o", str(tmp_path / "s.jpg"), "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["camera"] == "street"
    assert body["frame"] == {"width": 768, "height": 576}
    assert "person" in {item["label"] for item in body["detections"]}
    assert body["image"] == str(tmp_path / "s.jpg")


def test_unknown_camera_lists_the_ids(tmp_path: Path, samples: Path) -> None:
    video = samples / "media" / "vtest.mp4"
    cameras = (f"  - id: street\n    type: file\n    path: {video}\n"
               f"  - id: yard\n    type: file\n    path: {video}\n")
    done = snapshot("gate", "--config", str(snapshot_config(tmp_path, samples, cameras)))
    assert done.returncode == 1
    assert "no camera with id 'gate'; cameras: street, yard" in done.stderr


def test_camera_without_frames_is_a_clear_error(tmp_path: Path, samples: Path) -> None:
    port = free_port()  # nothing listens there
    cameras = f"  - id: gate\n    type: rtsp\n    url: rtsp://u:secret@127.0.0.1:{port}/live\n"
    out = tmp_path / "never.jpg"
    done = snapshot("gate", "--config", str(snapshot_config(tmp_path, samples, cameras)),
                    "-o", str(out))
    assert done.returncode == 1
    assert f"camera gate: nothing listens on 127.0.0.1:{port}" in done.stderr
    assert "secret" not in done.stderr
    assert not out.exists()

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cameras = f"  - id: door\n    type: file\n    path: {empty}\n"
    done = snapshot("door", "--config", str(snapshot_config(tmp_path, samples, cameras)))
    assert done.returncode == 1
    assert "camera door:" in done.stderr


def test_draw_and_atomic_write(tmp_path: Path) -> None:
    frame = np.full((120, 160, 3), 40, np.uint8)
    found = Detections(np.array([[10, 20, 90, 100]], np.float32), np.array([0.9], np.float32),
                       np.array([1], np.int32))
    drawn = draw(frame, found, ("person", "bicycle"))
    assert (drawn != frame).any()
    assert (frame == 40).all(), "draw must not change the caller's frame"
    assert (drawn[60, 10] != 40).any()  # the left edge of the box
    target = tmp_path / "out.jpg"
    target.write_bytes(b"old")
    write_jpeg(target, drawn)
    assert cv2.imread(str(target)).shape == (120, 160, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]
