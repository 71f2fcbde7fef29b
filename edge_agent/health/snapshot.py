"""The health snapshot as typed values: built once per tick, read by MQTT, /metrics and watch.

`HealthMonitor` builds one `HealthSnapshot` a second from the `stats()` each part offers;
the MQTT message is its `to_json()` (docs/schemas/health.schema.json: the field names and
their order are the dataclass fields'), /metrics reads its attributes, and `edge-agent
watch` reads the message back into the same classes with `from_dict`. A field renamed
here is renamed everywhere, and a test compares the fields with the schema's.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

from edge_agent.capture.state import CameraState

SCHEMA_VERSION = 1

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Compact like the detection payloads; NaN is refused rather than sent as invalid JSON."""
OPTIONAL = types.MappingProxyType({"optional": True})
"""Field metadata: the schema does not require the field. A section added after
schema_version 1 is optional, so messages of older agents stay valid (a test checks
each schema object requires exactly the other fields)."""


class HealthStatus(str, Enum):
    """The agent's verdict (docs/health.md, "Status rules")."""

    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BackendHealth:
    name: str | None
    """openvino, tensorrt ...; None when no engine is loaded."""
    device: str | None
    reason: str
    """Why this backend and device were chosen."""
    fallbacks: tuple[str, ...]
    """Backends or devices tried and given up; not empty makes the status degraded."""


@dataclass(frozen=True)
class ModelHealth:
    name: str | None
    version: str | None
    sha256: str | None


@dataclass(frozen=True)
class InferenceLatency:
    """Milliseconds over the last 1024 frames; None before the first frame."""

    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class EndToEndLatency:
    """Capture to publish, milliseconds, same frames; None before the first frame."""

    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class QueueHealth:
    frames: int
    """Waiting between capture and inference."""
    in_flight: int
    """Submitted to the engine, not yet published."""


@dataclass(frozen=True)
class FramesSkipped:
    """Frames not inferred, by reason (edge_agent.gate); never published."""

    rate: int
    """Above the camera's detect.fps."""
    motion: int
    """Still scene between keep-alive frames (detect.motion)."""


@dataclass(frozen=True)
class DetectionsIgnored:
    """Detections removed by the camera's own rules, by the first rule each failed."""

    min_score: int
    min_area: int
    mask: int


@dataclass(frozen=True)
class DriftHealth:
    state: str
    """disabled, learning or watching."""
    score: float
    reasons: tuple[str, ...]
    samples: int
    baseline: dict[str, float]
    current: dict[str, float]
    components: dict[str, float]
    class_rates: dict[str, dict[str, float]]


@dataclass(frozen=True)
class EventsHealth:
    """A camera's events (edge_agent.delivery.camera.CameraDelivery.stats): rate,
    delivery and snapshots, as health publishes them."""

    events_per_s: float
    """Over the last minute (or since the start, when shorter)."""
    events_total: int
    events_not_delivered: int
    tracks: int
    snapshots_written: int
    snapshots_failed: int
    snapshot_error: str | None
    error: str | None


@dataclass(frozen=True)
class CameraHealth:
    id: str
    state: CameraState
    input_fps: float
    processed_fps: float
    frames_captured: int
    frames_processed: int
    frames_dropped: int
    messages_published: int
    messages_not_delivered: int
    last_frame_age_s: float | None
    reconnects: int
    last_error: str | None
    processing_error: str | None
    frames_failed: int
    nonfinite_values: int
    output_problem: str | None
    inference_ms: InferenceLatency
    end_to_end_ms: EndToEndLatency
    queue: QueueHealth
    drift: DriftHealth | None
    frames_skipped: FramesSkipped
    motion_active: bool | None
    """Whether the motion gate sees motion now; None when it is off."""
    detections_ignored: DetectionsIgnored
    events: EventsHealth | None = None


@dataclass(frozen=True)
class MqttHealth:
    """The broker link and the outbox (docs/health.md, the `mqtt` fields)."""

    connected: bool
    queued: int | None
    published: int
    acknowledged: int
    dropped: int
    dropped_recently: int
    last_error: str | None
    spool_error: str | None
    spool_dropped_total: int
    protocol: str | None
    max_message_bytes: int | None
    disconnects: int
    last_disconnect: str | None
    trimmed: int
    dead_lettered_total: int
    spool_salvaged: int
    spool_unreadable: int
    spool_salvage: str | None
    dead_lettered_recently: int


@dataclass(frozen=True)
class DiskHealth:
    path: str
    free_bytes: int
    total_bytes: int
    free_percent: float


@dataclass(frozen=True)
class TemperatureHealth:
    sensor: str
    celsius: float
    source: str
    """thermal or hwmon."""
    critical_c: float | None


