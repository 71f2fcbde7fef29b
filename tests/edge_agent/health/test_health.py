"""Health over MQTT: the real agent (or real parts of it) against a real Mosquitto."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.capture.camera import Camera
from edge_agent.clock import kernel_synced
from edge_agent.config.model import AgentConfig, HealthConfig, MqttConfig, RtspCamera
from edge_agent.health.monitor import HealthMonitor
from edge_agent.pipeline import CameraPipeline
from edge_agent.publish.publisher import Publisher
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter
from tests.helpers import (
    Broker,
    first_frames,
    frame_count,
    health_config,
    start_agent,
    stop_agent,
    validated_health,
    wait_for_health,
)
from tests.rtsp import RtspServer

CLIP_FRAMES = 40


@pytest.fixture(scope="module")
def clip(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("health-clip") / "street.mp4"
    return first_frames(samples, out, CLIP_FRAMES)


def test_health_is_retained_valid_and_counts_every_frame(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    assert frame_count(clip) == CLIP_FRAMES
    cameras = f"  - id: street\n    type: file\n    path: {clip}\n    realtime: false\n"
    config = health_config(
        tmp_path, samples, broker, unique_prefix, cameras,
        "  interval_s: 1\n  metrics_address: ''\n",
    )
    agent = start_agent(config)
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode == 0, output

    # Subscribing after the run: the broker hands over the last health message, retained.
    late = subscribe(f"{unique_prefix}/box1/health")
    message = late.wait_for("/box1/health", timeout=10)[0]
    assert message.retain
    assert message.qos == 1
    health = validated_health(message.payload)
    assert health["device_id"] == "box1"
    assert health["status"] == "ok", health["reasons"]
    assert health["backend"]["name"] == "openvino"
    assert health["model"]["name"] == "yolox_nano"
    assert len(health["model"]["sha256"]) == 64
    assert health["mqtt"]["connected"]
    (camera,) = health["cameras"]
    assert camera["id"] == "street"
    assert camera["state"] == "STOPPED"
    assert camera["frames_captured"] == CLIP_FRAMES
    assert camera["frames_processed"] == CLIP_FRAMES
    assert camera["messages_published"] == CLIP_FRAMES
    assert camera["frames_dropped"] == 0  # a file is paced by its consumer, never dropped
    assert health["mqtt"]["published"] == CLIP_FRAMES
    latency = camera["inference_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert camera["end_to_end_ms"]["p50"] >= latency["p50"]
    assert camera["queue"] == {"frames": 0, "in_flight": 0}
    assert health["system"]["rss_bytes"] > 50_000_000  # OpenVINO and a model are loaded
    assert health["system"]["disk"]["total_bytes"] > 0
    assert health["clock_synced"] is (kernel_synced() is not False)  # this host's answer
    workers = {w["name"]: w for w in health["workers"]}
    assert {"health", "pipeline-street", "capture-street"} <= set(workers)
    assert all(w["crashes"] == 0 and w["last_error"] is None for w in workers.values())
    assert workers["capture-street"]["state"] == "finished"  # the file played to its end
    assert camera["frames_failed"] == 0
    assert camera["nonfinite_values"] == 0
    assert camera["output_problem"] is None


def test_broken_camera_makes_agent_degraded_naming_it(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    collector = subscribe(f"{unique_prefix}/box1/health")
    cameras = (
        f"  - id: street\n    type: file\n    path: {clip}\n    loop: true\n"
        f"  - id: yard\n    type: file\n    path: {tmp_path / 'missing.mp4'}\n"
    )
    config = health_config(
        tmp_path, samples, broker, unique_prefix, cameras,
        "  interval_s: 1\n  metrics_address: ''\n",
    )
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        degraded = wait_for_health(collector, lambda h: h["status"] == "degraded", 90)
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    yard = next(c for c in degraded["cameras"] if c["id"] == "yard")
    assert yard["state"] == "BACKOFF"
    assert "missing.mp4" in yard["last_error"]
    assert yard["reconnects"] >= 1
    assert yard["frames_captured"] == 0
    assert any(r.startswith("camera yard BACKOFF") and "not found" in r
               for r in degraded["reasons"]), degraded["reasons"]
    street = next(c for c in degraded["cameras"] if c["id"] == "street")
    assert street["state"] == "RUNNING"
    assert not any("street" in r for r in degraded["reasons"])


class SlowSink:
    """A consumer that takes 0.25 s per message, so a 10 fps live camera must drop frames."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def publish_detections(self, camera_id: str, payload: bytes) -> bool:
        time.sleep(0.25)
        return self.publisher.publish_detections(camera_id, payload)


