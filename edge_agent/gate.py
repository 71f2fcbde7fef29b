"""Which frames go to inference: the per-camera detect rate and the motion gate.

Decided before a frame is submitted, so a skipped frame costs a resize and a subtraction on
a tiny grey image (about 0.3 ms at 1280x720) instead of an inference. Skipped frames are
counted by reason and never published: an empty detection list would claim "nothing there".
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.config.detect import DetectConfig, MotionConfig

RATE_SLACK = 0.25
"""A frame this share of a period early still counts as due: a camera at exactly the detect
rate, with jittery timestamps, must keep every frame."""


KEPT_PER_COMPARE = 32
"""Grey images kept per compare_s at most: memory stays bounded at any frame rate, and the
compared frame is between compare_s and compare_s * (1 + 1/32) old."""


@dataclass(frozen=True)
class GateStats:
    """What health shows of one camera's gate: frames skipped per reason, motion now."""

    skipped_rate: int
    skipped_motion: int
    motion_active: bool | None
    """None when the motion gate is off."""
    changed: float | None
    """Share (0-1) of the grey cells that differed from the reference at the last frame."""


class RateLimiter:
    """Admit frames at most `fps` per second on the frames' own clock, spaced evenly.

    The schedule is a grid of due times one period apart, so the long-run rate is `fps`
    exactly whatever the camera's rate; a frame up to RATE_SLACK of a period early is due,
    and no two admitted frames are closer than (1 - 2 * RATE_SLACK) periods. After a gap of
    more than a period (a stalled stream) the grid restarts at the next frame: no burst.
    """

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self.slack = self.period * RATE_SLACK
        self.next_due: float | None = None
        self.last_taken = float("-inf")

    def due(self, now: float) -> bool:
        if self.next_due is None:
            return True
        min_gap = self.period - 2 * self.slack
        return now >= self.next_due - self.slack and now - self.last_taken >= min_gap

    def taken(self, now: float) -> None:
        """Record an admitted frame at `now` (seconds, monotonic)."""
        self.last_taken = now
        due = self.next_due
        if due is None or now - due >= self.period:  # first frame, or fell a period behind
            self.next_due = now + self.period
        else:
            self.next_due = due + self.period

    def restart(self, now: float) -> None:
        """Start the grid afresh at `now` (a frame taken outside the schedule)."""
        self.next_due = None
        self.taken(now)


class MotionDetector:
    """Motion between a frame and the one `compare_s` seconds before it, on a tiny grey image.

    The reference moves along with time, so a slow drift (daylight, auto exposure, a
    cloud) changes it by less than `pixel_threshold` over `compare_s` and never counts,
    while a moving object differs at once, and stops differing `compare_s` after it stops:
    no ghost of where it was. A cell is changed when its grey level differs by more than
    `pixel_threshold`; the frame has motion when at least `threshold` of the cells changed.
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self.recent: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        """(time, small grey) of recent frames, oldest first; the first is the reference."""
        self.changed = 0.0

    def small_grey(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 BGR (or HxW grey) -> (h, w) int16 grey of the configured size."""
        width, height = self.config.size
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return small.astype(np.int16)

    def moving(self, image: np.ndarray, now: float) -> bool:
        """Whether `image` (taken at `now`, seconds) differs from the reference."""
        grey = self.small_grey(image)
        recent = self.recent
        if recent and (recent[-1][1].shape != grey.shape or now < recent[-1][0]):
            recent.clear()  # a new frame size, or a clock that went back: start again
        # The reference is the newest frame at least compare_s old (or the oldest there is).
        while len(recent) > 1 and recent[1][0] <= now - self.config.compare_s:
            recent.popleft()
        moving = False
        if recent:
            difference = cv2.absdiff(grey, recent[0][1])
            self.changed = float(np.count_nonzero(difference > self.config.pixel_threshold)) / (
                difference.size)
            moving = self.changed >= self.config.threshold
        if not recent or now - recent[-1][0] >= self.config.compare_s / KEPT_PER_COMPARE:
            recent.append((now, grey))
        return moving


class FrameGate:
    """One camera's decision, frame by frame, whether to run the detector.

    Without motion gating: every frame, or `detect.fps` frames per second evenly spaced.
    With it: a still scene runs at `motion.keepalive_fps`; motion runs at full rate (or
    `detect.fps`) and keeps doing so for `motion.hold_s` after the last motion, so an
    object that stops is still seen for a while. The first moving frame after a still
    stretch is inferred at once, whatever the spacing says.
    """

    def __init__(self, config: DetectConfig, counts_from: FrameGate | None = None) -> None:
        """`counts_from`: the gate this one replaces (a reload); its counts go on here."""
        self.config = config
        self.rate = RateLimiter(config.fps)
        motion = config.motion
        self.motion = MotionDetector(motion) if motion.enabled else None
        keepalive = motion.keepalive_fps if motion.enabled else None
        self.keepalive = RateLimiter(keepalive) if keepalive else None
        """None: a still scene is never inferred (keepalive_fps 0)."""
        self.skipped_rate = counts_from.skipped_rate if counts_from else 0
        self.skipped_motion = counts_from.skipped_motion if counts_from else 0
        self.motion_until = float("-inf")
        """Seconds (frame clock) up to which the scene counts as moving."""
        self.active = False

    def admit(self, image: np.ndarray, captured_mono: float) -> bool:
        """True when this frame (HxWx3 uint8 BGR, taken at `captured_mono` seconds on a
        monotonic clock) should be inferred; a False is counted by its reason."""
        now = captured_mono
        if self.motion is None:
            return self._by_rate(now)
        if self.motion.moving(image, now):
            self.motion_until = now + self.config.motion.hold_s
        was_active, self.active = self.active, now <= self.motion_until
        if self.active and not was_active:  # motion after a still stretch: look at once
            self.rate.restart(now)
            self._inferred(now)
            return True
        if self.active:
            return self._by_rate(now)
        if self.keepalive is not None and self.keepalive.due(now):
            self.keepalive.taken(now)
            return True
        self.skipped_motion += 1
        return False

    def _by_rate(self, now: float) -> bool:
        if self.rate.due(now):
            self.rate.taken(now)
            self._inferred(now)
            return True
        self.skipped_rate += 1
        return False

    def _inferred(self, now: float) -> None:
        """The next keep-alive frame is due a keep-alive period after the last inference."""
        if self.keepalive is not None:
            self.keepalive.restart(now)

    def stats(self) -> GateStats:
        motion = self.motion
        return GateStats(
            skipped_rate=self.skipped_rate, skipped_motion=self.skipped_motion,
            motion_active=None if motion is None else self.active,
            changed=None if motion is None else round(motion.changed, 4),
        )
