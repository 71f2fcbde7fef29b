"""`edge-agent watch` against a real broker fed by a real paho publisher."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edge_agent.publish.payload import detections_payload, info_payload
from edge_agent.tools.watch import WatchState, render
from engines.base import Detections, InputSpec, ModelInfo
from tests.conftest import REPO, Broker

MODEL = ModelInfo(path="/models/yolox_nano.onnx", name="yolox_nano", sha256="0" * 64,
                  family="yolox", class_names=("person", "bicycle", "car"))
RATE = 20.0


def frame_payload(camera: str, sequence: int, classes: list[int], captured_at: float) -> bytes:
    count = len(classes)
    boxes = np.tile(np.array([[10, 20, 110, 220]], np.float32), (count, 1))
    return detections_payload(
        camera_id=camera, sequence=sequence, captured_at=captured_at, frame_width=640,
        frame_height=480, model=MODEL, backend="openvino", device="CPU", inference_ms=8.0,
        detections=Detections(boxes, np.full(count, 0.8, np.float32),
                              np.array(classes, np.int32)),
    )


class FakeAgentTraffic:
    """A real MQTT client publishing what an agent publishes, at a steady frame rate."""

    def __init__(self, broker: Broker, base: str) -> None:
        self.base = base
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fake-agent")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def retained(self) -> None:
        self.client.publish(f"{self.base}/status", "online", qos=1, retain=True).wait_for_publish(5)
        info = info_payload(
            device_id="box1", started_at=time.time() - 60, backend="openvino", device="CPU",
            backend_reason="test", model=MODEL,
            input_spec=InputSpec(name="images", height=416, width=416),
            cameras=[("street", "rtsp"), ("yard", "rtsp")],
        )
        self.client.publish(f"{self.base}/info", info, qos=1, retain=True).wait_for_publish(5)

    def _run(self) -> None:
        sequence = 0
        next_due = time.monotonic()
        while not self.stop.is_set():
            # two people and a car in every frame of camera street
            payload = frame_payload("street", sequence, [0, 0, 2], time.time())
            self.client.publish(f"{self.base}/street/detections", payload, qos=0)
            sequence += 1
            next_due += 1.0 / RATE
            self.stop.wait(max(0.0, next_due - time.monotonic()))

    def __enter__(self) -> FakeAgentTraffic:
        self.retained()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def write_config(tmp_path: Path, samples: Path, broker: Broker, prefix: str) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(f"""
device_id: box1
model:
  path: {samples / "models" / "yolox_nano.onnx"}
mqtt:
  host: 127.0.0.1
  port: {broker.port}
  topic_prefix: {prefix}
cameras:
  - id: street
    type: rtsp
    url: rtsp://127.0.0.1:8554/street
