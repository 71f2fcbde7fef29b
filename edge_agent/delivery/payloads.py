"""JSON bodies of events, zone occupancy and line counts (docs/events.md, docs/schemas/).

Like every other body they carry `schema_version`; additive changes keep it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_agent.events.types import Event
from edge_agent.publish.payload import SCHEMA_VERSION, iso_utc

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class SnapshotRef:
    """Where an event's snapshot went: `file` relative to <state_dir>/snapshots, the
    retained topic; or `error` saying why there is none."""

    file: str | None = None
    crop_file: str | None = None
    topic: str | None = None
    error: str | None = None


def _box(box: Sequence[float], width: int, height: int) -> tuple[dict, dict]:
    """Pixel box clipped to the frame (1 decimal) and normalised (4 decimals)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    x1, x2 = (min(max(v, 0.0), float(width)) for v in (x1, x2))
    y1, y2 = (min(max(v, 0.0), float(height)) for v in (y1, y2))
    pixel = {"x1": round(x1, 1), "y1": round(y1, 1), "x2": round(x2, 1), "y2": round(y2, 1)}
    normalized = {"x1": round(x1 / width, 4), "y1": round(y1 / height, 4),
                  "x2": round(x2 / width, 4), "y2": round(y2 / height, 4)}
    return pixel, normalized


def event_payload(
    event: Event,
    *,
    frame_size: tuple[int, int],
    clock_synced: bool = True,
    snapshot: SnapshotRef | None = None,
) -> bytes:
    """One event as compact JSON; `frame_size` is (width, height) in pixels.

    `snapshot` None means snapshots are off for this camera (the key is null);
    a SnapshotRef with `error` means one was wanted and could not be made.
    """
    width, height = frame_size
    pixel, normalized = _box(event.box, width, height)
    body: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event.event_id,
        "type": event.type,
        "camera": event.camera_id,
        "zone": event.zone,
        "line": event.line,
        "direction": event.direction,
        "track_id": int(event.track_id),
        "label": event.label,
        "class_id": int(event.class_id),
        "score": round(float(event.score), 3),
        "box": pixel,
        "box_normalized": normalized,
        "frame": {"width": width, "height": height},
        "timestamp": iso_utc(event.time),
        "first_seen": iso_utc(event.first_seen),
        "dwell_s": None if event.dwell_s is None else round(float(event.dwell_s), 2),
        "reason": event.reason,
        "clock_synced": clock_synced,
        "snapshot": None,
    }
    if snapshot is not None:
        body["snapshot"] = {
            "file": snapshot.file, "crop_file": snapshot.crop_file,
            "topic": snapshot.topic, "error": snapshot.error,
        }
    return _ENCODER.encode(body).encode("utf-8")


def occupancy_payload(
    *, camera_id: str, zone: str, occupancy: Mapping[str, int], at: float
) -> bytes:
    """Retained `<camera>/zones/<zone>/occupancy`: objects inside now, per class."""
    counts = {label: int(n) for label, n in sorted(occupancy.items())}
    body = {
        "schema_version": SCHEMA_VERSION,
        "camera": camera_id,
        "zone": zone,
        "timestamp": iso_utc(at),
        "total": sum(counts.values()),
        "occupancy": counts,
    }
    return _ENCODER.encode(body).encode("utf-8")


def _per_direction(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {direction: {label: int(n) for label, n in sorted(per_label.items())}
            for direction, per_label in sorted(counts.items())}


def counts_payload(
    *,
    camera_id: str,
    line: str,
    counts: Mapping[str, Mapping[str, int]],
    since: float,
    at: float,
    window: tuple[float, float, Mapping[str, Mapping[str, int]]] | None = None,
) -> bytes:
    """Retained `<camera>/lines/<line>/counts`: crossings per direction and class.

    `counts` are since `since` (wall s: when this line started counting, i.e. the
    agent's or the camera's start, or the reload that added the line: counts restart at
    0 then). `window` is (start wall s, length s, counts) of the current count window.
    """
    body: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "camera": camera_id,
        "line": line,
        "timestamp": iso_utc(at),
        "since": iso_utc(since),
        "counts": _per_direction(counts),
        "window": None,
    }
    if window is not None:
        started, length, window_counts = window
        body["window"] = {
            "started_at": iso_utc(started),
            "seconds": round(float(length), 3),
            "counts": _per_direction(window_counts),
        }
    return _ENCODER.encode(body).encode("utf-8")
