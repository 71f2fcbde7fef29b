"""`CameraEvents`: one camera's detections -> tracks, zone and line events, occupancy, counts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from edge_agent.camera_filter import class_id
from edge_agent.config.located import did_you_mean
from edge_agent.config.zones import LineConfig, TrackerConfig, ZoneConfig
from edge_agent.events.line_counts import LineCounts
from edge_agent.events.tracking import Tracker
from edge_agent.events.types import (
    Counts,
    Event,
    EventsUpdate,
    EventType,
    ExitReason,
    Occupancy,
    Track,
)
from edge_agent.events.zone_events import ZoneEvents
from engines.base import Detections

log = logging.getLogger(__name__)


def class_filter(classes: Sequence[str | int] | None, labels: Sequence[str],
                 owner: str) -> frozenset[int] | None:
    """Class ids a zone or line counts (None: all). Each name or id resolves as detect and
    masks resolve it (camera_filter.class_id: "traffic light" finds traffic_light, an id
    must be in range), so check-config's warnings and the running agent agree; one the
    model lacks is skipped with a warning."""
    if classes is None:
        return None
    ids: set[int] = set()
    for item in classes:
        found = class_id(item, labels)
        if found is None:
            log.warning("%s: class %r is not one of the model's labels%s; it is ignored",
                        owner, item, did_you_mean(str(item), labels))
        else:
            ids.add(found)
    return frozenset(ids)


class CameraEvents:
    """Per-camera tracking and zone/line logic; call `update` once per processed frame.

    Pure logic, no I/O and no threads: the caller publishes what `update` returns.
    """

    def __init__(self, camera_id: str, zones: Sequence[ZoneConfig],
                 lines: Sequence[LineConfig], tracker_config: TrackerConfig,
                 labels: Sequence[str]) -> None:
        self.camera_id = camera_id
        self.labels = list(labels)
        self.tracker = Tracker(tracker_config, labels)
        self.zones: dict[str, ZoneEvents] = {}
        self.lines: dict[str, LineCounts] = {}
        self._last_tracks: dict[int, Track] = {}
        self._last_time = 0.0  # wall s of the newest frame
        self._occupancy_dirty = self._counts_dirty = self._windows_dirty = True
        self.reconfigure(zones, lines)

    def reconfigure(self, zones: Sequence[ZoneConfig], lines: Sequence[LineConfig],
                    now: float = 0.0) -> list[Event]:
        """Apply reloaded shapes; the exits of the visits the change ended, at wall `now`.

        Unchanged shapes keep their tracks' state and counts; a changed line starts from
        zero; a changed zone keeps the visits still true under its new settings. Every
        other visit ends with an exit saying why, so that no subscriber is left with an
        object inside a zone that moved or went.
        """
        at = max(now, self._last_time)
        make = self._maker(at)
        ended: list[Event] = []
        old_zones, old_lines = self.zones, self.lines
        self.zones, self.lines = {}, {}
        for zone in zones:
            kept = old_zones.pop(zone.name, None)
            if kept is None or kept.config != zone:
                fresh = ZoneEvents(zone, class_filter(zone.classes, self.labels,
                                                      f"zone {zone.name}"))
                # Filtered classes are reported from the start, at 0.
                fresh.occupancy.update({self.tracker.label(i): 0
                                        for i in sorted(fresh.class_ids or ())})
                if kept is not None:
                    ended += fresh.take_over(kept, self._last_tracks, at, make)
                kept = fresh
            self.zones[zone.name] = kept
        for removed in old_zones.values():
            ended += removed.end(self._last_tracks, at, make, "zone_removed")
        for line in lines:
            kept_line = old_lines.get(line.name)
            if kept_line is None or kept_line.config != line:
                kept_line = LineCounts(line, class_filter(line.classes, self.labels,
                                                          f"line {line.name}"))
            self.lines[line.name] = kept_line
        self._occupancy_dirty = self._counts_dirty = self._windows_dirty = True
        return ended

    def end(self, reason: ExitReason, now: float = 0.0) -> list[Event]:
        """Exits for every visit in progress, at wall `now`: the caller drops this camera's
        tracks (tracker or model changed, camera restarted or removed). Occupancy goes
        to 0."""
        at = max(now, self._last_time)
        make = self._maker(at)
        ended = [event for zone in self.zones.values()
                 for event in zone.end(self._last_tracks, at, make, reason)]
        self._occupancy_dirty = True
        return ended

    def _maker(self, at: float) -> Callable[..., Event]:
        """Builds this camera's events at wall time `at` from a track and where it is."""
        def make(kind: EventType, track: Track, *, label: str | None = None,
                 class_id: int | None = None, **where: Any) -> Event:
            """An exit names the class its visit was counted under (`label`, `class_id`)."""
            return Event(type=kind, camera_id=self.camera_id, track_id=track.track_id,
                         class_id=track.class_id if class_id is None else class_id,
                         label=label or track.label, score=track.score,
                         box=tuple(float(v) for v in track.box),  # type: ignore[arg-type]
                         time=at, first_seen=track.first_seen, **where)
        return make

    def update(self, detections: Detections, frame_size: tuple[int, int], captured_at: float,
               captured_mono: float) -> EventsUpdate:
        """Track this frame's detections and return what happened.

        detections: boxes (N, 4) in frame pixels; frame_size: (width, height);
        captured_at: wall-clock epoch s (event times); captured_mono: monotonic s (unused
        today: dwell is measured on the wall clock of the frames, which a file camera with
        realtime: false advances at the file's rate).
        """
        del captured_mono
        tracks, track_ids = self.tracker.update(detections, captured_at)
        self._last_time = captured_at
        events: list[Event] = []
        make = self._maker(captured_at)

        boxes = np.stack([t.box for t in tracks]) if tracks else np.zeros((0, 4), np.float32)
        for zone in self.zones.values():
            found = zone.update(tracks, boxes, frame_size, captured_at, make)
            self._occupancy_dirty |= any(e.type != "dwell" for e in found)
            events += found
        for line in self.lines.values():
            self._windows_dirty |= line.roll_window(captured_at)
            found = line.update(tracks, boxes, frame_size, make)
            self._counts_dirty |= bool(found)
            self._windows_dirty |= bool(found) and line.window is not None
            events += found
        self._last_tracks.update({t.track_id: t for t in tracks})
        for gone in self.tracker.expire():
            last = self._last_tracks.pop(gone.track_id, None)
            if last is None:
                continue
            for zone in self.zones.values():
                exit_event = zone.forget(last, captured_at, make)
                if exit_event is not None:
                    events.append(exit_event)
                    self._occupancy_dirty = True
            for line in self.lines.values():
                line.forget(gone.track_id)
        return EventsUpdate(tracks, track_ids, events, *self._changes())

    def _changes(self) -> tuple[Occupancy | None, Counts | None, dict[str, Any] | None]:
        occupancy = counts = windows = None
        if self._occupancy_dirty:
            occupancy = {name: dict(zone.occupancy) for name, zone in self.zones.items()}
        if self._counts_dirty:
            counts = self.counts()
        if self._windows_dirty:
            windows = {name: replace(line.window, counts=_copy(line.window.counts))
                       for name, line in self.lines.items() if line.window is not None}
        self._occupancy_dirty = self._counts_dirty = self._windows_dirty = False
        return occupancy, counts, windows

    def occupancy(self) -> Occupancy:
        """Zone -> label -> tracks inside now (for a status page or a retained resend)."""
        return {name: dict(zone.occupancy) for name, zone in self.zones.items()}

    def counts(self) -> Counts:
        """Line -> direction -> label -> crossings since start."""
        return {name: _copy(line.totals) for name, line in self.lines.items()}


def _copy(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {direction: dict(per_label) for direction, per_label in counts.items()}

