"""One counting line: cross events with a direction, counts since start and per window."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_agent.config.geometry import to_pixels
from edge_agent.config.zones import LineConfig
from edge_agent.events.shapes import anchors, crosses_segment, line_side
from edge_agent.events.types import Event, Track, WindowCounts

MakeEvent = Callable[..., Event]


@dataclass
class _Side:
    """A track's confirmed side of the line and the streak of frames on the other side."""

    side: int  # +1 / -1 (never 0: a point on the line keeps the side it had)
    point: np.ndarray  # last anchor on the confirmed side
    streak: int = 0
    streak_point: np.ndarray | None = None  # first anchor on the other side


class LineCounts:
    """Counts tracks whose anchor (bottom centre, where the feet are) crosses the segment.

    A cross fires once the anchor has stayed `min_frames` processed frames on the new side
    and the move from the last point on the old side to the first on the new one passes
    through the segment itself (walking round its end does not count). Forward goes along
    the arrow: A->B turned 90 degrees counter-clockwise on screen.
    """

    ANCHOR = "bottom_center"

    def __init__(self, config: LineConfig, class_ids: frozenset[int] | None) -> None:
        self.config = config
        self.class_ids = class_ids
        self._sides: dict[int, _Side] = {}
        self._ends: np.ndarray | None = None
        self._frame_size: tuple[int, int] | None = None
        names = config.directions
        self.totals: dict[str, dict[str, int]] = {names.forward: {}, names.backward: {}}
        self.window: WindowCounts | None = None

    def ends(self, frame_size: tuple[int, int]) -> np.ndarray:
        """(2, 2) float32 A and B in this frame's pixels."""
        if self._ends is None or frame_size != self._frame_size:
            self._ends = to_pixels(self.config.points, self.config.units, frame_size,
                                   name=f"line {self.config.name}")
            self._frame_size = frame_size
        return self._ends

    def roll_window(self, time: float) -> bool:
        """Start a new window when `time` is past the current one; True if one started."""
        length = self.config.count_window_s
        if length is None or (self.window is not None and time < self.window.end):
            return False
        start = math.floor(time / length) * length
        names = self.config.directions
        self.window = WindowCounts(start, start + length, {names.forward: {},
                                                           names.backward: {}})
        return True

    def update(self, tracks: list[Track], boxes: np.ndarray, frame_size: tuple[int, int],
               make: MakeEvent) -> list[Event]:
        """Cross events of this frame for the tracks seen in it; boxes: (N, 4) of those."""
        if self.class_ids is not None:
            keep = [i for i, t in enumerate(tracks) if t.class_id in self.class_ids]
            tracks, boxes = [tracks[i] for i in keep], boxes[keep]
        if not tracks:
            return []
        a, b = self.ends(frame_size)
        points = anchors(boxes, self.ANCHOR)
        sides = line_side(points, a, b)
        events: list[Event] = []
        for track, point, side in zip(tracks, points, sides.tolist(), strict=True):
            state = self._sides.get(track.track_id)
            if state is None:
                if side != 0:
                    self._sides[track.track_id] = _Side(side, point)
                continue
            if side == state.side:
                state.point, state.streak, state.streak_point = point, 0, None
                continue
            if side == 0:
                continue  # on the line: neither side's streak moves
            if state.streak == 0:
                state.streak_point = point
            state.streak += 1
            if state.streak < self.config.min_frames:
                continue
            assert state.streak_point is not None
            through = crosses_segment(state.point, state.streak_point, a, b)
            forward = state.side > 0
            state.side, state.point, state.streak, state.streak_point = side, point, 0, None
            if through:
                events.append(self._count(track, forward, make))
        return events

    def _count(self, track: Track, forward: bool, make: MakeEvent) -> Event:
        names = self.config.directions
        direction = names.forward if forward else names.backward
        per_label = self.totals[direction]
        per_label[track.label] = per_label.get(track.label, 0) + 1
        if self.window is not None:
            windowed = self.window.counts[direction]
            windowed[track.label] = windowed.get(track.label, 0) + 1
        return make("cross", track, line=self.config.name, direction=direction)

    def forget(self, track_id: int) -> None:
        self._sides.pop(track_id, None)
