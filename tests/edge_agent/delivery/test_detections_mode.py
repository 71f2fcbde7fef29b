"""publish.detections: every_frame, off, on_change (set of tracks or labels, keep-alive)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config.events_publish import PublishConfig
from edge_agent.delivery.detections_mode import DetectionsMode, scene_key

TRACKED = [  # (labels, track ids, seconds) -> published?
    (["person"], [1], 0.0, True),  # first frame
    (["person"], [1], 0.1, False),  # same track, moved
    (["person", "person"], [1, 2], 0.2, True),  # a new track
    (["person", "person"], [2, 1], 0.3, False),  # order does not matter
    (["person", "person"], [1, -1], 0.4, True),  # 2 lost, a tentative person
    (["person", "person"], [1, -1], 0.5, False),
    (["person", "car"], [1, -1], 0.6, True),  # the untracked one is a car now
    (["person", "car"], [1, -1], 5.5, False),  # 4.9 s after the last message
    (["person", "car"], [1, -1], 5.6, True),  # keep-alive after 5 s
    ([], [], 5.7, True),  # everything gone
    ([], [], 5.8, False),
]


def test_on_change_with_tracking() -> None:
    mode = DetectionsMode(PublishConfig(detections="on_change", keepalive_s=5.0))
    got = [mode.wants(labels, np.array(ids, np.int64), at) for labels, ids, at, _ in TRACKED]
    assert got == [expected for *_, expected in TRACKED]


def test_on_change_without_tracking_counts_labels() -> None:
    mode = DetectionsMode(PublishConfig(detections="on_change", keepalive_s=2.0))
    frames = [(["person"], True), (["person"], False), (["person", "person"], True),
              (["car", "person"], True), (["person", "car"], False)]
    assert [mode.wants(labels, None, i * 0.1) for i, (labels, _) in enumerate(frames)] == [
        expected for _, expected in frames]


@pytest.mark.parametrize(("setting", "expected"), [("every_frame", True), ("off", False)])
def test_fixed_modes(setting: str, expected: bool) -> None:
    mode = DetectionsMode(PublishConfig(detections=setting))
    assert all(mode.wants(["person"] * (i % 3), None, i) is expected for i in range(10))


def test_scene_key_needs_aligned_ids() -> None:
    with pytest.raises(ValueError, match=r"shorter|longer"):
        scene_key(["person", "car"], np.array([1]))
