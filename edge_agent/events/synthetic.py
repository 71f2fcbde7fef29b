"""Synthetic detections with known ground truth: objects on known paths, for cost and tests.

Each object moves at constant velocity (pairs cross each other head-on), its detection is
missed now and then for 1-3 frames, its box jitters by a pixel or two and its score is noisy.
The true object index of every detection is kept, so ID switches can be counted exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from engines.base import Detections


@dataclass(frozen=True)
class SyntheticFrame:
    """One frame: the detections the tracker sees and the true object of each (N,)."""

    detections: Detections
    truth: np.ndarray  # (N,) int: object index 0..objects-1
    time: float  # seconds since the first frame


def scene(objects: int, frames: int, *, frame_size: tuple[int, int] = (768, 576),
          fps: float = 10.0, seed: int = 0, miss_rate: float = 0.03,
          jitter_px: float = 1.5) -> Iterator[SyntheticFrame]:
    """Frames of `objects` people-sized boxes walking across the frame and back.

    Objects come in pairs on the same row walking towards each other, so every pair crosses
    (their boxes overlap fully for a few frames). A detection is missed for 1-3 frames with
    probability `miss_rate` per frame; scores are 0.75 +- 0.1, one in ten below 0.5.
    """
    rng = np.random.default_rng(seed)
    width, height = frame_size
    size = np.column_stack([rng.uniform(28, 44, objects), rng.uniform(70, 110, objects)])
    speed = rng.uniform(30, 90, objects)  # px/s
    direction = np.where(np.arange(objects) % 2 == 0, 1.0, -1.0)
    rows = rng.uniform(0.15 * height, 0.85 * height, (objects + 1) // 2).repeat(2)[:objects]
    start = rng.uniform(0.05 * width, 0.95 * width, objects)
    missed_until = np.full(objects, -1)
    for frame in range(frames):
        t = frame / fps
        # Bounce between the frame's edges: a triangle wave keeps objects in view forever.
        span = width - size[:, 0]
        travel = (start + direction * speed * t) % (2 * span)
        x = np.where(travel > span, 2 * span - travel, travel)
        y = rows + 8 * np.sin(t + np.arange(objects))
        centre = np.column_stack([x + size[:, 0] / 2, y])
        boxes = np.column_stack([centre - size / 2, centre + size / 2])
        boxes += rng.normal(0, jitter_px, boxes.shape)
        starts = (missed_until < frame) & (rng.random(objects) < miss_rate)
        missed_until[starts] = frame + rng.integers(0, 3, starts.sum())
        seen = missed_until < frame
        scores = np.clip(rng.normal(0.75, 0.1, objects), 0.05, 0.99)
        scores[rng.random(objects) < 0.1] = rng.uniform(0.3, 0.5)
        order = rng.permutation(np.flatnonzero(seen))  # detectors emit in no fixed order
        yield SyntheticFrame(
            Detections(boxes[order].astype(np.float32), scores[order].astype(np.float32),
                       np.zeros(order.size, np.int32)),
            order, t,
        )


def id_switches(truth_per_frame: list[np.ndarray], ids_per_frame: list[np.ndarray]) -> int:
    """Times a true object's track id differs from the id it last had (untracked: skipped)."""
    last: dict[int, int] = {}
    switches = 0
    for truth, ids in zip(truth_per_frame, ids_per_frame, strict=True):
        for obj, track in zip(truth.tolist(), ids.tolist(), strict=True):
            if track < 0:
                continue
            if obj in last and last[obj] != track:
                switches += 1
            last[obj] = track
    return switches
