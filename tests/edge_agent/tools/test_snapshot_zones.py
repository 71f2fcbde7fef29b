"""`edge-agent snapshot --zones`: the real command draws the camera's zone and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_agent.events.draw import LINE_COLOUR, ZONE_COLOUR
from tests.helpers import REPO, snapshot_config

SHAPES = """\
    zones:
      - name: crossing
        points: [[0.45, 0.40], [0.95, 0.40], [0.95, 0.70], [0.45, 0.70]]
    lines:
      - name: kerb
        points: [[0.05, 0.62], [0.40, 0.62]]
        directions: {forward: north, backward: south}
"""


def colour_pixels(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(image.astype(int) - np.array(colour)).max(axis=2) < 30).sum())


def test_snapshot_zones_draws_zone_and_line(tmp_path: Path, samples: Path) -> None:
    video = samples / "media" / "vtest.mp4"
    camera = f"  - id: street\n    type: file\n    path: {video}\n{SHAPES}"
    config = snapshot_config(tmp_path, samples, camera)
    aimed = tmp_path / "aimed.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "snapshot", "street", "--config",
         str(config), "-o", str(aimed), "--zones"],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )
    assert done.returncode == 0, done.stderr
    capture = cv2.VideoCapture(str(video))
    ok, before = capture.read()
    capture.release()
    assert ok
    after = cv2.imread(str(aimed))
    assert colour_pixels(after, LINE_COLOUR) > colour_pixels(before, LINE_COLOUR) + 300
    assert colour_pixels(after, ZONE_COLOUR) > colour_pixels(before, ZONE_COLOUR) + 300
    # The line's row, left of the zone, now carries the line.
    row = int(0.62 * 576)
    assert colour_pixels(after[row - 2:row + 3, 40:300], LINE_COLOUR) > 200
