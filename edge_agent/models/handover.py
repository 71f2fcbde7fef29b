"""What a camera pipeline keeps for model deploys: a few recent frames with the running
model's detection counts, and the hand-over of a new engine at a frame boundary.

Both live on the pipeline thread's hot path, so they cost an append or an attribute read
per frame; the deploy thread reads them.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from engines.base import Engine
from engines.postprocess import DetectionFilter

RECENT_EVERY = 5
"""Keep every k-th published frame: spread over time, cheap in memory."""
RECENT_FRAMES = 8
MAX_WIDTH = 1280
"""Wider frames are kept scaled down to this (a 1080p frame: 2.7 MB instead of 6 MB);
models take 320-1280 px inputs, so the new model sees what the running one saw."""


@dataclass(frozen=True)
class RecentFrame:
    sequence: int
    image: np.ndarray
    """HxWx3 uint8 BGR: the frame itself (frames are never written to), or a copy scaled
    down to MAX_WIDTH."""
    detections: int
    """How many detections the model that ran on it published."""


class RecentFrames:
    """A small ring of one camera's recent frames (every RECENT_EVERY-th)."""

    def __init__(self, size: int = RECENT_FRAMES, every: int = RECENT_EVERY) -> None:
        self._ring: collections.deque[RecentFrame] = collections.deque(maxlen=size)
        self._every = every
        self._seen = 0
        self._lock = threading.Lock()

    def offer(self, sequence: int, image: np.ndarray, detections: int) -> None:
        self._seen += 1
        if (self._seen - 1) % self._every == 0:
            height, width = image.shape[:2]
            if width > MAX_WIDTH:
                size = (MAX_WIDTH, max(1, round(height * MAX_WIDTH / width)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            with self._lock:
                self._ring.append(RecentFrame(sequence, image, detections))

    def snapshot(self) -> list[RecentFrame]:
        """The frames held now, oldest first (a copy of the ring, not of the images)."""
        with self._lock:
            return list(self._ring)

    def clear(self) -> None:
        """After a swap: the counts held were the previous model's."""
        with self._lock:
            self._ring.clear()


class Handover:
    """A new engine for the pipeline thread to take between two frames.

    `offer` (deploy thread) parks it; the pipeline calls `take` before it reads its next
    frame and `settle` each turn of its loop; the returned event is set once no frame of
    the older engine is in flight, after which that engine may be closed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offered: tuple[Engine, DetectionFilter] | None = None
        self._drained: threading.Event | None = None
        self.generation = 0
        self.waiting = False
        """Read without the lock on every frame: True while an offer or a drain is open."""

    def offer(self, engine: Engine, options: DetectionFilter) -> threading.Event:
        event = threading.Event()
        with self._lock:
            if self._drained is not None:
                self._drained.set()  # superseded: that engine never ran here
            self._offered, self._drained = (engine, options), event
            self.waiting = True
        return event

    def take(self) -> tuple[Engine, DetectionFilter] | None:
        with self._lock:
            offered, self._offered = self._offered, None
            if offered is not None:
                self.generation += 1
            return offered

    def settle(self, oldest_generation: int | None) -> None:
        """`oldest_generation`: that of the oldest frame in flight (None: none)."""
        with self._lock:
            if self._offered is None and self._drained is not None and (
                oldest_generation is None or oldest_generation == self.generation
            ):
                self._drained.set()
                self._drained = None
                self.waiting = False
