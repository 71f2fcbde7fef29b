"""One zone: enter/exit/dwell events with hysteresis, and occupancy per class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_agent.config.geometry import to_pixels
from edge_agent.config.zones import ZoneConfig
from edge_agent.events.shapes import anchors, inside_polygon, polygon_edges
from edge_agent.events.types import Event, EventType, Track

MakeEvent = Callable[..., Event]


@dataclass
class _Presence:
    """A track's standing with one zone: confirmed inside or not, and the streak against it."""

    inside: bool = False
    streak: int = 0  # frames in a row on the other side of the confirmed state
    streak_since: float = 0.0  # wall s of the streak's first frame
    entered_at: float = 0.0  # wall s of the first frame inside of this visit
    dwelled: bool = False
    label: str = ""  # counted in occupancy under this label (a track's label may change)


class ZoneEvents:
    """Decides which tracks are inside one zone, frame by frame.

    A track's anchor must be inside (outside) for `min_frames` processed frames in a row
    before `enter` (`exit`) fires, so a box jittering across an edge fires nothing. A
    frame where the track is not detected neither extends nor breaks a streak.
    """

    def __init__(self, config: ZoneConfig, class_ids: frozenset[int] | None) -> None:
        self.config = config
        self.class_ids = class_ids  # None: every class
        self._presence: dict[int, _Presence] = {}
        self._polygon: np.ndarray | None = None
        self._edges = np.zeros((5, 0))
        self._frame_size: tuple[int, int] | None = None
        self.occupancy: dict[str, int] = {}

    def polygon(self, frame_size: tuple[int, int]) -> np.ndarray:
        """The zone in this frame's pixels (recomputed when the frame size changes)."""
        if self._polygon is None or frame_size != self._frame_size:
            self._polygon = to_pixels(self.config.points, self.config.units, frame_size,
                                      name=f"zone {self.config.name}")
            self._edges = polygon_edges(self._polygon)
            self._frame_size = frame_size
        return self._polygon

    def update(self, tracks: list[Track], boxes: np.ndarray, frame_size: tuple[int, int],
               time: float, make: MakeEvent) -> list[Event]:
        """Events of this frame for the tracks seen in it; boxes: (N, 4) of those tracks."""
        if self.class_ids is not None:
            keep = [i for i, t in enumerate(tracks) if t.class_id in self.class_ids]
            tracks, boxes = [tracks[i] for i in keep], boxes[keep]
        if not tracks:
            return []
        self.polygon(frame_size)
        inside = inside_polygon(anchors(boxes, self.config.anchor), self._edges)
        events: list[Event] = []
        for track, now_inside in zip(tracks, inside.tolist(), strict=True):
            presence = self._presence.setdefault(track.track_id, _Presence())
            if now_inside == presence.inside:
                presence.streak = 0
            else:
                if presence.streak == 0:
                    presence.streak_since = time
                presence.streak += 1
                if presence.streak >= self.config.min_frames:
                    events.append(self._flip(track, presence, time, make))
            if presence.inside and not presence.dwelled and self.config.dwell_s is not None:
                stayed = time - presence.entered_at
                if stayed >= self.config.dwell_s:
                    presence.dwelled = True
                    events.append(make("dwell", track, zone=self.config.name, dwell_s=stayed))
        return events

    def _flip(self, track: Track, presence: _Presence, time: float, make: MakeEvent) -> Event:
        presence.inside, presence.streak = not presence.inside, 0
        kind: EventType = "enter" if presence.inside else "exit"
        if presence.inside:
            presence.entered_at, presence.dwelled = presence.streak_since, False
            presence.label = track.label
            self.occupancy[track.label] = self.occupancy.get(track.label, 0) + 1
            return make(kind, track, zone=self.config.name)
        self.occupancy[presence.label] -= 1
        return make(kind, track, zone=self.config.name, dwell_s=time - presence.entered_at)

    def forget(self, track: Track, time: float, make: MakeEvent) -> Event | None:
        """A track that is gone for good: `exit` if it was inside."""
        presence = self._presence.pop(track.track_id, None)
        if presence is None or not presence.inside:
            return None
        self.occupancy[presence.label] -= 1
        return make("exit", track, zone=self.config.name, dwell_s=time - presence.entered_at)
