"""Typed state: the health snapshot's classes, the camera state enum and the schemas agree.

The kinds: (1) every class of edge_agent.health.snapshot has exactly the fields of its
object in health.schema.json, so MQTT, /metrics and watch read one structure, and the
schema requires all but those marked OPTIONAL (a section added later: older messages
stay valid); (2) every
enum of camera states in code or schema is the same list (the example: a "FATAL" state
that existed in code, that nothing set and the schema rejected); (3) the monitor builds a
snapshot from nothing but each part's `stats()` and `workers()` (no reaching into
`pipeline.camera.frames` or `publisher.outbox`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edge_agent.capture.state import CameraState, CameraStats
from edge_agent.commands.spec import Outcome
from edge_agent.commands.stats import ChannelStats
from edge_agent.config.model import AgentConfig, HealthConfig
from edge_agent.health import metrics
from edge_agent.health.drift import DriftReport
from edge_agent.health.monitor import HealthMonitor
from edge_agent.health.snapshot import (
    CameraHealth,
    CommandsHealth,
    HealthSnapshot,
    HealthStatus,
    MqttHealth,
)
from edge_agent.pipeline_stats import PipelineStats
from edge_agent.publish.camera_state import CameraStates
from edge_agent.publish.payload import camera_state_payload
from edge_agent.publish.stats import PublisherStats
from edge_agent.tools.watch_view import WatchState, render
from edge_agent.workers import Worker
from tests.conftest import REPO

SCHEMAS = REPO / "docs" / "schemas"
HEALTH_SCHEMA = json.loads((SCHEMAS / "health.schema.json").read_text())
STATE_SCHEMA = json.loads((SCHEMAS / "camera-state.schema.json").read_text())


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """The object schema behind a $ref, or the object of a oneOf [null, object]."""
    if "$ref" in node:
        return resolve(HEALTH_SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]])
    for option in node.get("oneOf", ()):
        if option.get("type") != "null":
            return resolve(option)
    if node.get("type") == "array":
        return resolve(node["items"])
    return node


def class_schema_pairs() -> list[tuple[type, dict[str, Any], str]]:
    """Every dataclass reachable from HealthSnapshot with the schema object it stands for."""
    pairs: list[tuple[type, dict[str, Any], str]] = []

    def walk(cls: type, schema: dict[str, Any], where: str) -> None:
        pairs.append((cls, schema, where))
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            inner = [arg for arg in _flatten(hints[field.name]) if dataclasses.is_dataclass(arg)]
            for arg in inner:
                walk(arg, resolve(schema["properties"][field.name]), f"{where}.{field.name}")

    walk(HealthSnapshot, HEALTH_SCHEMA, "health")
    return pairs


def _flatten(hint: Any) -> list[Any]:
    args = typing.get_args(hint)
    return [hint] if not args else [leaf for arg in args for leaf in _flatten(arg)]


PAIRS = class_schema_pairs()


def test_the_walk_reaches_every_snapshot_class() -> None:
    assert {cls.__name__ for cls, _, _ in PAIRS} >= {
        "HealthSnapshot", "BackendHealth", "ModelHealth", "CameraHealth", "InferenceLatency",
        "EndToEndLatency", "QueueHealth", "DriftHealth", "MqttHealth", "SystemHealth",
        "DiskHealth", "TemperatureHealth", "WorkerHealth", "CommandsHealth",
    }


@pytest.mark.parametrize(("cls", "schema", "where"), PAIRS, ids=[p[2] for p in PAIRS])
def test_each_class_has_exactly_the_fields_of_its_schema_object(
    cls: type, schema: dict[str, Any], where: str
) -> None:
    names = [field.name for field in dataclasses.fields(cls)]
    required = [field.name for field in dataclasses.fields(cls)
                if not field.metadata.get("optional")]
    assert set(names) == set(schema["properties"]), where
    assert set(required) == set(schema["required"]), where
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_camera_state_enum_is_the_schemas_enum_in_both_schemas() -> None:
    values = [state.value for state in CameraState]
    assert values == STATE_SCHEMA["properties"]["state"]["enum"]
    health_camera = HEALTH_SCHEMA["$defs"]["camera"]["properties"]["state"]
    assert values == health_camera["enum"]
    assert "FATAL" not in values  # the example: a state in code the schema rejected


def test_status_enum_is_the_schemas() -> None:
    statuses = [status.value for status in HealthStatus]
    assert statuses == HEALTH_SCHEMA["properties"]["status"]["enum"]


@pytest.mark.parametrize("state", list(CameraState))
def test_every_camera_state_makes_a_valid_state_message(state: CameraState) -> None:
    payload = camera_state_payload(camera_id="gate", state=state.value, since=time.time(),
                                   reconnects=0, last_error=None, frames=0)
    jsonschema.validate(json.loads(payload), STATE_SCHEMA)
    assert f"{state}" == state.value  # f-strings and reasons show the value


def test_a_state_outside_the_enum_is_refused_where_it_is_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FATAL"):
        CameraState("FATAL")
    body = snapshot_of_parts(tmp_path).to_dict()
    body["cameras"][0]["state"] = "FATAL"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, HEALTH_SCHEMA)
    with pytest.raises(ValueError, match=r"health\.cameras\[0\]\.state: 'FATAL' is not one of"):
        HealthSnapshot.from_dict(body)
    watch = WatchState(base_topic="p/box1")
    watch.on_message("p/box1/health", json.dumps(body).encode(), 0.0, time.time())
    assert "cameras[0].state: 'FATAL' is not one of STARTING" in watch.bad["p/box1/health"]


# -- the monitor asks each part, and nothing else ------------------------------------------


class OnlyStats:
    """A pipeline that offers health its interface and nothing more: `stats()`,
    `workers()` and the drift watch slot. Reaching for `.camera` or `.times` fails."""

    def __init__(self, stats: PipelineStats) -> None:
        self._stats = stats
        self.drift = None

    def stats(self) -> PipelineStats:
        return self._stats

    def workers(self) -> list[Worker]:
        return []


class OnlyPublisherStats:
    """A publisher with `stats()`, `workers()` and `publish_retained()`: no `outbox`."""

    def __init__(self, stats: PublisherStats) -> None:
        self._stats = stats
        self.sent: list[tuple[str, bytes]] = []

    def stats(self) -> PublisherStats:
        return self._stats

    def workers(self) -> list[Worker]:
        return []

    def publish_retained(self, subtopic: str, payload: bytes) -> bool:
        self.sent.append((subtopic, payload))
        return True


@dataclasses.dataclass
class Parts:
    config: AgentConfig
    pipelines: dict[str, Any]
    publisher: Any
    commands: Any = None
    engine: None = None
    backend_reason: str = "no engine in this test"
    started_at: float = dataclasses.field(default_factory=time.time)
    started_mono: float = dataclasses.field(default_factory=time.monotonic)


CAMERA = CameraStats(id="gate", state=CameraState.BACKOFF, captured=120, dropped=7, queued=1,
                     reconnects=2, last_error="camera gate: stalled", last_frame_at=None)
PIPELINE = PipelineStats(
    camera=CAMERA, state=CameraState.BACKOFF, frames_processed=113, published=110,
    not_delivered=3, processing_error=None, frames_failed=0, nonfinite_values=0,
    output_problem=None, in_flight=0, inference_ms=(10.123, 20.0, 30.0),
    end_to_end_ms=(12.0, 25.557), drift=DriftReport("watching", 0.5, ("dark",), 48,
                                                    {"brightness": 3.0}, {"brightness": 1.0},
                                                    {"brightness": 0.5}, {}),
)
PUBLISHER = PublisherStats(
    queued=4, published=110, acknowledged=106, dropped=0, trimmed=1, dead_lettered=0,
    dead_lettered_total=0, spool_error=None, spool_dropped_total=0, spool_on_disk=True,
    spool_salvaged=0, spool_unreadable=0, spool_salvage=None, connected=True, last_error=None,
    protocol="5", max_message_bytes=262_144, broker_max_packet=None, disconnects=1,
    last_disconnect="connection lost: keepalive", control_dropped=0,
)


def monitor_of_parts(tmp_path: Path, commands: Any = None) -> HealthMonitor:
    config = AgentConfig(
        device_id="box1", state_dir=tmp_path,
        model={"path": REPO / "samples" / "models" / "yolox_nano.onnx"},
        cameras=[{"id": "gate", "type": "rtsp", "url": "rtsp://cam/x"}],
        health=HealthConfig(metrics_address="", disk_min_free_percent=0),
    )
    parts = Parts(config, {"gate": OnlyStats(PIPELINE)}, OnlyPublisherStats(PUBLISHER), commands)
    return HealthMonitor(parts)  # type: ignore[arg-type]


def snapshot_of_parts(tmp_path: Path) -> HealthSnapshot:
    return monitor_of_parts(tmp_path).refresh()


def test_the_monitor_builds_the_snapshot_from_stats_alone(tmp_path: Path) -> None:
    snapshot = snapshot_of_parts(tmp_path)
    body = json.loads(snapshot.to_json())
    jsonschema.validate(body, HEALTH_SCHEMA, format_checker=jsonschema.FormatChecker())
    (camera,) = snapshot.cameras
    assert isinstance(camera, CameraHealth)
    assert (camera.state, camera.frames_dropped, camera.queue.frames) == (CameraState.BACKOFF, 7, 1)
    assert (camera.inference_ms.p50, camera.end_to_end_ms.p95) == (10.12, 25.56)
    assert isinstance(snapshot.mqtt, MqttHealth)
    assert (snapshot.mqtt.queued, snapshot.mqtt.trimmed, snapshot.mqtt.disconnects) == (4, 1, 1)
    assert snapshot.status is HealthStatus.FAILED  # no engine
    assert "camera gate BACKOFF: camera gate: stalled" in snapshot.reasons
    assert "camera gate drift: dark" in snapshot.reasons
    # JSON field order is the dataclass order, which is the message's order today.
    assert list(body) == [field.name for field in dataclasses.fields(HealthSnapshot)]
    assert list(body["mqtt"]) == [field.name for field in dataclasses.fields(MqttHealth)]


def test_the_message_reads_back_into_the_same_snapshot(tmp_path: Path) -> None:
    snapshot = snapshot_of_parts(tmp_path)
    assert HealthSnapshot.from_dict(json.loads(snapshot.to_json())) == snapshot


def test_metrics_and_watch_read_the_same_snapshot(tmp_path: Path) -> None:
    snapshot = snapshot_of_parts(tmp_path)

    class Monitor:
        def latest(self) -> HealthSnapshot:
            return snapshot

    families = {family.name: family for family in
                metrics.HealthCollector(Monitor()).collect()}  # type: ignore[arg-type]
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in families.values() for sample in family.samples}
    assert samples[("edge_agent_camera_frames_dropped_total", (("camera", "gate"),))] == 7
    assert samples[("edge_agent_camera_state", (("camera", "gate"), ("state", "BACKOFF")))] == 1
    assert samples[("edge_agent_camera_state", (("camera", "gate"), ("state", "RUNNING")))] == 0
    assert samples[("edge_agent_mqtt_queued", ())] == 4
    assert samples[("edge_agent_health_status", ())] == 2
    watch = WatchState(base_topic="p/box1")
    watch.on_message("p/box1/health", snapshot.to_json(), 0.0, time.time())
    assert watch.health == snapshot
    text = render(watch, 1.0, time.time())
    assert "health: failed (" in text
    assert "mqtt connected, queued 4, dropped 0" in text


@pytest.mark.parametrize(
    ("table", "cls"),
    [(metrics.CAMERA_COUNTERS, CameraHealth), (metrics.CAMERA_GAUGES, CameraHealth),
     (metrics.MQTT_COUNTERS, MqttHealth), (metrics.COMMANDS_COUNTERS, CommandsHealth),
     (metrics.COMMANDS_GAUGES, CommandsHealth)],
)
def test_metric_tables_name_snapshot_fields(table: tuple, cls: type) -> None:
    names = {field.name for field in dataclasses.fields(cls)}
    assert {key for key, _, _ in table} <= names


def test_camera_state_messages_come_from_stats_alone() -> None:
    """The retained <camera>/state topic asks the pipeline too; its message is valid."""

    class Sink:
        connected = True

        def __init__(self) -> None:
            self.sent: list[tuple[str, bytes]] = []

        def publish_retained(self, subtopic: str, payload: bytes) -> bool:
            self.sent.append((subtopic, payload))
            return True

    sink = Sink()
    CameraStates(sink).update({"gate": OnlyStats(PIPELINE)})  # type: ignore[dict-item]
    ((topic, payload),) = sink.sent
    body = json.loads(payload)
    jsonschema.validate(body, STATE_SCHEMA)
    assert topic == "gate/state"
    assert (body["state"], body["reconnects"], body["frames"]) == ("BACKOFF", 2, 120)


def test_health_is_made_to_fit_a_small_broker_limit(tmp_path: Path) -> None:
    """Issue 9 section 2: a broker with max_packet_size 2000 got no health at all."""
    from edge_agent.health.snapshot import fitted_json

    base = snapshot_of_parts(tmp_path)
    from edge_agent.health.snapshot import WorkerHealth

    workers = tuple(
        WorkerHealth(name=f"pipeline-cam{n}", state="running", crashes=int(n % 7 == 0),
                     last_error="x" * 500 if n % 7 == 0 else None)
        for n in range(30)
    )
    snapshot = dataclasses.replace(base, workers=workers, reasons=("y" * 900,))
    schema = json.loads((SCHEMAS / "health.schema.json").read_text())
    full = snapshot.to_json()
    assert fitted_json(snapshot, None) == full
    assert fitted_json(snapshot, len(full)) == full
    for limit in range(len(full) - 1, 200, -97):
        payload = fitted_json(snapshot, limit)
        body = json.loads(payload)
        jsonschema.validate(body, schema)
        if len(payload) <= limit:
            # What was left out is only what runs fine; every crashed worker stays.
            crashed = {w.name for w in snapshot.workers if w.crashes}
            assert crashed <= {w["name"] for w in body["workers"]}
            assert body["status"] == snapshot.status.value
        else:  # cannot fit: the smallest form, which the publisher then counts as dropped
            assert payload == fitted_json(snapshot, 1)


# -- the command channel's section -------------------------------------------------------


class OnlyChannelStats:
    """A command channel with `stats()` and `workers()`: no `_inbox`, no `tally`."""

    def __init__(self, stats: ChannelStats) -> None:
        self.now = stats

    def stats(self) -> ChannelStats:
        return self.now

    def workers(self) -> list[Worker]:
        return []


def test_the_final_outcomes_are_fields_of_the_commands_section() -> None:
    finals = {outcome.value for outcome in Outcome if outcome is not Outcome.PROGRESS}
    assert set(metrics.COMMAND_OUTCOMES) == finals
    assert finals <= {field.name for field in dataclasses.fields(CommandsHealth)}
    assert finals <= {field.name for field in dataclasses.fields(ChannelStats)}


def test_commands_show_in_health_metrics_and_watch_and_drops_degrade(tmp_path: Path) -> None:
    channel = OnlyChannelStats(ChannelStats(received=12, ok=5, rejected=3, failed=1,
                                            duplicates=1, dropped=0, waiting=1, running=1))
    monitor = monitor_of_parts(tmp_path, channel)
    quiet = monitor.refresh()
    assert quiet.commands == CommandsHealth(received=12, ok=5, rejected=3, failed=1,
                                            duplicates=1, dropped=0, dropped_recently=0,
                                            waiting=1, running=1)
    assert not [reason for reason in quiet.reasons if reason.startswith("commands")]
    channel.now = dataclasses.replace(channel.now, received=52, dropped=40)
    flooded = monitor.refresh()
    body = json.loads(flooded.to_json())
    jsonschema.validate(body, HEALTH_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert body["commands"] == {"received": 52, "ok": 5, "rejected": 3, "failed": 1,
                                "duplicates": 1, "dropped": 40, "dropped_recently": 40,
                                "waiting": 1, "running": 1}
    assert ("commands dropped 40 request(s) unanswered in the last 60 s (inbox full, or a "
            "command name too long to answer on)") in flooded.reasons
    assert HealthSnapshot.from_dict(body) == flooded
    collector = metrics.HealthCollector(_Latest(flooded))  # type: ignore[arg-type]
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in collector.collect() for sample in family.samples}
    assert samples[("edge_agent_commands_received_total", ())] == 52
    assert samples[("edge_agent_commands_answered_total", (("outcome", "rejected"),))] == 3
    assert samples[("edge_agent_commands_dropped_total", ())] == 40
    assert samples[("edge_agent_commands_waiting", ())] == 1
    text = render(_watching(body), 1.0, time.time())
    assert "commands 52 in, 3 rejected, 1 failed, 40 dropped" in text


def test_commands_disabled_is_null_and_an_older_message_without_it_still_reads(
        tmp_path: Path) -> None:
    snapshot = snapshot_of_parts(tmp_path)
    body = json.loads(snapshot.to_json())
    assert body["commands"] is None
    assert not any(name.startswith("edge_agent_commands")
                   for family in metrics.HealthCollector(  # type: ignore[arg-type]
                       _Latest(snapshot)).collect() for name in [family.name])
    del body["commands"]  # an agent from before the section
    jsonschema.validate(body, HEALTH_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert HealthSnapshot.from_dict(body) == snapshot
    assert "commands" not in render(_watching(body), 1.0, time.time())


class _Latest:
    def __init__(self, snapshot: HealthSnapshot) -> None:
        self.snapshot = snapshot

    def latest(self) -> HealthSnapshot:
        return self.snapshot


def _watching(body: dict[str, Any]) -> WatchState:
    watch = WatchState(base_topic="p/box1")
    watch.on_message("p/box1/health", json.dumps(body).encode(), 0.0, time.time())
    return watch


def test_input_and_processed_rates_count_from_the_cameras_start(tmp_path: Path) -> None:
    """The first health message already has a rate (before: 0.0 until the next one, 30 s
    later by default), and a restarted camera, whose counters start again from 0, never
    gives a negative rate."""
    monitor = monitor_of_parts(tmp_path)
    pipeline: OnlyStats = monitor.agent.pipelines["gate"]  # type: ignore[attr-defined]
    started = time.monotonic() - 4.0
    pipeline._stats = dataclasses.replace(
        PIPELINE, camera=dataclasses.replace(CAMERA, started_at=started))
    (camera,) = monitor.refresh().cameras
    assert camera.input_fps == pytest.approx(120 / 4.0, rel=0.05)
    assert camera.processed_fps == pytest.approx(113 / 4.0, rel=0.05)
    restarted = dataclasses.replace(CAMERA, captured=10, started_at=time.monotonic() - 1.0)
    pipeline._stats = dataclasses.replace(PIPELINE, camera=restarted, frames_processed=9)
    (camera,) = monitor.refresh().cameras
    assert camera.input_fps == pytest.approx(10.0, rel=0.1)
    assert camera.processed_fps == pytest.approx(9.0, rel=0.1)
