"""The published JSON bodies: shape (against docs/schemas), values, rounding."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from edge_agent import __version__
from edge_agent.publish.payload import SCHEMA_VERSION, detections_payload, info_payload
from engines.base import Detections, InputSpec, ModelInfo

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "docs" / "schemas"
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

MODEL = ModelInfo(
    path="/models/yolox_nano.onnx",
    name="yolox_nano",
    sha256="0123456789abcdef" * 4,
    family="yolox",
    class_names=("person", "bicycle", "car"),
)
CAPTURED_AT = datetime(2024, 5, 1, 12, 30, 45, 123000, tzinfo=timezone.utc).timestamp()


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def frame_payload(detections: Detections, **overrides: object) -> dict:
    arguments: dict = {
        "camera_id": "front-door",
        "sequence": 7,
        "captured_at": CAPTURED_AT,
        "frame_width": 640,
        "frame_height": 480,
        "model": MODEL,
        "backend": "openvino",
        "device": "CPU",
        "inference_ms": 8.126,
        "detections": detections,
    }
    arguments.update(overrides)
    raw = detections_payload(**arguments)
    assert isinstance(raw, bytes)
    return json.loads(raw)


def known_detections() -> Detections:
    return Detections(
        boxes=np.array([[64.04, 48.0, 320.26, 240.0], [-5.0, 10.0, 700.0, 500.0]], np.float32),
        scores=np.array([0.91234, 0.5], np.float32),
        class_ids=np.array([0, 2], np.int32),
    )


def test_detections_payload_matches_schema_and_values() -> None:
    body = frame_payload(known_detections())

    errors = list(validator("detections").iter_errors(body))
    assert errors == [], [e.message for e in errors]
    assert body["schema_version"] == SCHEMA_VERSION
    assert body["timestamp"] == "2024-05-01T12:30:45.123Z"
    assert body["camera"] == "front-door"
    assert body["sequence"] == 7
    assert body["frame"] == {"width": 640, "height": 480}
    assert body["model"] == {"name": "yolox_nano", "sha256": MODEL.sha256}
    assert (body["backend"], body["device"]) == ("openvino", "CPU")
    assert body["inference_ms"] == 8.13

    first, second = body["detections"]
    assert first == {
        "label": "person",
        "class_id": 0,
        "score": 0.912,
        "box": {"x1": 64.0, "y1": 48.0, "x2": 320.3, "y2": 240.0},
        "box_normalized": {"x1": 0.1001, "y1": 0.1, "x2": 0.5004, "y2": 0.5},
    }
    # Out-of-frame coordinates are clipped, so both boxes stay inside the frame.
    assert second["label"] == "car"
    assert second["box"] == {"x1": 0.0, "y1": 10.0, "x2": 640.0, "y2": 480.0}
    assert second["box_normalized"] == {"x1": 0.0, "y1": 0.0208, "x2": 1.0, "y2": 1.0}


def test_float32_values_are_short_in_the_json() -> None:
    raw = detections_payload(
        camera_id="cam",
        sequence=0,
        captured_at=CAPTURED_AT,
        frame_width=640,
        frame_height=480,
        model=MODEL,
        backend="openvino",
        device="CPU",
        inference_ms=1.0,
        detections=known_detections(),
    ).decode()
    # float32 0.3 would print as 0.30000001192092896 without the float64 rounding.
    assert re.search(r"\d\.\d{5,}", raw) is None, raw
    assert " " not in raw  # compact separators


def test_empty_detections() -> None:
    body = frame_payload(Detections.empty(), sequence=0)

    assert body["detections"] == []
    assert body["sequence"] == 0
    assert list(validator("detections").iter_errors(body)) == []


def test_label_falls_back_to_class_id_when_out_of_range() -> None:
    detections = Detections(
        boxes=np.array([[1, 2, 3, 4], [1, 2, 3, 4]], np.float32),
        scores=np.array([0.5, 0.6], np.float32),
        class_ids=np.array([2, 17], np.int32),
    )
    body = frame_payload(detections)

    assert [d["label"] for d in body["detections"]] == ["car", "17"]
    assert [d["class_id"] for d in body["detections"]] == [2, 17]
    assert list(validator("detections").iter_errors(body)) == []


@pytest.mark.parametrize(
    ("captured_at", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1714566645.5, "2024-05-01T12:30:45.500Z"),
        (CAPTURED_AT, "2024-05-01T12:30:45.123Z"),
    ],
)
def test_timestamp_is_utc_iso_with_milliseconds(captured_at: float, expected: str) -> None:
    timestamp = frame_payload(Detections.empty(), captured_at=captured_at)["timestamp"]

    assert timestamp == expected
    assert ISO_MS_Z.match(timestamp)


def test_schema_rejects_what_it_should() -> None:
    check = validator("detections")
    good = frame_payload(known_detections())

    extra = {**good, "surprise": 1}
    out_of_range = json.loads(json.dumps(good))
    out_of_range["detections"][0]["box_normalized"]["x2"] = 1.5
    missing = {k: v for k, v in good.items() if k != "camera"}
    bad_time = {**good, "timestamp": "2024-05-01 12:30:45"}

    for wrong in (extra, out_of_range, missing, bad_time):
        assert not check.is_valid(wrong)


def test_info_payload_matches_schema() -> None:
    raw = info_payload(
        device_id="box-1",
        started_at=CAPTURED_AT,
        backend="openvino",
        device="CPU",
        backend_reason="auto: openvino found CPU",
        model=MODEL,
        input_spec=InputSpec(name="images", height=416, width=416),
        cameras=[("front-door", "rtsp"), ("garage", "usb")],
    )
    body = json.loads(raw)

    errors = list(validator("info").iter_errors(body))
    assert errors == [], [e.message for e in errors]
    assert body["agent_version"] == __version__
    assert body["started_at"] == "2024-05-01T12:30:45.123Z"
    assert body["model"]["class_count"] == 3
    assert body["model"]["input"] == {"width": 416, "height": 416}
    assert body["cameras"] == [
        {"id": "front-door", "type": "rtsp"},
        {"id": "garage", "type": "usb"},
    ]


@pytest.mark.parametrize("synced", [True, False])
def test_clock_synced_flag_is_carried_and_valid(synced: bool) -> None:
    body = frame_payload(Detections.empty(), clock_synced=synced)
    validator("detections").validate(body)
    assert body["clock_synced"] is synced
