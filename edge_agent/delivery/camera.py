"""One camera's delivery: detections -> tracks, zones, lines (edge_agent.events) -> MQTT.

The pipeline calls `CameraDelivery.on_frame` once per processed frame, in frame order,
on its own thread. It runs the camera's `CameraEvents`, sends each event through the
durable spool (Publisher.publish_event), keeps occupancy, counts and the last snapshot
per class as retained messages, and says whether this frame's detections message goes
out (`publish.detections`) and with which track ids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_agent.capture.camera import Frame
from edge_agent.config.model import AgentConfig, CameraConfig
from edge_agent.delivery.detections_mode import DetectionsMode
from edge_agent.delivery.payloads import SnapshotRef, event_payload
from edge_agent.delivery.rate import EventRate
from edge_agent.delivery.retained import RetainedSink, RetainedStates
from edge_agent.delivery.shapes import ShapeStates, snapshot_topic
from edge_agent.delivery.snapshots import SnapshotStore, file_name, render
from edge_agent.events import CameraEvents
from edge_agent.events.types import Event, ExitReason
from edge_agent.health.snapshot import EventsHealth
from engines.base import Detections
from engines.detector import Detected

log = logging.getLogger(__name__)

MAX_SNAPSHOTS_PER_FRAME = 8
"""A crowd crossing at once makes many events in one frame; past this many, the rest go
out without a snapshot (and say so), so one frame never stalls the camera for long."""
ERROR_LOG_S = 10.0


class EventSink(RetainedSink, Protocol):
    """The publisher as delivery uses it."""

    def publish_event(self, camera_id: str, payload: bytes) -> bool: ...


@dataclass(frozen=True)
class FrameOutcome:
    """What the pipeline does with this frame's detections message."""

    publish_detections: bool
    track_ids: np.ndarray | None
    """(N,) aligned with the detections, -1 where not tracked; None: tracking is off."""


def warn_if_events_can_be_lost(config: AgentConfig) -> None:
    """Events share the detections' QoS: at 0 one the broker never got is lost; say so."""
    if config.mqtt.qos == 0 and any(cam.zones or cam.lines for cam in config.cameras):
        log.warning("mqtt.qos is 0: an event sent as the broker goes away can be lost; "
                    "use qos 1 for events (docs/events.md)")


def tracking_wanted(camera: CameraConfig) -> bool:
    """Tracking runs for zones, lines, or on_change detections (which compare track ids)."""
    return bool(camera.zones or camera.lines) or camera.publish.detections == "on_change"


