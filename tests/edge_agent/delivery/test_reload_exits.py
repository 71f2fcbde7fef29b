"""Every reload change that ends an object's visit to a zone leaves subscribers with a
true picture: an `exit` with the reason, and retained occupancy (and counts) updated or
deleted. Table-driven over the kind: a zone removed, renamed, its polygon or classes
changed, the tracker changed, events off, a model with other names, the camera removed
or restarted; and a change that keeps the visits true sends none.

Real Mosquitto and the real Publisher; the frames are scripted boxes (two objects that
stand still), so each case knows exactly which visits are open when the change comes.
The end-to-end reload with the agent and real video is in test_reload_events.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edge_agent.capture.camera import Frame
from edge_agent.config.model import CameraBase
from edge_agent.delivery.camera import CameraDelivery
from edge_agent.publish.publisher import Publisher
from engines.base import Detections
from engines.detector import Detected
from tests.helpers import DEVICE, Broker, Collector, config_for, subscribed, wait_until

LABELS = ("person", "bicycle", "car")
WIDTH, HEIGHT = 640, 360
HALF = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]  # x 0..320 px
QUARTER = [[0, 0], [0.25, 0], [0.25, 1], [0, 1]]  # x 0..160 px: the person, not the car
BAY = {"name": "bay", "points": HALF, "min_frames": 1}
YARD = {"name": "yard", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "min_frames": 1}
GATE = {"name": "gate", "points": [[0.75, 0], [0.75, 1]]}
BEFORE = {"zones": [BAY, YARD], "lines": [GATE]}
# A person with its feet at x=100 and a car at x=250: both inside bay and yard.
OBJECTS = (np.array([[80, 200, 120, 300], [220, 250, 280, 300]], np.float32),
           np.array([0, 2], np.int32))


@dataclass
class Scene:
    """One camera's delivery on the real publisher, fed frames of two standing objects."""

    delivery: CameraDelivery
    frames: int = 0
    start: float = field(default_factory=lambda: time.time() - 10.0)

    def run(self, count: int) -> None:
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        boxes, classes = OBJECTS
        for _ in range(count):
            at = self.start + self.frames * 0.1
            detections = Detections(boxes, np.full(len(boxes), 0.9, np.float32), classes)
            frame = Frame("yard", self.frames, image, at, 1.0, captured_mono=100 + at % 1e4)
            self.delivery.on_frame(frame, detections, Detected(detections, WIDTH, HEIGHT,
                                                               1.0, 5.0, 1.0))
            self.frames += 1

    def reload(self, **events: object) -> None:
        self.delivery.reconfigure(camera(**events))


def camera(**events: object) -> CameraBase:
    return CameraBase.model_validate({"id": "yard", **events})


@dataclass(frozen=True)
class Case:
    change: Callable[[Scene], None]
    exits: set[tuple[str, str, str]]
    """(zone, label, reason) of the exits the change makes."""
    retained: dict[str, dict[str, int] | None]
    """What a subscriber that connects afterwards reads: zone -> occupancy (None: deleted)."""
    frames_after: int = 3
    counts_deleted: bool = False


def relabel(scene: Scene) -> None:
    scene.delivery.relabel(["forklift", "pallet", "truck"])


BOTH = {"person": 1, "car": 1}
CASES = {
    "zone removed": Case(
        lambda s: s.reload(zones=[YARD], lines=[GATE]),
        {("bay", "person", "zone_removed"), ("bay", "car", "zone_removed")},
        {"bay": None, "yard": BOTH}),
    "zone renamed": Case(  # the old name's visits end; the new name's begin
        lambda s: s.reload(zones=[{**BAY, "name": "dock"}, YARD], lines=[GATE]),
        {("bay", "person", "zone_removed"), ("bay", "car", "zone_removed")},
        {"bay": None, "dock": BOTH, "yard": BOTH}),
    "polygon shrunk off the car": Case(
        lambda s: s.reload(zones=[{**BAY, "points": [[0, 0], [0.25, 0], [0.25, 1], [0, 1]]},
                                  YARD], lines=[GATE]),
        {("bay", "car", "zone_changed")},
        {"bay": {"person": 1}, "yard": BOTH}),
    "polygon changed, both still inside": Case(
        lambda s: s.reload(zones=[{**BAY, "points": [[0, 0], [0.6, 0], [0.6, 1], [0, 1]],
                                   "dwell_s": 60}, YARD], lines=[GATE]),
        set(), {"bay": BOTH, "yard": BOTH}),
    "only min_frames and dwell_s changed": Case(
        lambda s: s.reload(zones=[{**BAY, "min_frames": 5, "dwell_s": 0.1}, YARD],
                           lines=[GATE]),
        set(), {"bay": BOTH, "yard": BOTH}),
    "anchor moved off the car": Case(  # tops: person y=200 inside, car y=250 below
        lambda s: s.reload(zones=[{**BAY, "anchor": "top_center",
                                   "points": [[0, 0], [0.5, 0], [0.5, 0.65], [0, 0.65]]},
                                  YARD], lines=[GATE]),
        {("bay", "car", "zone_changed")},
        {"bay": {"person": 1}, "yard": BOTH}),
    "classes no longer count the car": Case(
        lambda s: s.reload(zones=[{**BAY, "classes": ["person"]}, YARD], lines=[GATE]),
        {("bay", "car", "zone_changed")},
        {"bay": {"person": 1}, "yard": BOTH}),
    "two reloads, no frame between: kept, then shrunk off the car": Case(
        lambda s: (s.reload(zones=[{**BAY, "min_frames": 3}, YARD], lines=[GATE]),
                   s.reload(zones=[{**BAY, "min_frames": 3, "points": QUARTER}, YARD],
                            lines=[GATE])),
        {("bay", "car", "zone_changed")},
        {"bay": {"person": 1}, "yard": BOTH}),
    "two reloads, no frame between: moved twice": Case(
        lambda s: (s.reload(zones=[{**BAY, "points": [[0, 0], [0.6, 0], [0.6, 1], [0, 1]]},
                                   YARD], lines=[GATE]),
                   s.reload(zones=[{**BAY, "points": QUARTER}, YARD], lines=[GATE])),
        {("bay", "car", "zone_changed")},
        {"bay": {"person": 1}, "yard": BOTH}),
    "tracker changed": Case(  # tracks restart: new ids enter again on the next frames
        lambda s: s.reload(zones=[BAY, YARD], lines=[GATE], tracker={"max_missed_frames": 20}),
        {(z, label, "tracker_changed") for z in ("bay", "yard") for label in BOTH},
        {"bay": BOTH, "yard": BOTH}),
    "events off": Case(
        lambda s: s.reload(),
        {(z, label, "zone_removed") for z in ("bay", "yard") for label in BOTH},
        {"bay": None, "yard": None}, counts_deleted=True),
    "model with other names": Case(
        relabel,
        {(z, label, "model_changed") for z in ("bay", "yard") for label in BOTH},
        {"bay": {"forklift": 1, "truck": 1}, "yard": {"forklift": 1, "truck": 1}}),
    "camera removed": Case(
        lambda s: s.delivery.close("camera_removed", removed=True),
        {(z, label, "camera_removed") for z in ("bay", "yard") for label in BOTH},
        {"bay": None, "yard": None}, frames_after=0, counts_deleted=True),
    "camera restarted": Case(
        lambda s: s.delivery.close("camera_restarted", removed=False),
        {(z, label, "camera_restarted") for z in ("bay", "yard") for label in BOTH},
        {"bay": {"person": 0, "car": 0}, "yard": {"person": 0, "car": 0}}, frames_after=0),
}


