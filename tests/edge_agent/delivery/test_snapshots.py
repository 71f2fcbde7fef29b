"""Snapshot JPEGs (frame with the box, crop; size and quality) and their files (retention,
a folder that cannot be written costs the file, never raises)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.config.events_publish import SnapshotConfig
from edge_agent.delivery.snapshots import SnapshotStore, file_name, render
from tests.helpers import SAMPLES

FRAME = cv2.imread(str(SAMPLES / "images" / "kite_and_cold.jpg"))  # 1352 x 900
BOX = (111.0, 608.0, 167.0, 762.0)  # a person


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.parametrize("mode", ["frame", "crop", "both"])
@pytest.mark.parametrize("max_width", [64, 640, 1280, 4000])
def test_render_sizes_and_kinds(mode: str, max_width: int) -> None:
    config = SnapshotConfig(enabled=True, mode=mode, max_width=max_width)
    before = FRAME.copy()
    rendered = render(FRAME, BOX, "person #1", config)
    assert np.array_equal(FRAME, before), "the caller's frame must not be drawn on"
    assert (rendered.frame is not None) is (mode in ("frame", "both"))
    assert (rendered.crop is not None) is (mode in ("crop", "both"))
    if rendered.frame is not None:
        image = decoded(rendered.frame)
        width = min(max_width, FRAME.shape[1])
        assert image.shape[1] == width
        assert abs(image.shape[0] - FRAME.shape[0] * width / FRAME.shape[1]) <= 1
        assert rendered.primary is rendered.frame
    if rendered.crop is not None:
        crop = decoded(rendered.crop)
        assert crop.shape[1] == min(56, max_width)


def test_the_box_is_drawn_where_the_object_is() -> None:
    config = SnapshotConfig(enabled=True, mode="frame", max_width=1352, quality=95)
    image = decoded(render(FRAME, BOX, "person #1", config).frame)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    green = (image[:, :, 1].astype(int) - image[:, :, 2].astype(int)) > 120
    assert green[y1 + 20:y2 - 20, x1 - 1:x1 + 2].mean() > 0.8  # the left edge
    assert green[y1 + 20:y2 - 20, x1 + 15:x2 - 15].mean() < 0.1  # not the inside


def test_quality_changes_the_size() -> None:
    small = render(FRAME, BOX, "p", SnapshotConfig(enabled=True, quality=10)).frame
    large = render(FRAME, BOX, "p", SnapshotConfig(enabled=True, quality=95)).frame
    assert small is not None
    assert large is not None
    assert len(small) < len(large) / 2


def test_a_box_off_the_frame_gives_no_crop() -> None:
    rendered = render(FRAME, (5000.0, 5000.0, 5100.0, 5100.0), "p",
                      SnapshotConfig(enabled=True, mode="both"))
    assert rendered.crop is None
    assert rendered.frame is not None


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    folder = tmp_path / "snapshots" / "gate"
    folder.mkdir(parents=True)
    for index in range(5):  # left by an earlier run, oldest first
        old = folder / f"old{index}.jpg"
        old.write_bytes(b"x")
        os.utime(old, (1000 + index, 1000 + index))
    store = SnapshotStore(folder, keep=3)
    assert sorted(p.name for p in folder.iterdir()) == ["old2.jpg", "old3.jpg", "old4.jpg"]
    names = [file_name(f"{i:032x}", 1_764_480_000 + i, "person", "frame") for i in range(4)]
    for name in names:
        assert store.save(name, b"jpeg") == f"gate/{name}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(names[1:])
    assert store.written == 4
    assert store.failed == 0


def test_an_unwritable_folder_costs_the_file_only(tmp_path: Path) -> None:
    blocker = tmp_path / "snapshots"
    blocker.write_text("a file where the folder should be")
    store = SnapshotStore(blocker / "gate", keep=3)
    assert store.save("a.jpg", b"jpeg") is None
    assert store.failed == 1
    assert store.last_error
    assert "cannot write snapshot" in store.last_error


def test_file_names_sort_by_time_and_are_safe() -> None:
    first = file_name("a" * 32, 1_764_480_000.001, "traffic light", "frame")
    later = file_name("b" * 32, 1_764_480_001.5, "person", "crop")
    assert first == "20251130T052000.001Z-traffic_light-" + "a" * 32 + ".jpg"
    assert later.endswith("-crop.jpg")
    assert first < later
    assert "/" not in first
