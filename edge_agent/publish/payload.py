"""The JSON bodies the agent publishes; their shape is a contract, see docs/mqtt.md.

Every body (detections, info, camera state; health in edge_agent.health.monitor) carries
`schema_version`. Adding a field keeps the version; removing,
renaming or changing the meaning of one bumps it (docs/schemas/ hold the schemas).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone

import numpy as np

from edge_agent import __version__
from engines.base import Detections, InputSpec, ModelInfo

SCHEMA_VERSION = 1

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Compact, UTF-8 friendly; NaN is refused rather than sent as invalid JSON."""


def iso_utc(unix_time: float) -> str:
    """`2024-05-01T12:00:00.123Z`: UTC with milliseconds, what dashboards parse."""
    moment = datetime.fromtimestamp(unix_time, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def detections_payload(
    *,
    camera_id: str,
    sequence: int,
    captured_at: float,
    frame_width: int,
    frame_height: int,
    model: ModelInfo,
    backend: str,
    device: str,
    inference_ms: float,
    detections: Detections,
    clock_synced: bool = True,
    track_ids: np.ndarray | None = None,
) -> bytes:
    """One frame's detections as compact JSON (the hot path: arrays, not per-value math).

    `track_ids` (N,) aligned with the detections, when tracking runs: each item gains
    `track_id` (null for a detection not tracked yet, where the id is -1).

    Boxes are clipped to the frame, so `box` lies in 0..width/height and
    `box_normalized` in 0..1. `clock_synced` is false when `timestamp` was read from a
    wall clock not yet set by NTP (edge_agent.clock): it may be years off.
    """
    # float64 first: rounding float32 values leaves 12.300000190734863 in the JSON.
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
    boxes = np.clip(boxes, 0.0, np.array([frame_width, frame_height] * 2, dtype=np.float64))
    normalized = boxes / np.array([frame_width, frame_height] * 2, dtype=np.float64)
    pixel_rows = np.round(boxes, 1).tolist()
    normalized_rows = np.round(normalized, 4).tolist()
    scores = np.round(np.asarray(detections.scores, dtype=np.float64), 3).tolist()
    class_ids = np.asarray(detections.class_ids, dtype=np.int64).tolist()
    names = model.class_names
    known = len(names)

    items = [
        {
            "label": names[class_id] if 0 <= class_id < known else str(class_id),
            "class_id": class_id,
            "score": score,
            "box": {"x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3]},
            "box_normalized": {"x1": norm[0], "y1": norm[1], "x2": norm[2], "y2": norm[3]},
        }
        for class_id, score, box, norm in zip(
            class_ids, scores, pixel_rows, normalized_rows, strict=True
        )
    ]
    if track_ids is not None:
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1).tolist()
        for item, track_id in zip(items, ids, strict=True):
            item["track_id"] = track_id if track_id >= 0 else None
    body = {
        "schema_version": SCHEMA_VERSION,
        "timestamp": iso_utc(captured_at),
        "clock_synced": clock_synced,
        "camera": camera_id,
        "sequence": sequence,
        "frame": {"width": frame_width, "height": frame_height},
        "model": {"name": model.name, "sha256": model.sha256},
        "backend": backend,
        "device": device,
        "inference_ms": round(float(inference_ms), 2),
        "detections": items,
    }
    return _ENCODER.encode(body).encode("utf-8")


def info_payload(
    *,
    device_id: str,
    started_at: float,
    backend: str,
    device: str,
    backend_reason: str,
    model: ModelInfo,
    input_spec: InputSpec,
    cameras: Iterable[tuple[str, str]],
    version: str = __version__,
    fallbacks: Iterable[str] = (),
    config_path: str | None = None,
    last_reload: dict[str, object] | None = None,
    input_shapes: dict[str, object] | None = None,
    models: dict[str, object] | None = None,
    int8: dict[str, object] | None = None,
) -> bytes:
    """The retained description of this agent: what runs, where, and why that backend.

    `cameras` is (camera id, type) pairs in config order; type is file, rtsp, usb ...
    `fallbacks` lists backends tried or passed over before this one (degraded when any).
    `last_reload` is the outcome of the last SIGHUP: {at, ok, error, applied}.
    `input_shapes` is engines.input_shapes.ShapedEngines.describe() (rectangular input).
    `models` is the model lifecycle's state (edge_agent.models.lifecycle.ModelManager.info:
    active, previous, step, last_outcome); absent when not given.
    `int8` (only with backend.precision int8): whether the INT8 build runs, and why.
    """
    body = {
        "schema_version": SCHEMA_VERSION,
        "agent_version": version,
        "device_id": device_id,
        "started_at": iso_utc(started_at),
        "backend": backend,
        "device": device,
        "backend_reason": backend_reason,
        "fallbacks": list(fallbacks),
        "config": {"path": config_path, "last_reload": last_reload},
        "model": {
            "name": model.name,
            "path": model.path,
            "sha256": model.sha256,
            "family": model.family,
            "class_count": len(model.class_names),
            "input": {"width": input_spec.width, "height": input_spec.height,
                      **({"shapes": input_shapes} if input_shapes is not None else {})},
        },
        "cameras": [{"id": camera_id, "type": kind} for camera_id, kind in cameras],
    }
    if models is not None:
        body["models"] = models
    if int8 is not None:
        body["int8"] = int8
    return _ENCODER.encode(body).encode("utf-8")


def camera_state_payload(
    *,
    camera_id: str,
    state: str,
    since: float,
    reconnects: int,
    last_error: str | None,
    frames: int,
) -> bytes:
    """One camera's state (STARTING, RUNNING, BACKOFF, FAILED, STOPPED), sent on change."""
    body = {
        "schema_version": SCHEMA_VERSION,
        "camera": camera_id,
        "state": state,
        "since": iso_utc(since),
        "reconnects": reconnects,
        "last_error": last_error,
        "frames": frames,
    }
    return _ENCODER.encode(body).encode("utf-8")