@dataclass(frozen=True)
class SystemHealth:
    cpu_percent: float
    """The agent process, % of one core."""
    rss_bytes: int
    load: tuple[float, ...]
    disk: DiskHealth
    temperatures: tuple[TemperatureHealth, ...]
    gpu_load_percent: float | None


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    state: str
    """running, backoff, finished or dead."""
    crashes: int
    last_error: str | None


@dataclass(frozen=True)
class CommandsHealth:
    """The MQTT command channel (edge_agent.commands.stats.ChannelStats): requests since
    the start by how each ended, and what waits or runs now."""

    received: int
    ok: int
    rejected: int
    failed: int
    """Final outcomes of requests seen for the first time (Outcome's values)."""
    duplicates: int
    """Repeated request_ids answered from the record, not run again."""
    dropped: int
    """Never answered: inbox full, command name too long to answer on, handling failed."""
    dropped_recently: int
    """Of those, in the last 60 s; not 0 makes the status degraded."""
    waiting: int
    running: int


@dataclass(frozen=True)
class HealthSnapshot:
    """The whole agent at one moment: the retained health message, field for field.

    Built by the monitor, every field holds what its annotation says. Read back from a
    message by `from_dict` (watch), a field the message lacks is None: an older or newer
    agent may send fewer fields, and watch shows "-" for them.
    """

    schema_version: int
    timestamp: str
    agent_version: str
    device_id: str
    clock_synced: bool
    started_at: str
    uptime_s: float
    status: HealthStatus
    reasons: tuple[str, ...]
    backend: BackendHealth
    model: ModelHealth
    cameras: tuple[CameraHealth, ...]
    mqtt: MqttHealth
    system: SystemHealth
    workers: tuple[WorkerHealth, ...]
    commands: CommandsHealth | None = field(default=None, metadata=OPTIONAL)
    """None (null) while commands.enabled is false; absent from older agents' messages."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: enums as their values, tuples as lists, in field order."""
        return _plain(self)

    def to_json(self) -> bytes:
        """The MQTT payload: compact UTF-8 JSON, as the other payloads are sent."""
        return _ENCODER.encode(self.to_dict()).encode("utf-8")

    @classmethod
    def from_dict(cls, body: dict[str, Any], where: str = "health") -> HealthSnapshot:
        """A parsed health message as typed values; ValueError names the first field
        whose value is not of its type (a camera state outside the schema's enum too)."""
        return _read(cls, body, where)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _read(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object")
    hints = get_type_hints(cls)
    return cls(**{
        item.name: _value(hints[item.name], data.get(item.name), f"{where}.{item.name}")
        for item in fields(cls)
    })


_SCALARS: dict[type, tuple[type, ...]] = {
    str: (str,), int: (int,), float: (int, float), bool: (bool,), dict: (dict,),
}


def _value(hint: Any, value: Any, where: str) -> Any:
    """`value` checked against `hint`; None (absent or null) stays None."""
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
        origin = get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list")
        inner = get_args(hint)[0]
        items = (_value(inner, item, f"{where}[{i}]") for i, item in enumerate(value))
        return tuple(item for item in items if item is not None)
    if origin is dict:
        hint = dict
    if isinstance(hint, type) and is_dataclass(hint):
        return _read(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(str(member.value) for member in hint)
            raise ValueError(f"{where}: {str(value)[:40]!r} is not one of {allowed}") from None
    kinds = _SCALARS[hint]
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ValueError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


SHORT_TEXT = 160
"""Characters kept of each reason and error when a health message must shrink."""


def fitted_json(snapshot: HealthSnapshot, limit: int | None) -> bytes:
    """`snapshot.to_json()`, made to fit a broker's stated size limit where it can.

    A broker with a small Maximum Packet Size (mosquitto's `max_packet_size 2000`) would
    otherwise get no health at all. In order, until it fits: leave out the workers that
    run without a crash, the temperature list, and cut reasons and errors to SHORT_TEXT
    characters. What is left is still valid against the schema; if even that is too big,
    the whole message goes (the publisher counts it in control_dropped).
    """
    payload = snapshot.to_json()
    if limit is None or len(payload) <= limit:
        return payload
    steps = (
        lambda s: replace(s, workers=tuple(
            w for w in s.workers if w.crashes or w.state != "running")),
        lambda s: replace(s, system=replace(s.system, temperatures=())),
        lambda s: replace(
            s,
            reasons=tuple(_short(r) for r in s.reasons),
            cameras=tuple(replace(c, last_error=_short(c.last_error)) for c in s.cameras),
            workers=tuple(replace(w, last_error=_short(w.last_error)) for w in s.workers),
        ),
    )
    for step in steps:
        snapshot = step(snapshot)
        payload = snapshot.to_json()
        if len(payload) <= limit:
            break
    return payload


def _short(text: str | None) -> str | None:
    if text is None or len(text) <= SHORT_TEXT:
        return text
    return text[: SHORT_TEXT - 1] + "\u2026"
