"""The tracker on synthetic ground truth: few ID switches, ids from 1, velocity."""

from __future__ import annotations

import numpy as np

from edge_agent.config.zones import TrackerConfig
from edge_agent.events.synthetic import id_switches, scene
from edge_agent.events.tracking import Tracker
from engines.base import Detections


def test_synthetic_scene_has_known_truth_and_gaps() -> None:
    frames = list(scene(10, 100, seed=1))
    seen = sum(len(f.detections) for f in frames)
    assert 0.85 * 1000 < seen < 1000  # some detections missed, most not
    assert all(sorted(f.truth.tolist()) == sorted(set(f.truth.tolist())) for f in frames)
    assert id_switches([np.array([0, 1]), np.array([1, 0])],
                       [np.array([5, 6]), np.array([6, 7])]) == 1


def test_tracker_keeps_ids_through_crossings_and_misses() -> None:
    """Ten people walking at each other with missed frames and score noise: the measured
    rate (docs/events.md) is about one switch per 1400 object-frames; allow 1 per 500."""
    tracker = Tracker(TrackerConfig(), ["person"])
    truths, ids = [], []
    for item in scene(10, 200, seed=2):
        _, track_ids = tracker.update(item.detections, 1e9 + item.time)
        truths.append(item.truth)
        ids.append(track_ids)
    assert id_switches(truths, ids) <= 10 * 200 // 500
    assert min(int(i.min(initial=99)) for i in ids if len(i)) == 1  # per camera, from 1
    assert (np.concatenate(ids) >= 1).mean() > 0.99


def test_track_fields() -> None:
    tracker = Tracker(TrackerConfig(), ["person", "car"])
    box = np.array([[100, 100, 140, 200]], np.float32)
    tracks: list = []
    for step in range(5):
        moved = box + np.array([10 * step, 0, 10 * step, 0], np.float32)
        tracks, _ = tracker.update(
            Detections(moved, np.array([0.5 + step / 10], np.float32),
                       np.array([1 if step else 0], np.int32)), 100.0 + step / 10)
    (track,) = tracks
    assert (track.track_id, track.label, track.class_id) == (1, "car", 1)  # most often
    assert (track.first_seen, track.last_seen) == (100.0, 100.4)
    assert track.best_score == np.float32(0.9)
    assert abs(track.velocity[0] - 100) < 10  # 10 px a frame at 10 fps
    assert abs(track.velocity[1]) < 1e-6
