"""One zone: enter/exit/dwell events with hysteresis, and occupancy per class."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from edge_agent.config.geometry import to_pixels
from edge_agent.config.zones import ZoneConfig
from edge_agent.events.shapes import anchors, inside_polygon, polygon_edges
from edge_agent.events.types import Event, EventType, ExitReason, Track

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
    class_id: int = -1  # the class id of that label


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
            presence.label, presence.class_id = track.label, track.class_id
            self.occupancy[track.label] = self.occupancy.get(track.label, 0) + 1
            return make(kind, track, zone=self.config.name)
        return self._exit(track, presence, time, make, "left")

    def _exit(self, track: Track, presence: _Presence, time: float, make: MakeEvent,
              reason: ExitReason) -> Event:
        self.occupancy[presence.label] -= 1
        return self._exit_event(track, presence, time, make, reason)

    def _exit_event(self, track: Track, presence: _Presence, time: float, make: MakeEvent,
                    reason: ExitReason) -> Event:
        # The label it was counted under: a track's class may change during a visit, and a
        # subscriber tallying enter/exit per label must come back to the occupancy.
        return make("exit", track, zone=self.config.name, label=presence.label,
                    class_id=presence.class_id, dwell_s=max(0.0, time - presence.entered_at),
                    reason=reason)

    def forget(self, track: Track, time: float, make: MakeEvent) -> Event | None:
        """A track that is gone for good: `exit` if it was inside."""
        presence = self._presence.pop(track.track_id, None)
        if presence is None or not presence.inside:
            return None
        return self._exit(track, presence, time, make, "lost")

    def end(self, last: Mapping[int, Track], time: float, make: MakeEvent,
            reason: ExitReason) -> list[Event]:
        """End every visit now (the zone goes, or the camera's tracks restart): an `exit`
        each, so no subscriber keeps an object inside that nobody watches any more.
        `last`: each track as last seen (its box and label go in the event)."""
        events = [self._exit(last[track_id], presence, time, make, reason)
                  for track_id, presence in self._presence.items()
                  if presence.inside and track_id in last]
        self._presence.clear()
        return events

    def take_over(self, old: ZoneEvents, last: Mapping[int, Track], time: float,
                  make: MakeEvent) -> list[Event]:
        """Continue the visits of `old` (this zone before a reload changed it) that are
        still true: the class still counts and, when the shape or anchor moved, the
        track's last anchor lies inside the new polygon. The others end with an `exit`
        (reason zone_changed) at once: the change is a fact, not jitter, so no hysteresis.
        Visits keep their start and dwell."""
        if old._frame_size is not None:  # placed now, so a reload before the next frame
            self.polygon(old._frame_size)  # can still tell who is inside
        visits = [(track_id, presence) for track_id, presence in old._presence.items()
                  if presence.inside and track_id in last]
        old._presence.clear()
        if not visits:
            return []
        place = ("points", "units", "anchor")
        moved = any(getattr(old.config, key) != getattr(self.config, key) for key in place)
        inside = [True] * len(visits)  # the same place: hysteresis goes on as it was
        if moved and self._frame_size is None:  # never placed on a frame: cannot vouch
            inside = [False] * len(visits)
        elif moved:
            boxes = np.stack([last[track_id].box for track_id, _ in visits])
            inside = inside_polygon(anchors(boxes, self.config.anchor), self._edges).tolist()
        events: list[Event] = []
        for (track_id, presence), still_inside in zip(visits, inside, strict=True):
            track = last[track_id]
            counted = self.class_ids is None or track.class_id in self.class_ids
            if counted and still_inside:
                if moved:
                    presence.streak = 0
                self._presence[track_id] = presence
                self.occupancy[presence.label] = self.occupancy.get(presence.label, 0) + 1
            else:
                events.append(self._exit_event(track, presence, time, make, "zone_changed"))
        return events
