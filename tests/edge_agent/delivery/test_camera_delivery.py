"""CameraDelivery frame by frame, with the real CameraEvents: what goes to the spool, what
is retained, which detection frames go out, and what a reconfigure keeps. The publisher
is a recorder of the three calls delivery makes (the real one is in the end-to-end test)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from edge_agent.capture.camera import Frame
from edge_agent.config.model import CameraBase
from edge_agent.delivery.camera import CameraDelivery
from edge_agent.delivery.shapes import snapshot_topic, topic_level
from engines.base import Detections
from engines.detector import Detected

LABELS = ("person", "bicycle", "car")
WIDTH, HEIGHT = 640, 360
LINE = {"name": "gate", "points": [[0.5, 0.0], [0.5, 1.0]],
        "directions": {"forward": "in", "backward": "out"}}
ZONE = {"name": "bay", "points": [[0.0, 0.0], [0.3, 0.0], [0.3, 1.0], [0.0, 1.0]],
        "min_frames": 1}


class Recorder:
    """The Publisher calls delivery makes, recorded; always connected."""

    connected = True
    disconnects = 0

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.retained: dict[str, bytes] = {}

    def publish_event(self, camera_id: str, payload: bytes) -> bool:
        self.events.append(json.loads(payload))
        return True

    def publish_retained(self, subtopic: str, payload: bytes) -> bool:
        self.retained[subtopic] = payload
        return True

    def state(self, subtopic: str) -> dict | None:
        payload = self.retained.get(subtopic)
        return json.loads(payload) if payload else None


def camera(**events: object) -> CameraBase:
    return CameraBase.model_validate({"id": "yard", **events})


def walk(delivery: CameraDelivery, xs: list[float], start: float = 1_764_480_000.0,
         label: int = 0) -> list:
    """One person (class `label`) with its feet at each x in turn, 0.1 s apart."""
    outcomes = []
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for i, x in enumerate(xs):
        boxes = np.array([[x - 20, 200, x + 20, 300]], np.float32)
        detections = Detections(boxes, np.array([0.9], np.float32), np.array([label], np.int32))
        frame = Frame("yard", i, image, start + i * 0.1, 1.0, captured_mono=100 + i * 0.1)
        detected = Detected(detections, WIDTH, HEIGHT, 1.0, 5.0, 1.0)
        outcomes.append(delivery.on_frame(frame, detections, detected))
    return outcomes


def test_without_events_nothing_changes(tmp_path: Path) -> None:
    sink = Recorder()
    delivery = CameraDelivery(camera(), LABELS, sink, tmp_path)
    outcomes = walk(delivery, [100, 200, 400, 500])
    assert all(o.publish_detections and o.track_ids is None for o in outcomes)
    assert sink.events == []
    assert sink.retained == {}
    assert delivery.stats() is None  # health shows events: null


def test_a_crossing_is_one_event_and_a_count(tmp_path: Path) -> None:
    sink = Recorder()
    delivery = CameraDelivery(camera(lines=[LINE]), LABELS, sink, tmp_path)
    assert sink.retained == {}  # sent with the first frame, not from the constructor
    outcomes = walk(delivery, [250, 280, 310, 340, 370, 400])
    assert [(e["type"], e["line"], e["direction"]) for e in sink.events] == [
        ("cross", "gate", "in")]
    assert sink.events[0]["snapshot"] is None  # snapshots are off
    ids = {int(o.track_ids[0]) for o in outcomes}
    assert len(ids) == 1
    assert sink.events[0]["track_id"] in ids
    counts = sink.state("yard/lines/gate/counts")
    assert counts["counts"] == {"in": {"person": 1}, "out": {}}
    assert delivery.stats().events_total == 1


def test_reconfigure_keeps_what_did_not_change(tmp_path: Path) -> None:
    sink = Recorder()
    delivery = CameraDelivery(camera(lines=[LINE], zones=[ZONE]), LABELS, sink, tmp_path)
    walk(delivery, list(range(150, 401, 10)))  # leaves the zone, crosses in
    since = sink.state("yard/lines/gate/counts")["since"]
    assert sink.state("yard/zones/bay/occupancy")["total"] == 0
    moved = {**LINE, "name": "gate2"}
    delivery.reconfigure(camera(lines=[LINE, moved], publish={"detections": "off"}))
    outcomes = walk(delivery, [410, 420], start=1_764_480_010.0)
    assert not any(o.publish_detections for o in outcomes)
    assert sink.retained["yard/zones/bay/occupancy"] == b""  # removed: cleared
    kept = sink.state("yard/lines/gate/counts")
    assert kept["counts"] == {"in": {"person": 1}, "out": {}}
    assert kept["since"] == since
    assert sink.state("yard/lines/gate2/counts")["counts"] == {"in": {}, "out": {}}


def test_on_change_publishes_new_objects_and_keepalives(tmp_path: Path) -> None:
    delivery = CameraDelivery(camera(publish={"detections": "on_change", "keepalive_s": 0.5}),
                              LABELS, Recorder(), tmp_path)
    outcomes = walk(delivery, [100 + i for i in range(12)])  # one object, 1.1 s
    sent = [i for i, o in enumerate(outcomes) if o.publish_detections]
    assert sent == [0, 5, 10]  # first, then every 0.5 s unchanged
    assert all(o.track_ids is not None for o in outcomes)


def test_snapshots_on_events(tmp_path: Path) -> None:
    sink = Recorder()
    delivery = CameraDelivery(camera(lines=[LINE], snapshots={"enabled": True, "keep": 1}),
                              LABELS, sink, tmp_path)
    walk(delivery, [*range(260, 390, 10), *range(380, 250, -10)])  # in, then out
    files = [e["snapshot"]["file"] for e in sink.events]
    assert len(files) == 2
    assert all(f.startswith("yard/") for f in files)
    assert sorted(p.name for p in (tmp_path / "snapshots" / "yard").iterdir()) == [
        files[-1].split("/")[1]]  # keep: 1
    assert sink.retained["yard/snapshot/person"][:2] == b"\xff\xd8"  # a JPEG


@pytest.mark.parametrize(("label", "level"), [
    ("person", "person"), ("per+son", "per%2Bson"), ("a/b", "a%2Fb"), ("#", "%23"),
    ("100%", "100%25"), ("tab\there", "tab%09here"), ("traffic light", "traffic light"),
    ("chien ü", "chien ü"),
])
def test_a_class_name_is_one_safe_topic_level(label: str, level: str) -> None:
    """Class names come from labels files and models: any text. A '+' in one once made
    every frame of the camera fail (paho refuses wildcards in a topic)."""
    assert topic_level(label) == level
    assert snapshot_topic("gate", label) == f"gate/snapshot/{level}"


def test_topic_levels_never_hold_a_separator_or_wildcard_and_never_collide() -> None:
    rng = random.Random(5)
    alphabet = "ab/+#% \t\x00é"
    names = {"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6)))
             for _ in range(3000)}
    levels = {topic_level(name) for name in names}
    assert len(levels) == len(names)
    assert not any(set("/+#\x00\t") & set(level) for level in levels)


def test_a_model_swap_relabels_events_occupancy_filters_and_snapshots(tmp_path: Path) -> None:
    """After a model swap with other class names (edge_agent.pipeline takes the engine and
    relabels), events, counts, occupancy, zone class filters and snapshot topics use the
    new names from the next frame on."""
    sink = Recorder()
    zone = {**ZONE, "classes": ["forklift"]}
    delivery = CameraDelivery(
        camera(lines=[LINE], zones=[zone], snapshots={"enabled": True, "keep": 4}),
        LABELS, sink, tmp_path)
    walk(delivery, list(range(150, 401, 10)))  # class 0: a person crosses in
    assert [(e["type"], e["label"]) for e in sink.events] == [("cross", "person")]
    assert "yard/snapshot/person" in sink.retained

    delivery.relabel(["forklift", "pallet"])
    assert delivery.labels == ("forklift", "pallet")
    since = sink.state("yard/lines/gate/counts")["since"]
    sink.events.clear()
    walk(delivery, list(range(150, 401, 10)), start=1_764_480_010.0)  # class 0 again
    labels = {e["label"] for e in sink.events}
    assert labels == {"forklift"}, sink.events
    types = [e["type"] for e in sink.events]
    assert "cross" in types
    assert "enter" in types  # the zone's class filter now knows "forklift"
    assert "yard/snapshot/forklift" in sink.retained
    counts = sink.state("yard/lines/gate/counts")
    assert counts["counts"] == {"in": {"forklift": 1}, "out": {}}  # restarted: no person
    assert counts["since"] > since
    assert "person" not in json.dumps(sink.state("yard/zones/bay/occupancy"))

    sink.events.clear()
    delivery.relabel(("forklift", "pallet"))  # the same names: tracks and counts go on
    assert sink.state("yard/lines/gate/counts")["counts"] == {"in": {"forklift": 1}, "out": {}}


class Offline(Recorder):
    """A Recorder whose broker is away until `connected` is set."""

    connected = False

    def publish_retained(self, subtopic: str, payload: bytes) -> bool:
        return self.connected and super().publish_retained(subtopic, payload)


def test_a_removed_cameras_unsent_deletes_outlive_it(tmp_path: Path) -> None:
    """Removed while the broker is away: every retained topic it had (zone, line,
    snapshot) is a delete still to send, handed to the agent; a camera added again with the
    same id takes them over, but keeps its own states on the topics it publishes."""
    sink = Offline()
    cam = camera(zones=[ZONE], lines=[LINE], snapshots={"enabled": True, "keep": 1})
    first = CameraDelivery(cam, LABELS, sink, tmp_path)
    walk(first, [*range(260, 390, 10), *range(380, 250, -10)])  # an event: a snapshot
    first.close("camera_removed", removed=True)
    pending = first.unsent_retained()
    assert pending == {"yard/zones/bay/occupancy": b"", "yard/lines/gate/counts": b"",
                       "yard/snapshot/person": b""}

    again = CameraDelivery(camera(zones=[ZONE]), LABELS, sink, tmp_path)  # no line now
    again.adopt_retained(pending)
    sink.connected = True
    walk(again, [100])  # a frame flushes
    assert sink.state("yard/zones/bay/occupancy") is not None  # its own, not the delete
    assert sink.retained["yard/lines/gate/counts"] == b""
    assert sink.retained["yard/snapshot/person"] == b""
