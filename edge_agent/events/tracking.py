"""Stable track ids per camera on top of the `trackers` library's SORT (docs/events.md).

The library associates boxes (Kalman prediction + IoU + optimal assignment); this module
maps its ids to per-camera ids from 1 and keeps what the events need per track: first and
last seen, best score, smoothed velocity, the class seen most often. Why SORT from
`trackers`: measured against its ByteTrack and OC-SORT and norfair (docs/events.md).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_agent.config.zones import TrackerConfig
from edge_agent.events.types import Track
from engines.base import Detections

log = logging.getLogger(__name__)

VELOCITY_SMOOTHING = 0.5
"""Weight of the newest displacement in the velocity estimate (1: no smoothing)."""


@dataclass
class TrackState:
    """What is known of one track between frames."""

    track_id: int
    box: np.ndarray
    score: float
    first_seen: float
    last_seen: float
    best_score: float
    last_frame: int  # index of the last frame with a detection
    velocity: tuple[float, float] = (0.0, 0.0)
    classes: Counter[int] = field(default_factory=Counter)
    class_id: int = -1  # the class seen most often (first seen wins a tie)

    def observe(self, box: np.ndarray, score: float, class_id: int, time: float,
                frame: int) -> None:
        elapsed = time - self.last_seen
        if elapsed > 0:  # plain floats: numpy scalars cost ~1 us an operation
            x1, y1, x2, y2 = box.tolist()
            o1, p1, o2, p2 = self.box.tolist()
            w, vx, vy = VELOCITY_SMOOTHING, *self.velocity
            self.velocity = (w * ((x1 + x2) - (o1 + o2)) / 2 / elapsed + (1 - w) * vx,
                             w * ((y1 + y2) - (p1 + p2)) / 2 / elapsed + (1 - w) * vy)
        self.box, self.score, self.last_seen, self.last_frame = box, score, time, frame
        self.best_score = max(self.best_score, score)
        self.classes[class_id] += 1
        if self.class_id < 0 or self.classes[class_id] > self.classes[self.class_id]:
            self.class_id = class_id


def _sort_tracker(config: TrackerConfig) -> object:
    # Imported here: the library pulls in supervision and scipy (a few seconds), which only
    # cameras with zones or lines need.
    from trackers import SORTTracker

    # frame_rate=30 makes the library's lost_track_buffer a count of frames; a track lives
    # while frames-without-update < buffer, so +1 lets it miss exactly max_missed_frames.
    return SORTTracker(
        lost_track_buffer=config.max_missed_frames + 1, frame_rate=30.0,
        track_activation_threshold=0.0, minimum_consecutive_frames=config.min_hits,
        minimum_iou_threshold=config.match_iou,
    )


class Tracker:
    """Per-camera tracking: detections in, tracks with stable ids out."""

    def __init__(self, config: TrackerConfig, labels: Sequence[str]) -> None:
        self.config = config
        self.labels = list(labels)
        self._library = _sort_tracker(config)
        self._ids: dict[int, int] = {}  # library id -> our id
        self._next_id = 1
        self.states: dict[int, TrackState] = {}
        self.frame = 0

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def update(self, detections: Detections, time: float) -> tuple[list[Track], np.ndarray]:
        """Tracks seen in this frame and the track id of each detection (-1: none yet)."""
        import supervision as sv

        self.frame += 1
        count = len(detections)
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
        found = sv.Detections(
            xyxy=boxes, confidence=np.asarray(detections.scores, dtype=np.float64),
            class_id=np.asarray(detections.class_ids, dtype=np.int64),
            data={"index": np.arange(count)},
        )
        out = self._library.update(found)  # type: ignore[attr-defined]
        track_ids = np.full(count, -1, dtype=np.int64)
        tracks: list[Track] = []
        given: set[int] = set()
        boxes32 = np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(detections.scores).tolist()
        class_ids = np.asarray(detections.class_ids).tolist()
        if out.tracker_id is not None and len(out):
            for index, library_id in zip(out.data["index"].tolist(), out.tracker_id.tolist(),
                                         strict=True):
                if library_id < 0 or track_ids[index] >= 0:
                    continue
                track_id = self._ids.get(library_id)
                if track_id is None:
                    track_id = self._ids[library_id] = self._next_id
                    self._next_id += 1
                if track_id in given:
                    continue  # the library gave one id to two boxes: keep the first
                given.add(track_id)
                track_ids[index] = track_id
                tracks.append(self._observe(track_id, boxes32[index], scores[index],
                                            class_ids[index], time))
        return tracks, track_ids

    def _observe(self, track_id: int, box: np.ndarray, score: float, class_id: int,
                 time: float) -> Track:
        state = self.states.get(track_id)
        if state is None:
            state = self.states[track_id] = TrackState(track_id, box, score, time, time, score,
                                                       self.frame)
        state.observe(box, score, class_id, time, self.frame)
        return self.snapshot(state)

    def snapshot(self, state: TrackState) -> Track:
        return Track(state.track_id, state.box, state.class_id, self.label(state.class_id),
                     state.score, state.first_seen, state.last_seen, state.best_score,
                     state.velocity)

    def expire(self) -> list[TrackState]:
        """Tracks missed for more than max_missed_frames frames: gone for good."""
        limit = self.frame - self.config.max_missed_frames
        gone = [s for s in self.states.values() if s.last_frame < limit]
        for state in gone:
            del self.states[state.track_id]
        if gone:
            alive = set(self.states)
            self._ids = {k: v for k, v in self._ids.items() if v in alive}
        return gone
