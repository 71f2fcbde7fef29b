"""Retained occupancy per zone and counts per line of one camera, sent on change.

Counts restart at 0 when the camera's counting starts: the agent's start, the camera's
restart, a reload that adds or changes the line. Each counts message says `since` when;
the events themselves (spooled, each with its id) are the durable record. At that start
every zone and line publishes its zero state, so no stale retained value of an earlier
run (a person "inside" when the agent was killed) outlives it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from edge_agent.config.zones import LineConfig, ZoneConfig
from edge_agent.delivery.payloads import counts_payload, occupancy_payload
from edge_agent.delivery.retained import RetainedStates
from edge_agent.events import EventsUpdate

PerDirection = Mapping[str, Mapping[str, int]]
Window = tuple[float, float, dict[str, dict[str, int]]]
"""A count window: start (wall s), length (s), counts per direction and class."""


_NOT_IN_A_LEVEL = re.compile(r"[/+#%\x00-\x1f\x7f]")


def topic_level(name: str) -> str:
    """`name` (a class name from a labels file or the model: any text) as one MQTT topic
    level: '/', '+', '#', '%' and control characters percent-encoded, so it can neither
    split the topic nor be a wildcard, and two names never share a topic."""
    return _NOT_IN_A_LEVEL.sub(lambda found: f"%{ord(found.group()):02X}", name)


def snapshot_topic(camera_id: str, label: str) -> str:
    """The retained newest snapshot of a camera and class (Home Assistant reads it too)."""
    return f"{camera_id}/snapshot/{topic_level(label)}"


def occupancy_topic(camera_id: str, zone: str) -> str:
    return f"{camera_id}/zones/{zone}/occupancy"


def counts_topic(camera_id: str, line: str) -> str:
    return f"{camera_id}/lines/{line}/counts"


class ShapeStates:
    """The last occupancy and counts of each zone and line, as retained messages."""

    def __init__(self, camera_id: str, retained: RetainedStates) -> None:
        self.camera_id = camera_id
        self._retained = retained
        self._zones: dict[str, ZoneConfig] = {}
        self._lines: dict[str, LineConfig] = {}
        self.since: dict[str, float] = {}
        """Per line: wall time its counts started from 0."""
        self.occupancy: dict[str, dict[str, int]] = {}
        self.counts: dict[str, dict[str, dict[str, int]]] = {}
        self.windows: dict[str, Window] = {}

    def configure(
        self, zones: Sequence[ZoneConfig], lines: Sequence[LineConfig], now: float,
        reset: bool = False, occupancy: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """Take the camera's shapes (start or reload); `reset`: every count restarts.

        A line that is new or changed starts from zero; a new or changed zone sends
        `occupancy` (what CameraEvents kept of it: a changed zone keeps the visits still
        true); one removed has its retained topic deleted on the broker.
        """
        occupancy = occupancy or {}
        new_zones = {zone.name: zone for zone in zones}
        new_lines = {line.name: line for line in lines}
        for name in self._zones.keys() - new_zones.keys():
            self._retained.clear(occupancy_topic(self.camera_id, name))
            self.occupancy.pop(name, None)
        for name in self._lines.keys() - new_lines.keys():
            self._retained.clear(counts_topic(self.camera_id, name))
            for table in (self.counts, self.windows, self.since):
                table.pop(name, None)
        for name, zone in new_zones.items():
            if reset or self._zones.get(name) != zone:
                self.occupancy[name] = {k: int(v) for k, v in occupancy.get(name, {}).items()}
                self._send_occupancy(name, now)
        for name, line in new_lines.items():
            if reset or self._lines.get(name) != line:
                self.since[name] = now
                directions = (line.directions.forward, line.directions.backward)
                self.counts[name] = {direction: {} for direction in directions}
                self.windows.pop(name, None)
                if line.count_window_s is not None:  # windows are aligned to the epoch
                    length = line.count_window_s
                    self.windows[name] = (now - now % length, length,
                                          {direction: {} for direction in directions})
                self._send_counts(name, now)
        self._zones, self._lines = new_zones, new_lines

    def update(self, update: EventsUpdate, now: float) -> None:
        """Take an EventsUpdate's occupancy and counts (None: unchanged) at wall `now`."""
        if update.occupancy is not None:
            self.set_occupancy(update.occupancy, now)
        windows = window_counts(update)
        totals = update.counts or {}
        for line in self._lines:
            counts = _plain(totals[line]) if line in totals else self.counts.get(line)
            window = windows.get(line, self.windows.get(line))
            if counts is None or (counts == self.counts.get(line)
                                  and window == self.windows.get(line)):
                continue
            self.counts[line] = counts
            if window is not None:
                self.windows[line] = window
            self._send_counts(line, now)

    def set_occupancy(self, occupancy: Mapping[str, Mapping[str, int]], now: float) -> None:
        """Send the zones whose occupancy differs from the last sent."""
        for zone, per_label in occupancy.items():
            if zone in self._zones and dict(per_label) != self.occupancy.get(zone):
                self.occupancy[zone] = {k: int(v) for k, v in per_label.items()}
                self._send_occupancy(zone, now)

    def _send_occupancy(self, zone: str, now: float) -> None:
        payload = occupancy_payload(camera_id=self.camera_id, zone=zone,
                                    occupancy=self.occupancy[zone], at=now)
        self._retained.set(occupancy_topic(self.camera_id, zone), payload)

    def _send_counts(self, line: str, now: float) -> None:
        payload = counts_payload(camera_id=self.camera_id, line=line, counts=self.counts[line],
                                 since=self.since.get(line, now), at=now,
                                 window=self.windows.get(line))
        self._retained.set(counts_topic(self.camera_id, line), payload)


def _plain(per_direction: PerDirection) -> dict[str, dict[str, int]]:
    return {direction: {label: int(n) for label, n in per_label.items()}
            for direction, per_label in per_direction.items()}


def window_counts(update: EventsUpdate) -> dict[str, Window]:
    """Per line (window start wall s, length s, counts) from an EventsUpdate; {} if none."""
    raw = update.window_counts or {}
    return {line: (float(window.start), float(window.end - window.start), _plain(window.counts))
            for line, window in raw.items()}
