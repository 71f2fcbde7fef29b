"""Compare tracker libraries on synthetic ground truth: ID switches and cost per frame.

Run in a scratch venv holding the candidates (not project dependencies):
    python -m venv /tmp/trk && /tmp/trk/bin/pip install trackers norfair
    PYTHONPATH=. /tmp/trk/bin/python scripts/tracker_choice.py
The figures and the choice are in docs/events.md (Tracking).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from edge_agent.events.synthetic import id_switches, scene

Update = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(boxes (N,4), scores (N,), class ids (N,)) -> track id per input detection (-1: none)."""


def roboflow(kind: str) -> Update:
    import supervision as sv
    import trackers

    common = {"lost_track_buffer": 30, "frame_rate": 10.0, "minimum_consecutive_frames": 1,
              "minimum_iou_threshold": 0.1}
    if kind == "bytetrack":
        tracker = trackers.ByteTrackTracker(track_activation_threshold=0.25, **common)
    elif kind == "ocsort":
        tracker = trackers.OCSORTTracker(**common)
    else:
        tracker = trackers.SORTTracker(track_activation_threshold=0.25, **common)

    def update(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
        found = sv.Detections(xyxy=boxes, confidence=scores, class_id=classes,
                              data={"index": np.arange(len(scores))})
        out = tracker.update(found)
        ids = np.full(len(scores), -1)
        if len(out):
            ids[out.data["index"]] = out.tracker_id
        return ids

    return update


def norfair_iou() -> Update:
    import norfair

    tracker = norfair.Tracker(distance_function="iou", distance_threshold=0.9,
                              hit_counter_max=10, initialization_delay=0)

    def update(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
        found = [norfair.Detection(points=box.reshape(2, 2), scores=np.array([s, s]), data=i)
                 for i, (box, s) in enumerate(zip(boxes, scores, strict=True))]
        ids = np.full(len(scores), -1)
        for obj in tracker.update(found):
            if obj.id is not None and any(obj.last_detection is d for d in found):
                ids[obj.last_detection.data] = obj.id
        return ids

    return update


CANDIDATES: dict[str, Callable[[], Update]] = {
    "trackers.SORTTracker": lambda: roboflow("sort"),
    "trackers.ByteTrackTracker": lambda: roboflow("bytetrack"),
    "trackers.OCSORTTracker": lambda: roboflow("ocsort"),
    "norfair.Tracker(iou)": norfair_iou,
}


def measure(make: Callable[[], Update], objects: int, frames: int, seed: int) -> tuple[int, float,
                                                                                       float]:
    """(ID switches, untracked share, ms per frame) over one synthetic scene."""
    update = make()
    clip = list(scene(objects, frames, seed=seed))
    truths, ids = [], []
    start = time.perf_counter()
    for frame in clip:
        d = frame.detections
        ids.append(update(d.boxes, d.scores, d.class_ids))
        truths.append(frame.truth)
    elapsed = (time.perf_counter() - start) * 1000 / frames
    untracked = float(np.mean(np.concatenate(ids) < 0))
    return id_switches(truths, ids), untracked, elapsed


def main() -> None:
    names = sys.argv[1:] or list(CANDIDATES)
    print(f"{'tracker':28} {'objects':>7} {'IDSW':>5} {'untracked':>9} {'ms/frame':>8}")
    for name in names:
        for objects in (1, 20, 100):
            switches = untracked = cost = 0.0
            for seed in range(3):
                s, u, c = measure(CANDIDATES[name], objects, 300, seed)
                switches, untracked, cost = switches + s, untracked + u / 3, cost + c / 3
            print(f"{name:28} {objects:7d} {int(switches):5d} {untracked:9.3f} {cost:8.3f}")


if __name__ == "__main__":
    main()
