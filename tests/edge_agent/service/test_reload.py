"""SIGHUP reload against the real agent: a broken file keeps the old config running;
a good one starts the added camera and leaves the unchanged one running."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema

from tests.helpers import REPO, Broker, free_port, start_agent, stop_agent, write_config

STATE_SCHEMA = json.loads((REPO / "docs" / "schemas" / "camera-state.schema.json").read_text())


def wait_for_log(log: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout}s:\n{log.read_text()}")
        time.sleep(0.1)


def _sequences(collector, suffix: str) -> list[int]:
    return [p["sequence"] for p in collector.json_on(suffix)]


def _detect_edits_apply_in_place(agent, log: Path, collector, write, road_camera: str) -> None:
    """detect: a class the model lacks is refused at its line; a good edit applies in
    place: the road camera is not restarted and infers 2 of its 30 frames/s."""
    config = write(road_camera + "    detect:\n      min_score: {persn: 0.5}\n")
    agent.send_signal(signal.SIGHUP)
    wait_for_log(log, "min_score.persn: 'persn' is not a class of this model")
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "persn" in text)
    assert f"{config}:{line}: cameras[1]" in log.read_text()
    write(road_camera + "    detect:\n      fps: 2\n")
    agent.send_signal(signal.SIGHUP)
    wait_for_log(log, "camera road detect/masks applied in place")
    time.sleep(1.0)
    road_count = len(_sequences(collector, "/road/detections"))
    time.sleep(3.0)
    assert 3 <= len(_sequences(collector, "/road/detections")) - road_count <= 9


def test_reload_bad_then_good(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    street = samples / "media" / "vtest.mp4"
    road = samples / "media" / "traffic_frames.mp4"
    one = f"  - id: street\n    type: file\n    path: {street}\n    loop: true\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, one)
    good = config.read_text()
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for("/street/detections", count=5, timeout=60)

        config.write_text(good.replace("model:", "model:\n  scor: 1"))
        agent.send_signal(signal.SIGHUP)
        time.sleep(2.0)
        before = len(_sequences(collector, "/street/detections"))
        time.sleep(2.0)
        assert agent.poll() is None
        assert len(_sequences(collector, "/street/detections")) > before + 5
        assert "reload rejected" in log.read_text()
        assert "model.scor: unknown key" in log.read_text()

        road_camera = f"  - id: road\n    type: file\n    path: {road}\n    loop: true\n"
        write_config(tmp_path, samples, broker, unique_prefix, one + road_camera)
        agent.send_signal(signal.SIGHUP)
        collector.wait_for("/road/detections", count=5, timeout=30)
        assert "reload: starting camera road" in log.read_text()
        assert "stopping camera street" not in log.read_text()  # unchanged: left running

        disabled = one.replace("    loop: true\n", "    loop: true\n    enabled: false\n")
        write_config(tmp_path, samples, broker, unique_prefix, disabled + road_camera)
        agent.send_signal(signal.SIGHUP)
        wait_for_log(log, "stopping camera street (removed or disabled)")
        time.sleep(1.0)
        street_count = len(_sequences(collector, "/street/detections"))
        road_count = len(_sequences(collector, "/road/detections"))
        time.sleep(2.0)
        assert len(_sequences(collector, "/street/detections")) == street_count
        assert len(_sequences(collector, "/road/detections")) > road_count + 5
        _detect_edits_apply_in_place(
            agent, log, collector,
            lambda road: write_config(tmp_path, samples, broker, unique_prefix, disabled + road),
            road_camera,
        )
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    street_seq = _sequences(collector, "/street/detections")
    assert street_seq == list(range(len(street_seq)))  # never restarted, never repeated
    assert "reload: stopping camera road" not in log.read_text()
    states = collector.on_topic("/street/state")
    assert states[-1].payload == b""  # the removed camera's retained state is cleared


def test_signal_storm_then_sigterm_stops_cleanly(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    """200 reload requests while frames flow, then SIGTERM: a clean, quick exit 0."""
    one = f"  - id: street\n    type: file\n    path: {samples / 'media' / 'vtest.mp4'}\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, one)
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for("/street/detections", count=3, timeout=60)
        for _ in range(200):
            agent.send_signal(signal.SIGHUP)
            time.sleep(0.002)
    finally:
        started = time.monotonic()
        stop_agent(agent, log, timeout=30)
    assert agent.returncode == 0, log.read_text()
    assert time.monotonic() - started < 20


def reload_command(config: Path) -> subprocess.CompletedProcess[str]:
    """`edge-agent reload`: checks the file, signals the agent, prints the outcome."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "reload", "--config", str(config),
         "--timeout", "60"],
        capture_output=True, text=True, timeout=90, check=False,
    )


