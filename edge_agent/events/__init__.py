"""Detections to events: tracking, zones (enter/exit/dwell, occupancy) and counting lines.

Pure logic, no MQTT and no threads: `CameraEvents.update` takes one frame's detections and
returns tracks, events and changed occupancy/counts (docs/events.md).
"""

from edge_agent.events.camera import CameraEvents
from edge_agent.events.types import Event, EventsUpdate, Track, WindowCounts

__all__ = ["CameraEvents", "Event", "EventsUpdate", "Track", "WindowCounts"]
