"""The real agent process end to end: video/RTSP -> OpenVINO -> a real Mosquitto."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import (
    REPO,
    Broker,
    first_frames,
    frame_count,
    start_agent,
    write_config,
)
from tests.rtsp import RtspServer

SCHEMA = json.loads((REPO / "docs" / "schemas" / "detections.schema.json").read_text())
CLIP_FRAMES = 30


@pytest.fixture(scope="session")
def clip(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return first_frames(samples, tmp_path_factory.mktemp("clip") / "street.mp4", CLIP_FRAMES)


def test_video_file_every_frame_published_in_order(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    frames = frame_count(clip)
    assert frames == CLIP_FRAMES
    collector = subscribe(f"{unique_prefix}/#")
    cameras = f"  - id: street\n    type: file\n    path: {clip}\n    realtime: false\n"
    agent = start_agent(write_config(tmp_path, samples, broker, unique_prefix, cameras))
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode == 0, output

    messages = collector.wait_for("/box1/street/detections", count=frames)
    payloads = [json.loads(m.payload) for m in messages]
    for payload in payloads:
        jsonschema.validate(payload, SCHEMA)
    assert [p["sequence"] for p in payloads] == list(range(frames))
    assert all(m.qos == 1 for m in messages)
    first = payloads[0]
    assert first["camera"] == "street"
    assert first["frame"] == {"width": 768, "height": 576}
    assert first["backend"] == "openvino"
    assert first["model"]["name"] == "yolox_nano"
    # The street scene always has pedestrians in view.
    people = [d for p in payloads for d in p["detections"] if d["label"] == "person"]
    assert len(people) >= frames
    assert all(0 <= d["box"]["x1"] < d["box"]["x2"] <= 768 for d in people)

    status = collector.wait_for("/box1/status", count=2)
    assert [m.payload for m in status][-1] == b"offline"
    assert b"online" in [m.payload for m in status]
    info = json.loads(collector.wait_for("/box1/info")[0].payload)
    assert info["device_id"] == "box1"


def test_rtsp_camera_reaches_broker_and_sigterm_stops_cleanly(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    collector = subscribe(f"{unique_prefix}/#")
    with RtspServer(clip) as server:
        cameras = f"  - id: gate\n    type: rtsp\n    url: {server.url}\n"
        agent = start_agent(write_config(tmp_path, samples, broker, unique_prefix, cameras))
        try:
            messages = collector.wait_for("/box1/gate/detections", count=10, timeout=60)
        finally:
            agent.send_signal(signal.SIGTERM)
            started = time.monotonic()
            output, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0, output
    assert time.monotonic() - started < 15
    payloads = [json.loads(m.payload) for m in messages]
    for payload in payloads:
        jsonschema.validate(payload, SCHEMA)
    sequences = [p["sequence"] for p in payloads]
    assert sequences == sorted(sequences)
    assert payloads[0]["frame"] == {"width": 768, "height": 576}
    collector.wait_for("/box1/status", count=2)
    assert collector.on_topic("/box1/status")[-1].payload == b"offline"


def test_missing_model_names_the_file(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str, clip: Path
) -> None:
    config = write_config(
        tmp_path, samples, broker, unique_prefix,
        f"  - id: street\n    type: file\n    path: {clip}\n",
    )
    broken = tmp_path / "truncated.onnx"
    broken.write_bytes((samples / "models" / "yolox_nano.onnx").read_bytes()[:50_000])
    config.write_text(config.read_text().replace(str(samples / "models" / "yolox_nano.onnx"),
                                                 str(broken)))
    agent = start_agent(config)
    output, _ = agent.communicate(timeout=60)
    assert agent.returncode == 1
    assert str(broken) in output
    assert "truncated or corrupt" in output


def test_check_config_and_version() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(REPO / "configs/demo.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    version = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "--version"],
        capture_output=True, text=True, check=False,
    )
    assert version.returncode == 0
    assert version.stdout.startswith("edge-agent ")


def test_two_cameras_share_the_engine_each_in_order(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    traffic = samples / "media" / "traffic_frames.mp4"
    collector = subscribe(f"{unique_prefix}/#")
    cameras = (
        f"  - id: street\n    type: file\n    path: {clip}\n    realtime: false\n"
        f"  - id: road\n    type: file\n    path: {traffic}\n    realtime: false\n"
    )
    agent = start_agent(write_config(tmp_path, samples, broker, unique_prefix, cameras))
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode == 0, output
    street = collector.wait_for("/box1/street/detections", count=CLIP_FRAMES)
    road = collector.wait_for("/box1/road/detections", count=frame_count(traffic))
    assert [json.loads(m.payload)["sequence"] for m in street] == list(range(CLIP_FRAMES))
    assert [json.loads(m.payload)["sequence"] for m in road] == list(range(len(road)))
    road_frame = json.loads(road[0].payload)["frame"]
    assert road_frame == {"width": 960, "height": 540}
    cars = [d for m in road for d in json.loads(m.payload)["detections"] if d["label"] == "car"]
    assert cars, "the highway clip shows cars"