@dataclass
class AgentParts:
    """The real engine, publisher and pipeline, held the way edge_agent.service.agent.Agent does."""

    config: AgentConfig
    engine: OpenVinoEngine
    publisher: Publisher
    pipelines: dict[str, CameraPipeline] = field(default_factory=dict)
    commands: None = None
    backend_reason: str = "backend: openvino set in config"
    started_at: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)


def busy(health: dict) -> bool:
    """Long enough under load for both rates to cover several seconds."""
    if not health["cameras"]:
        return False
    camera = health["cameras"][0]
    return camera["frames_processed"] >= 12 and camera["frames_dropped"] >= 10


def test_slow_consumer_drops_are_counted_exactly(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    collector = subscribe(f"{unique_prefix}/box1/health")
    with RtspServer(clip) as server:
        camera_config = RtspCamera(id="gate", type="rtsp", url=server.url)
        config = AgentConfig(
            device_id="box1", state_dir=tmp_path / "state",
            model={"path": samples / "models" / "yolox_nano.onnx"},
            mqtt=MqttConfig(port=broker.port, topic_prefix=unique_prefix),
            cameras=[camera_config], health=HealthConfig(interval_s=1, metrics_address=""),
        )
        engine = OpenVinoEngine(config.model.path)
        publisher = Publisher(config.mqtt, config.device_id)
        publisher.start()
        parts = AgentParts(config, engine, publisher)
        camera = Camera(camera_config)
        pipeline = CameraPipeline(camera, engine, SlowSink(publisher), DetectionFilter())
        parts.pipelines["gate"] = pipeline
        monitor = HealthMonitor(parts)
        try:
            pipeline.start()
            camera.start()
            monitor.start()
            running = wait_for_health(collector, busy, 60)
            camera.request_stop()
            pipeline.stop()
            monitor.stop()
        finally:
            publisher.close()
            engine.close()
    gate = running["cameras"][0]
    assert gate["state"] == "RUNNING"
    assert gate["input_fps"] > 2 * gate["processed_fps"] > 0  # 10 fps in, under 4 out
    assert gate["queue"]["frames"] <= 1
    final = collector.json_on("/health")[-1]
    (gate,) = final["cameras"]
    assert gate["frames_dropped"] == camera.frames.dropped > 0
    assert gate["frames_captured"] == camera.captured
    assert gate["frames_processed"] == pipeline.times.frames == pipeline.published
    assert gate["frames_captured"] == gate["frames_processed"] + gate["frames_dropped"]
    assert gate["state"] == "STOPPED"


def test_a_damaged_spool_at_start_is_salvaged_and_shown_in_health(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    """Issue 9 section 4: rows that could not be read are counted, and health says so."""
    from edge_agent.publish.spool import Spool

    path = tmp_path / "state" / "spool.sqlite3"
    spool = Spool(path, max_messages=10**9, max_bytes=10**12, max_age_s=3600.0)
    for number in range(800):  # under mosquitto's 1000 queued per subscriber
        spool.append(f"{unique_prefix}/old/detections",
                     b'{"n": "%06d", "pad": "%s"}' % (number, b"p" * 100))
    spool.close()
    pages = path.stat().st_size // 4096
    with path.open("r+b") as file:  # garbage over 3 pages in the middle of the file
        file.seek(pages // 2 * 4096)
        file.write(bytes(range(256)) * 48)
    collector = subscribe(f"{unique_prefix}/#")
    cameras = f"  - id: street\n    type: file\n    path: {clip}\n    loop: true\n"
    config = health_config(tmp_path, samples, broker, unique_prefix, cameras,
                           "  interval_s: 1\n  metrics_address: ''\n")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        health = wait_for_health(collector, lambda h: h["mqtt"]["spool_unreadable"] > 0, 60)
        # The salvaged rows are delivered, not forgotten.
        collector.wait_for("/old/detections", count=health["mqtt"]["spool_salvaged"], timeout=60)
    finally:
        stop_agent(agent, log)
    mqtt = health["mqtt"]
    assert 600 <= mqtt["spool_salvaged"] < 800
    assert health["status"] == "degraded"
    assert any(r.startswith("mqtt spool was damaged") for r in health["reasons"]), health
    assert mqtt["protocol"] == "5"
    assert mqtt["max_message_bytes"] > 0