def open_visits(events: list[dict]) -> dict[str, int]:
    """Per zone, the visits a subscriber that pairs enter with exit believes open; an
    enter of a visit already open, or an exit of none, is a broken stream."""
    inside: dict[str, set[int]] = {}
    for event in events:
        tracks, track = inside.setdefault(event["zone"], set()), event["track_id"]
        if event["type"] == "enter":
            assert track not in tracks, f"a second enter without an exit: {event}"
            tracks.add(track)
        elif event["type"] == "exit":
            assert track in tracks, f"an exit without an enter: {event}"
            tracks.remove(track)
    return {zone: len(tracks) for zone, tracks in inside.items()}


def retained_now(broker: Broker, topic: str, expected: int) -> dict[str, bytes]:
    """The retained messages a subscriber that connects now gets: topic -> payload."""
    late = subscribed(broker, topic)
    try:
        late.wait_for("", count=expected, timeout=5)
        time.sleep(0.3)  # nothing more is coming
        with late.lock:
            return {m.topic: m.payload for m in late.messages}
    finally:
        late.client.loop_stop()
        late.client.disconnect()


def occupancy(payload: bytes) -> dict[str, int]:
    return json.loads(payload)["occupancy"]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_reload_that_ends_visits_says_so(
    case: Case, tmp_path: Path, broker: Broker, subscribe, unique_prefix: str, publishers,
) -> None:
    base = f"{unique_prefix}/{DEVICE}/yard"
    live: Collector = subscribe(f"{base}/#")
    publisher: Publisher = publishers(config_for(broker, unique_prefix))
    publisher.start()
    wait_until(lambda: publisher.connected)
    scene = Scene(CameraDelivery(camera(**BEFORE), LABELS, publisher, tmp_path))
    scene.run(3)
    live.wait_for("/events", count=4)  # both objects entered both zones
    before = len(live.on_topic("/events"))

    case.change(scene)
    scene.run(case.frames_after)

    wait_until(lambda: len(live.on_topic("/events")) >= before + len(case.exits), timeout=10)
    time.sleep(0.3)  # and no more than those
    events = live.json_on("/events")
    after = events[before:]
    exits = {(e["zone"], e["label"], e.get("reason")) for e in after if e["type"] == "exit"}
    assert exits == case.exits
    assert len([e for e in after if e["type"] == "exit"]) == len(case.exits)
    for event in after:
        if event["type"] == "exit":
            assert event["dwell_s"] >= 0.0
            assert event["frame"] == {"width": WIDTH, "height": HEIGHT}
    assert all(e.get("reason") is None for e in events if e["type"] != "exit")

    kept = {z: o for z, o in case.retained.items() if o is not None}
    retained = retained_now(broker, f"{base}/+/+/+", len(kept) + (not case.counts_deleted))
    got = {topic.split("/")[-2]: occupancy(payload) for topic, payload in retained.items()
           if topic.endswith("/occupancy")}
    assert got == kept
    assert (f"{base}/lines/gate/counts" in retained) is not case.counts_deleted
    # A subscriber pairing enter with exit sees exactly what the retained state says.
    pairs = open_visits(events)
    for zone in {*pairs, *case.retained}:
        assert pairs.get(zone, 0) == sum(got.get(zone, {}).values()), (zone, pairs, got)