class CameraDelivery:
    """Turns one camera's detections into events and state messages; see module doc."""

    def __init__(
        self, camera: CameraConfig, labels: Sequence[str], sink: EventSink, state_dir: Path
    ) -> None:
        self.camera_id = camera.id
        self.labels = tuple(labels)
        self._sink = sink
        self._snapshot_root = state_dir / "snapshots"
        self._retained = RetainedStates(sink)
        self.rate = EventRate()
        self.events_total = 0
        self.events_not_delivered = 0
        self.tracks = 0
        self.last_error: str | None = None
        self._error_logged_at = float("-inf")
        self._camera = camera
        self._events: CameraEvents | None = None
        self._shapes = ShapeStates(camera.id, self._retained)
        self._store: SnapshotStore | None = None
        self._mode = DetectionsMode(camera.publish)
        # The newest frame's size and clock: for the exits a reload sends between frames.
        self._frame_size: tuple[int, int] | None = None
        self._clock_synced = True
        self._lock = threading.Lock()  # the pipeline runs frames, a reload reconfigures
        self._apply(camera, first=True)

    # -- configuration -----------------------------------------------------------------

    def _apply(self, camera: CameraConfig, first: bool = False) -> list[Event]:
        """Take the camera's settings; the exits of the visits the change ended."""
        old = self._camera
        self._camera = camera
        if camera.publish != old.publish or first:
            self._mode = DetectionsMode(camera.publish)
        snapshots = camera.snapshots
        if snapshots.enabled and (self._store is None or self._store.keep != snapshots.keep):
            self._store = SnapshotStore(self._snapshot_root / camera.id, snapshots.keep)
        elif not snapshots.enabled:
            self._store = None
        now = time.time()
        ended: list[Event] = []
        if self._events is not None:  # removed and changed zones first, with their reason
            ended = self._events.reconfigure(camera.zones, camera.lines, now)
            if camera.tracker != old.tracker:  # every track restarts
                ended += self._events.end("tracker_changed", now)
        if not tracking_wanted(camera):
            self._events = None
        elif self._events is None or camera.tracker != old.tracker:
            self._events = CameraEvents(camera.id, camera.zones, camera.lines, camera.tracker,
                                        self.labels)
        self._shapes.configure(camera.zones, camera.lines, now,
                               reset=first or camera.tracker != old.tracker,
                               occupancy=self._events.occupancy() if self._events else {})
        return ended

    def reconfigure(self, camera: CameraConfig) -> None:
        """Apply new zones, lines, tracker, snapshot and publish settings (a reload) on the
        running camera: shapes that did not change keep their tracks and counts; each visit
        the change ends gets its exit now, not never."""
        with self._lock:
            self._publish(self._apply(camera))
            self._flush()
        log.info("camera %s: events reconfigured (%d zones, %d lines)", camera.id,
                 len(camera.zones), len(camera.lines))

    def relabel(self, labels: Sequence[str]) -> None:
        """Take a new model's class names (a model swap, edge_agent.models): events,
        occupancy, counts, zone and line class filters and snapshot topics use them from
        the next frame. Tracks and counts restart (as on a tracker change): class ids of
        the model before mean nothing to the new one. The same names: nothing changes."""
        labels = tuple(labels)
        with self._lock:
            if labels == self.labels:
                return
            old, self.labels = self.labels, labels
            if self._events is not None:
                camera, now = self._camera, time.time()
                self._publish(self._events.end("model_changed", now))
                self._events = CameraEvents(camera.id, camera.zones, camera.lines,
                                            camera.tracker, self.labels)
                self._shapes.configure(camera.zones, camera.lines, now, reset=True,
                                       occupancy=self._events.occupancy())
        log.info("camera %s: the model's class names changed (%d -> %d): events follow them; "
                 "tracks and counts restart", self.camera_id, len(old), len(labels))

    def close(self, reason: ExitReason, *, removed: bool) -> None:
        """The camera stops for good, for a restart (a reload) or with the agent (its
        pipeline has drained):
        every visit ends with an exit, occupancy goes to 0, and a removed camera's zone and
        line topics are deleted, so subscribers never keep a stale "occupied"."""
        with self._lock:
            if self._events is not None:
                now = time.time()
                self._publish(self._events.end(reason, now))
                if not removed:  # the restarted camera's counts start again from its own start
                    self._shapes.set_occupancy(self._events.occupancy(), now)
                self._events = None
                self.tracks = 0  # every visit ended
            if removed:  # zones, lines and snapshots: no retained state outlives the camera
                self._retained.clear_all()
            self._flush()

    def unsent_retained(self) -> dict[str, bytes]:
        """Retained states and deletes the broker has not got (it was away at `close`):
        the agent keeps sending them (Agent.removed_topics), or a camera with this id
        takes them over (`adopt_retained`)."""
        with self._lock:
            return self._retained.unsent()

    def flush_retained(self) -> None:
        """Send what the broker lacks now, frame or not (the agent's main loop calls it):
        a camera that cannot open still gets its zeros out, and the deletes it took over,
        once the broker is back."""
        with self._lock:
            self._flush()

    def adopt_retained(self, pending: dict[str, bytes]) -> None:
        """Send the deletes an earlier camera of this id left unsent, except on topics this
        one publishes itself."""
        with self._lock:
            self._retained.adopt(pending)
            self._flush()

    def _flush(self) -> None:
        try:
            self._retained.flush()
        except Exception as exc:  # retained state is an extra: never lose the frame
            self._failed("retained state not published", exc)

    # -- per frame (the pipeline thread) -----------------------------------------------

    def on_frame(self, frame: Frame, detections: Detections, detected: Detected) -> FrameOutcome:
        """Run events on one frame's detections; what to do with its detections message."""
        size = (int(detected.frame_width), int(detected.frame_height))
        track_ids = None
        with self._lock:
            if self._events is not None:
                try:
                    track_ids = self._update(frame, detections, size)
                except Exception as exc:  # a tracking fault loses this frame's events only
                    self._failed("events failed", exc)
            self._flush()
            labels: list[str] = []
            if self._mode.config.detections == "on_change":
                names = self.labels
                labels = [names[c] if 0 <= c < len(names) else str(c)
                          for c in np.asarray(detections.class_ids, dtype=np.int64).tolist()]
            publish = self._mode.wants(labels, track_ids, frame.captured_mono)
        return FrameOutcome(publish, track_ids)

    def _update(self, frame: Frame, detections: Detections, size: tuple[int, int]) -> np.ndarray:
        assert self._events is not None
        update = self._events.update(detections, size, frame.captured_at, frame.captured_mono)
        self._frame_size, self._clock_synced = size, frame.clock_synced
        self.tracks = len(update.tracks)
        self._publish(update.events, frame)
        self._shapes.update(update, frame.captured_at)
        return np.asarray(update.track_ids, dtype=np.int64).reshape(-1)

    def _publish(self, events: list[Event], frame: Frame | None = None) -> None:
        """Send events through the spool. `frame` None: a reload ended them between two
        frames (the newest frame's size gives the boxes' scale; no snapshot)."""
        size = self._frame_size
        if not events or size is None:  # no frame yet: no track, no event
            return
        snapshots_left = MAX_SNAPSHOTS_PER_FRAME
        for event in events:
            ref = None
            if self._store is not None:
                if frame is None:
                    ref = SnapshotRef(error=f"no snapshot: the visit ended by {event.reason}, "
                                      "not in a frame")
                elif snapshots_left > 0:
                    ref = self._snapshot(frame, event)
                    snapshots_left -= 1
                else:
                    ref = SnapshotRef(error=f"more than {MAX_SNAPSHOTS_PER_FRAME} events in "
                                      "one frame: no snapshot for the rest")
            payload = event_payload(event, frame_size=size, clock_synced=self._clock_synced,
                                    snapshot=ref)
            self.events_total += 1
            self.rate.add(frame.captured_mono if frame is not None else time.monotonic())
            if not self._sink.publish_event(self.camera_id, payload):
                self.events_not_delivered += 1

    def _snapshot(self, frame: Frame, event: Event) -> SnapshotRef:
        """Render, store and (retained) publish one event's snapshot; never raises."""
        assert self._store is not None
        config = self._camera.snapshots
        label = event.label
        try:
            rendered = render(frame.image, event.box, f"{label} #{event.track_id}", config)
        except Exception as exc:  # a bad box or frame: the event still goes out
            return SnapshotRef(error=f"cannot render a snapshot: {type(exc).__name__}: {exc}")
        event_id, at = event.event_id, float(event.time)
        files: dict[str, str | None] = {"frame": None, "crop": None}
        error = None
        for kind, jpeg in (("frame", rendered.frame), ("crop", rendered.crop)):
            if jpeg is None:
                continue
            files[kind] = self._store.save(file_name(event_id, at, label, kind), jpeg)
            if files[kind] is None:
                error = self._store.last_error
        topic = None
        if rendered.primary is not None:
            topic = snapshot_topic(self.camera_id, label)
            self._retained.set(topic, rendered.primary)
        return SnapshotRef(file=files["frame"], crop_file=files["crop"],
                           topic=topic, error=error)

    def _failed(self, what: str, exc: Exception) -> None:
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._error_logged_at >= ERROR_LOG_S:
            self._error_logged_at = now
            log.error("camera %s: %s", self.camera_id, self.last_error, exc_info=exc)

    # -- health ------------------------------------------------------------------------

    def stats(self) -> EventsHealth | None:
        """None while the camera does not track (no zones, lines or on_change). After
        `close` its counters stay: the agent's last health message still reports them."""
        if not tracking_wanted(self._camera):
            return None
        store = self._store
        return EventsHealth(
            events_per_s=round(self.rate.per_second(time.monotonic()), 3),
            events_total=self.events_total, events_not_delivered=self.events_not_delivered,
            tracks=self.tracks,
            snapshots_written=store.written if store else 0,
            snapshots_failed=store.failed if store else 0,
            snapshot_error=store.last_error if store else None,
            error=self.last_error,
        )
