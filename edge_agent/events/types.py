"""What `CameraEvents.update` returns: tracks, events and changed occupancy/counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

EventType = Literal["enter", "exit", "dwell", "cross"]
ExitReason = Literal["left", "lost", "zone_removed", "zone_changed", "tracker_changed",
                     "model_changed", "camera_removed", "camera_restarted", "agent_stopped"]
"""Why a visit ended. `left` and `lost` are the object's doing (its anchor left the zone;
its track ended); the others are a change of the configuration or the camera, after which
the agent can no longer vouch that the object is inside, so it says so rather than
leave the visit open forever (docs/events.md, "When the configuration changes")."""
Occupancy = dict[str, dict[str, int]]
"""zone -> label -> tracks inside now."""
Counts = dict[str, dict[str, dict[str, int]]]
"""line -> direction name -> label -> crossings."""


@dataclass(frozen=True)
class Track:
    """One tracked object as seen in the current frame; times are wall-clock epoch seconds."""

    track_id: int  # per camera, from 1, never reused while the agent runs
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in frame pixels
    class_id: int  # the class seen most often on this track
    label: str
    score: float  # this frame's detection score
    first_seen: float
    last_seen: float
    best_score: float
    velocity: tuple[float, float]  # box centre, px/s (smoothed)


def new_event_id() -> str:
    """Unique across restarts and cameras (consumers deduplicate on it)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Event:
    """Something a subscriber acts on: a track entered/left/stayed in a zone or crossed a line."""

    type: EventType
    camera_id: str
    track_id: int
    class_id: int
    label: str
    score: float  # the track's latest detection score
    box: tuple[float, float, float, float]  # px, the track's latest box
    time: float  # wall s of the frame in which the event fired
    first_seen: float  # wall s the track was first seen
    zone: str | None = None
    line: str | None = None
    direction: str | None = None  # a line's direction name (cross only)
    dwell_s: float | None = None  # seconds inside so far (dwell and exit)
    reason: ExitReason | None = None  # exit only: why the visit ended
    event_id: str = field(default_factory=new_event_id)


@dataclass(frozen=True)
class WindowCounts:
    """Crossings in the current window [start, end) of `count_window_s`, aligned to the epoch."""

    start: float
    end: float
    counts: dict[str, dict[str, int]]  # direction name -> label -> crossings


@dataclass
class EventsUpdate:
    """One frame's result. occupancy/counts/window_counts are None when nothing changed."""

    tracks: list[Track]
    track_ids: np.ndarray  # (N,) int64, aligned with the input detections; -1: not tracked
    events: list[Event]
    occupancy: Occupancy | None = None  # every zone, when any zone changed
    counts: Counts | None = None  # every line, since start, when any line changed
    window_counts: dict[str, WindowCounts] | None = None  # lines that have a window