""")
    return config


def watch(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "watch", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )


def table_row(output: str, camera: str) -> list[str]:
    rows = [line.split() for line in output.splitlines() if line.split()[:1] == [camera]]
    assert rows, output
    return rows[-1]


def test_watch_shows_each_camera_with_fps_and_classes(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    config = write_config(tmp_path, samples, broker, unique_prefix)
    with FakeAgentTraffic(broker, f"{unique_prefix}/box1"):
        time.sleep(0.5)
        done = watch(config, "--once", "--seconds", "3")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out, "no terminal escapes when stdout is not a tty"
    assert f"{unique_prefix}/box1 on 127.0.0.1:{broker.port}   status: online" in out
    assert "openvino on CPU, model yolox_nano (416x416)" in out
    street = table_row(out, "street")
    # camera, state, fps, in fps, dropped, infer ms, delay ms, last msg, classes
    fps = float(street[2])
    assert 0.75 * RATE <= fps <= 1.25 * RATE, out
    assert float(street[5]) == pytest.approx(8.0)
    assert "person 2.0" in " ".join(street)
    assert "car 1.0" in " ".join(street)
    # A camera the info names but that sent nothing is shown, not hidden.
    assert "never" in table_row(out, "yard")


def test_watch_redraws_every_second_until_seconds(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    config = write_config(tmp_path, samples, broker, unique_prefix)
    with FakeAgentTraffic(broker, f"{unique_prefix}/box1"):
        started = time.monotonic()
        done = watch(config, "--seconds", "2.5")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    tables = done.stdout.count(f"{unique_prefix}/box1 on ")
    assert 3 <= tables <= 5, done.stdout
    assert "street" in done.stdout.split(f"{unique_prefix}/box1 on ")[-1]


def test_watch_reports_a_broker_it_cannot_reach(tmp_path: Path, samples: Path, broker: Broker,
                                                unique_prefix: str) -> None:
    config = write_config(tmp_path, samples, broker, unique_prefix)
    broker.stop()
    done = watch(config, "--once", "--seconds", "1")
    assert done.returncode == 1
    assert f"nothing listens on 127.0.0.1:{broker.port}" in done.stderr
    assert "fix: check mqtt.host and mqtt.port" in done.stderr


def test_render_is_a_function_of_the_state() -> None:
    state = WatchState(base_topic="p/box1", broker="broker:1883", window_s=10.0)
    wall = 1_800_000_000.0
    state.on_message("p/box1/status", b"offline", 0.0, wall)
    state.on_message("p/box1/health", json.dumps({
        "schema_version": 1, "uptime_s": 3720, "status": "degraded",
        "reasons": ["camera gate: BACKOFF"],
        "mqtt": {"connected": True, "queued": 0, "dropped": 3},
        "system": {"cpu_percent": 45.2, "rss_bytes": 300 * 2**20,
                   "disk": {"free_percent": 78.0}, "temperatures": [{"celsius": 61.5}]},
        "cameras": [
            {"id": "gate", "state": "BACKOFF", "input_fps": 0.0, "frames_dropped": 0,
             "last_error": "cannot open RTSP stream", "drift": None},
            {"id": "lobby", "state": "RUNNING", "input_fps": 10.1, "frames_dropped": 7,
             "drift": {"state": "watching", "reasons": ["covered"]}},
        ],
    }).encode(), 0.0, wall)
    for index in range(11):  # 10 fps by capture time, arriving 0.1 s apart
        arrived = 100.0 + index * 0.1
        body = frame_payload("lobby", index, [0] if index % 2 else [], wall + index * 0.1)
        state.on_message("p/box1/lobby/detections", body, arrived, wall + index * 0.1 + 0.05)
    state.on_message("p/box1/lobby/detections", b"not json", 101.0, wall)
    state.on_message("other/box2/lobby/detections", b"{}", 101.0, wall)  # not this box

    text = render(state, now=101.5, wall=wall + 1.5)
    assert text == render(state, now=101.5, wall=wall + 1.5)
    lines = text.splitlines()
    assert "p/box1 on broker:1883   status: offline" in lines[0]
    assert lines[1] == "health: degraded (camera gate: BACKOFF)"
    assert lines[2].split() == ["up", "1h02m,", "cpu", "45%,", "rss", "300", "MiB,", "disk",
                                "78%", "free,", "hottest", "62", "C,", "mqtt", "connected,",
                                "queued", "0,", "dropped", "3"]
    lobby = table_row(text, "lobby")
    # camera, state, fps, in fps, dropped, infer ms, delay ms, last msg, classes
    assert lobby[1:7] == ["RUNNING", "10.0", "10.1", "7", "8.0", "50"]
    assert "person 0.5" in " ".join(lobby)  # 5 people in 11 frames, shown per frame
    assert "view changed: covered" in text
    gate = table_row(text, "gate")
    assert gate[1:4] == ["BACKOFF", "-", "0.0"]
    assert "last error: cannot open RTSP stream" in text
    assert ("bad message on p/box1/lobby/detections: not JSON (Expecting value: line 1 "
            "column 1 (char 0))") in text

    later = render(state, now=200.0, wall=wall + 100)  # everything aged out of the window
    lobby = table_row(later, "lobby")
    assert lobby[2] == "-"  # no fps without messages in the window
    assert "(none in the window)" in later
