"""Event, occupancy and counts bodies: valid against their schemas for every kind of
event, boxes clipped and normalised, snapshots named or explained."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import jsonschema
import pytest

from edge_agent.delivery.payloads import (
    SnapshotRef,
    counts_payload,
    event_payload,
    occupancy_payload,
)
from edge_agent.events.types import Event
from tests.helpers import REPO

EVENTS = json.loads((REPO / "docs" / "schemas" / "events.schema.json").read_text())
OCCUPANCY = json.loads((REPO / "docs" / "schemas" / "zone-occupancy.schema.json").read_text())
COUNTS = json.loads((REPO / "docs" / "schemas" / "line-counts.schema.json").read_text())
CHECK = jsonschema.FormatChecker()


BASE = Event(type="enter", camera_id="gate", track_id=3, class_id=0, label="person",
             score=0.8766, box=(10.0, 20.0, 110.0, 220.0), time=1_764_480_000.25,
             first_seen=1_764_479_990.0, zone="bay", event_id=uuid.uuid4().hex)
KINDS = [
    BASE,
    replace(BASE, type="exit", dwell_s=12.345, reason="left"),
    replace(BASE, type="exit", dwell_s=0.0, reason="zone_removed"),  # a reload ended it
    replace(BASE, type="dwell", dwell_s=30.0),
    replace(BASE, type="cross", zone=None, line="gate-line", direction="in"),
    replace(BASE, box=(-5.0, -3.0, 700.0, 500.0)),  # off the frame: clipped
]
SNAPSHOTS = [
    None,
    SnapshotRef(file="gate/a.jpg", topic="gate/snapshot/person"),
    SnapshotRef(file=None, crop_file="gate/a-crop.jpg", topic="gate/snapshot/person"),
    SnapshotRef(topic="gate/snapshot/person", error="cannot write snapshot: No space left"),
]


@pytest.mark.parametrize("event", KINDS, ids=lambda e: f"{e.type}-{e.reason}-{e.box[0]}")
@pytest.mark.parametrize("snapshot", SNAPSHOTS)
def test_every_event_kind_matches_the_schema(event: Event, snapshot: SnapshotRef | None) -> None:
    body = json.loads(event_payload(event, frame_size=(640, 360), snapshot=snapshot))
    jsonschema.validate(body, EVENTS, format_checker=CHECK)
    assert body["event_id"] == event.event_id
    assert body["type"] == event.type
    assert body["track_id"] == 3
    assert body["score"] == 0.877
    box, norm = body["box"], body["box_normalized"]
    assert 0 <= box["x1"] <= box["x2"] <= 640
    assert 0 <= box["y1"] <= box["y2"] <= 360
    assert norm["x2"] == pytest.approx(box["x2"] / 640, abs=1e-4)
    assert body["timestamp"] == "2025-11-30T05:20:00.250Z"
    assert body["reason"] == event.reason
    if snapshot is None:
        assert body["snapshot"] is None
    else:
        assert body["snapshot"]["error"] == snapshot.error
        assert body["snapshot"]["file"] == snapshot.file


def test_a_wrong_event_fails_the_schema() -> None:
    """The schema is strict enough to catch a broken body (it can fail)."""
    body = json.loads(event_payload(BASE, frame_size=(640, 360)))
    for broken in ({**body, "type": "teleport"}, {**body, "event_id": "x"},
                   {k: v for k, v in body.items() if k != "snapshot"}, {**body, "extra": 1},
                   {**body, "reason": "bored"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, EVENTS, format_checker=CHECK)


def test_an_event_spooled_before_reason_existed_still_matches() -> None:
    """Events written to the spool by an older version (no `reason`) are sent after an
    upgrade: the schema keeps accepting them."""
    body = json.loads(event_payload(replace(BASE, type="exit", dwell_s=3.0), frame_size=(640, 360)))
    del body["reason"]
    jsonschema.validate(body, EVENTS, format_checker=CHECK)


@pytest.mark.parametrize("occupancy", [{}, {"person": 2}, {"person": 1, "car": 3}])
def test_occupancy_body(occupancy: dict[str, int]) -> None:
    body = json.loads(occupancy_payload(camera_id="gate", zone="bay", occupancy=occupancy,
                                        at=1_764_480_000.0))
    jsonschema.validate(body, OCCUPANCY, format_checker=CHECK)
    assert body["total"] == sum(occupancy.values())
    assert body["occupancy"] == occupancy


@pytest.mark.parametrize("window", [None, (1_764_480_000.0, 3600.0, {"in": {"person": 1}})])
def test_counts_body(window) -> None:
    counts = {"in": {"person": 4, "car": 1}, "out": {}}
    body = json.loads(counts_payload(camera_id="gate", line="gate-line", counts=counts,
                                     since=1_764_470_000.0, at=1_764_480_000.0, window=window))
    jsonschema.validate(body, COUNTS, format_checker=CHECK)
    assert body["counts"] == counts
    assert body["since"] == "2025-11-30T02:33:20.000Z"
    assert (body["window"] is None) is (window is None)
    if window:
        assert body["window"]["seconds"] == 3600
        assert body["window"]["counts"] == window[2]