def test_model_reload_keeps_the_old_model_until_a_good_one_loads(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    one = f"  - id: street\n    type: file\n    path: {samples / 'media' / 'vtest.mp4'}\n"
    one += "    loop: true\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, one)
    good = config.read_text()
    model = samples / "models" / "yolox_nano.onnx"
    truncated = tmp_path / "broken.onnx"
    truncated.write_bytes(model.read_bytes()[:5000])
    renamed = tmp_path / "nano-v2.onnx"
    shutil.copy(model, renamed)
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for("/street/detections", count=3, timeout=60)

        config.write_text(good.replace(str(model), str(truncated)))
        rejected = reload_command(config)
        assert rejected.returncode == 1, rejected.stderr
        assert "rejected" in rejected.stderr
        assert str(truncated) in rejected.stderr
        info = json.loads(collector.wait_for("/box1/info", count=2)[-1].payload)
        assert info["config"]["last_reload"]["ok"] is False
        assert str(truncated) in info["config"]["last_reload"]["error"]
        count = len(collector.on_topic("/street/detections"))
        collector.wait_for("/street/detections", count=count + 5, timeout=30)  # still served
        assert {p["model"]["name"] for p in collector.json_on("/street/detections")} == {
            "yolox_nano"
        }

        config.write_text(good.replace(str(model), str(renamed)))
        applied = reload_command(config)
        assert applied.returncode == 0, applied.stderr + log.read_text()
        assert "model nano-v2" in applied.stdout
        assert "camera street restarted" in applied.stdout
        count = len(collector.on_topic("/street/detections"))
        collector.wait_for("/street/detections", count=count + 5, timeout=60)
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    payloads = collector.json_on("/street/detections")
    assert payloads[-1]["model"]["name"] == "nano-v2"
    sequences = [p["sequence"] for p in payloads]
    # The restarted camera continues its numbering: no frame number is used twice.
    assert sequences == sorted(set(sequences))
    info = json.loads(collector.on_topic("/box1/info")[-1].payload)
    assert info["model"]["name"] == "nano-v2"
    assert info["config"]["last_reload"]["ok"] is True


def test_reload_command_refuses_an_invalid_file_without_signalling(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    one = f"  - id: street\n    type: file\n    path: {samples / 'media' / 'vtest.mp4'}\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, one)
    config.write_text(config.read_text().replace("model:", "model:\n  scor: 1"))
    result = reload_command(config)
    assert result.returncode == 2
    assert "model.scor: unknown key" in result.stderr
    assert "not reloaded" in result.stderr


def test_camera_state_is_published_retained(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    cameras = (
        f"  - id: street\n    type: file\n    path: {samples / 'media' / 'vtest.mp4'}\n"
        f"    loop: true\n"
        f"  - id: gate\n    type: rtsp\n    url: rtsp://127.0.0.1:{free_port()}/none\n"
    )
    config = write_config(tmp_path, samples, broker, unique_prefix, cameras)
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        live = subscribe(f"{unique_prefix}/+/+/state")
        live.wait_for("/gate/state", count=2, timeout=30)
        late = subscribe(f"{unique_prefix}/+/+/state")  # retained: a late subscriber sees it
        street = late.wait_for("/street/state")[-1]
        gate = late.wait_for("/gate/state")[-1]
    finally:
        stop_agent(agent, log)
    assert street.retain
    assert json.loads(street.payload)["state"] == "RUNNING"
    body = json.loads(gate.payload)
    jsonschema.validate(body, STATE_SCHEMA)
    assert body["state"] in {"BACKOFF", "FAILED"}
    assert body["reconnects"] >= 1
    assert "cannot open RTSP stream" in body["last_error"]
