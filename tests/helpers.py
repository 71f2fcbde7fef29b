"""Helpers every test file may import: the one place for them (test files never import
each other; tests/test_layout.py checks it). Fixtures live in tests/conftest.py.

Groups: paths and ports, video, the broker and MQTT subscribers, the agent process and
its config, publisher settings, `watch` traffic, detection messages, engine checks.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edge_agent.config.model import MqttConfig
from edge_agent.publish.payload import detections_payload, info_payload
from engines.base import Detections, InputSpec, ModelInfo

REPO = Path(__file__).resolve().parent.parent
SAMPLES = Path(os.environ.get("EDGE_AGENT_SAMPLES", REPO / "samples"))
HEALTH_SCHEMA = json.loads((REPO / "docs" / "schemas" / "health.schema.json").read_text())

# -- ports and time ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {condition}")
        time.sleep(0.02)


# -- video -------------------------------------------------------------------------------


def first_frames(samples: Path, out: Path, frames: int) -> Path:
    """The first frames of the sample street video, re-encoded: a short real H.264 file."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(samples / "media" / "vtest.mp4"),
         "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out


def frame_count(video: Path) -> int:
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


# -- the broker and subscribers ----------------------------------------------------------


@dataclass
class Broker:
    """A running mosquitto on 127.0.0.1:port that a test may stop and start again."""

    port: int
    conf: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    host: str = "127.0.0.1"

    def start(self) -> None:
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is not installed: run scripts/setup")
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        """SIGTERM until it exits (it saves sessions first); SIGKILL after 10 s.

        Repeated because mosquitto 2.0 sets `run = 1` after installing its SIGTERM
        handler and after its listener opens: a SIGTERM in that window is forgotten
        and one signal would leave it running (seen in CI: stop right after start).
        """
        if self.process is not None:
            terminate(self.process)
        self.process = None


def spawn(*argv: str) -> subprocess.Popen[bytes]:
    """Start `argv` and return once it has exec'd: until then the child's command line
    (/proc/PID/cmdline, what state_files.running_pid reads) is this test run's."""
    child = subprocess.Popen([*argv])
    cmdline = Path(f"/proc/{child.pid}/cmdline")
    wait_until(lambda: child.poll() is not None
               or cmdline.read_bytes().split(b"\0")[-2:-1] == [argv[-1].encode()])
    return child


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop `process` with SIGTERM, resent every 0.5 s; SIGKILL after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
    if process.poll() is None:
        process.kill()
        process.wait()


def restart_with(broker: Broker, extra: str) -> None:
    """Give the test broker more listeners; its own port stays anonymous for `subscribe`."""
    broker.stop()
    broker.conf.write_text(
        "user root\n"  # when run as root, do not drop to `mosquitto`: it cannot read tmp_path
        "per_listener_settings true\npersistence false\n"
        f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n{extra}"
    )
    broker.start()


def persist_sessions(broker: Broker, tmp_path: Path) -> None:
    """Restart the broker keeping sessions on disk, so a watcher misses nothing."""
    broker.stop()
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {tmp_path}/\nuser root\n"
    )
    broker.start()


@dataclass
class Collector:
    """A real MQTT subscriber that records every message it receives."""

    client: mqtt.Client
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append(msg)
            self.arrived.notify_all()

    def on_topic(self, suffix: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def json_on(self, suffix: str) -> list[dict]:
        return [json.loads(m.payload) for m in self.on_topic(suffix)]

    def wait_for(
        self, suffix: str, count: int = 1, timeout: float = 30.0
    ) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                found = [m for m in self.messages if m.topic.endswith(suffix)]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self.arrived.wait(left)
        if len(found) < count:
            raise AssertionError(f"{len(found)} of {count} messages on *{suffix} in {timeout}s")
        return found


def start_broker(folder: Path) -> Broker:
    """A private Mosquitto on a free loopback port, its config and log in `folder`."""
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = Broker(port=port, conf=conf, log=folder / "mosquitto.log")
    broker.start()
    return broker


def subscribed(broker: Broker, topic: str, client: mqtt.Client | None = None) -> Collector:
    """A QoS 1 subscription of `topic` (a fresh clean-session client unless given), its
    SUBACK awaited; the Collector holds the client (stop it with loop_stop/disconnect)."""
    client = client or mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"test-{uuid.uuid4().hex}")
    collector = Collector(client)
    client.on_message = collector.on_message
    done = threading.Event()
    client.on_subscribe = lambda *_args: done.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    if not done.wait(10):
        raise TimeoutError(f"subscription to {topic} not acknowledged")
    return collector


def persistent_subscriber(broker: Broker, topic: str) -> Collector:
    """A QoS 1 subscriber whose session the broker keeps across its own restart."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:8]}",
        clean_session=False,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    return subscribed(broker, topic, client)


def _config_text(tmp_path: Path, samples: Path, mqtt: str, cameras: str) -> str:
    """The tests' agent config: box1, the sample model on OpenVINO CPU, `mqtt` lines."""
    return f"""
device_id: box1
state_dir: {tmp_path / "state"}
model:
  path: {samples / "models" / "yolox_nano.onnx"}
  labels: {samples / "models" / "coco_labels.txt"}
backend:
  type: openvino
  device: CPU
mqtt:
{mqtt}
cameras:
{cameras}
"""


def snapshot_config(tmp_path: Path, samples: Path, cameras: str) -> Path:
    """A config for the tools that need no broker (snapshot): its port is a free one."""
    config = tmp_path / "agent.yaml"
    config.write_text(_config_text(tmp_path, samples, f"  port: {free_port()}", cameras))
    return config


# -- the agent process -------------------------------------------------------------------


def write_config(
    tmp_path: Path, samples: Path, broker: Broker, prefix: str, cameras: str
) -> Path:
    config = tmp_path / "agent.yaml"
    mqtt = f"  host: 127.0.0.1\n  port: {broker.port}\n  topic_prefix: {prefix}"
    config.write_text(_config_text(tmp_path, samples, mqtt, cameras))
    kept = tmp_path / ".metrics-port"  # an agent already ran on this folder: same port
    if kept.exists():
        config.write_text(config.read_text() + _metrics_block(kept))
    return config


def health_config(
    tmp_path: Path, samples: Path, broker: Broker, prefix: str, cameras: str, health: str
) -> Path:
    config = write_config(tmp_path, samples, broker, prefix, cameras)
    config.write_text(config.read_text() + "health:\n" + health)
    return config


def start_agent(
    config: Path, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The real agent process; its output goes to `log` (for long runs) or a pipe.

    `env` adds variables to this process's environment (EDGE_AGENT_FAULT, say).
    """
    own_metrics_port(config)
    with log.open("w") if log else contextlib.nullcontext() as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
            stdout=sink or subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )


def own_metrics_port(config: Path) -> None:
    """Give an agent whose config leaves /metrics at its default a free port instead of
    9108, so agents of tests running in parallel (pytest-xdist) do not contend for it.

    Appended at the end, so the YAML lines that tests assert on do not move; a config
    with its own `health:` section or metrics address is left as it is. The port is kept
    beside the config, and `write_config` appends the same block to a config it writes
    there again, so a reload test's new file does not change `health`.
    """
    text = config.read_text()
    if "metrics_address" in text or re.search(r"^health:", text, re.MULTILINE):
        return
    kept = config.parent / ".metrics-port"
    if not kept.exists():
        kept.write_text(str(free_port()))
    config.write_text(f"{text.rstrip()}\n{_metrics_block(kept)}")


def _metrics_block(kept: Path) -> str:
    return f"health:\n  metrics_address: 127.0.0.1:{kept.read_text().strip()}\n"


def stop_agent(agent: subprocess.Popen[str], log: Path, timeout: float = 60.0) -> None:
    """SIGTERM, then wait; on a hang, kill it and fail with what it logged."""
    agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()
        pytest.fail(f"agent did not stop within {timeout}s after SIGTERM:\n{log.read_text()}")


def validated_health(payload: bytes) -> dict:
    body = json.loads(payload)
    jsonschema.validate(body, HEALTH_SCHEMA, format_checker=jsonschema.FormatChecker())
    return body


def wait_for_health(collector: Collector, predicate: Callable[[dict], bool],
                    timeout: float) -> dict:
    """The first health message that satisfies `predicate`, validated on the way."""
    deadline = time.monotonic() + timeout
    checked = 0
    while time.monotonic() < deadline:
        messages = collector.on_topic("/health")
        for message in messages[checked:]:
            body = validated_health(message.payload)
            if predicate(body):
                return body
        checked = len(messages)
        time.sleep(0.2)
    seen = collector.json_on("/health")
    raise AssertionError(f"no matching health message in {timeout}s: {seen}")


# -- the publisher -----------------------------------------------------------------------

DEVICE = "box-1"
IR_LABELS = ("person", "bicycle", "car", "traffic_light")
"""Class names as an OpenVINO IR states them: spaces became underscores."""


def config_for(broker: Broker, prefix: str, **overrides: object) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, topic_prefix=prefix, **overrides)


def detection_message(count: int, seed: int = 0) -> bytes:
    """A detections message as the agent sends it, with `count` random-score people."""
    rng = random.Random(seed)
    detections = [
        {"label": "person", "class_id": 0, "score": round(rng.random(), 3),
         "box": {"x1": 1.5, "y1": 2.5, "x2": 100.5, "y2": 200.5},
         "box_normalized": {"x1": 0.0012, "y1": 0.0035, "x2": 0.0785, "y2": 0.2785}}
        for _ in range(count)
    ]
    message = {"schema_version": 1, "timestamp": "2026-11-23T16:02:48.217Z", "camera": "gate",
               "sequence": seed, "frame": {"width": 1280, "height": 720},
               "model": {"name": "m", "sha256": "0" * 64}, "backend": "openvino",
               "device": "CPU", "inference_ms": 7.5, "detections": detections}
    return json.dumps(message, separators=(",", ":")).encode()


# -- `edge-agent watch` against fake agent traffic ---------------------------------------

WATCH_MODEL = ModelInfo(path="/models/yolox_nano.onnx", name="yolox_nano", sha256="0" * 64,
                        family="yolox", class_names=("person", "bicycle", "car"))
WATCH_RATE = 20.0


def frame_payload(camera: str, sequence: int, classes: list[int], captured_at: float) -> bytes:
    count = len(classes)
    boxes = np.tile(np.array([[10, 20, 110, 220]], np.float32), (count, 1))
    return detections_payload(
        camera_id=camera, sequence=sequence, captured_at=captured_at, frame_width=640,
        frame_height=480, model=WATCH_MODEL, backend="openvino", device="CPU",
        inference_ms=8.0,
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
            backend_reason="test", model=WATCH_MODEL,
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
            next_due += 1.0 / WATCH_RATE
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


def watch_config(tmp_path: Path, samples: Path, broker: Broker, prefix: str) -> Path:
    """A config for `watch`: only the broker and topic prefix matter."""
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


# -- engines -----------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def onnx_metadata_entry(key: bytes, value: bytes) -> bytes:
    """One ONNX ModelProto.metadata_props entry (field 14), appended as protobuf allows."""

    def varint(number: int) -> bytes:
        out = b""
        while True:
            low, number = number & 0x7F, number >> 7
            if not number:
                return out + bytes([low])
            out += bytes([low | 0x80])

    def entry(num: int, data: bytes) -> bytes:
        return varint((num << 3) | 2) + varint(len(data)) + data

    return entry(14, entry(1, key) + entry(2, value))


@functools.cache
def real_gpu_missing() -> str | None:
    """Why the real TensorRT tests cannot run here, or None when they can."""
    try:
        tensorrt = importlib.import_module("tensorrt")
        cuda = importlib.import_module("pycuda.driver")
    except ImportError as exc:
        return f"TensorRT/pycuda not installed ({exc}); see docs/tensorrt.md"
    if not hasattr(tensorrt, "Builder"):
        return "the tensorrt module here has no Builder: not NVIDIA's package"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device"
    except Exception as exc:  # pycuda raises its own Error type
        return f"CUDA is not usable: {exc}"
    return None


# -- commands (docs/commands.md) ----------------------------------------------------------

COMMAND_RESULT_SCHEMA = json.loads(
    (REPO / "docs" / "schemas" / "command-result.schema.json").read_text())
COMMAND_RESULT = jsonschema.Draft202012Validator(
    COMMAND_RESULT_SCHEMA, format_checker=jsonschema.FormatChecker())
"""Checked once, reused: validating thousands of fuzz results stays fast."""


class CommandClient:
    """An operator on the broker: sends requests to one box (`base` = prefix/device_id)
    and collects its results, each validated against command-result.schema.json."""

    def __init__(self, broker: Broker, base: str, username: str | None = None,
                 password: str | None = None, validate: bool = True) -> None:
        """`validate=False`: results are parsed, not validated (a fuzz checks a sample)."""
        self.base = base
        self.validate = validate
        self._read = 0
        self._results: list[dict] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"operator-{uuid.uuid4().hex[:8]}")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.collector = Collector(self.client)
        self.client.on_message = self.collector.on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe([(f"{base}/cmd/{levels}result", 1)
                               for levels in ("+/", "+/+/", "+/+/+/")])
        if not subscribed.wait(10):
            raise TimeoutError("result subscription not acknowledged")

    def send(self, name: str, body: dict | bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.publish(f"{self.base}/cmd/{name}", payload, qos=qos)

    def results(self) -> list[dict]:
        """Every result so far (progress included), validated once, in arrival order."""
        with self.collector.lock:
            new = self.collector.messages[self._read:]
            self._read += len(new)
        for message in new:
            if message.topic.endswith("/result"):
                body = json.loads(message.payload)
                if self.validate:
                    COMMAND_RESULT.validate(body)
                self._results.append(body)
        return list(self._results)

    def finals(self) -> list[dict]:
        return [b for b in self.results() if b["outcome"] != "progress"]

    def result(self, request_id: str, timeout: float = 30.0, count: int = 1) -> dict:
        """The `count`-th final result for `request_id` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [b for b in self.finals() if b["request_id"] == request_id]
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no result {count} for {request_id} in {timeout}s: "
                             f"{self.results()[-5:]}")

    def call(self, name: str, timeout: float = 30.0, **args: object) -> dict:
        request_id = uuid.uuid4().hex
        self.send(name, {"request_id": request_id, **args})
        return self.result(request_id, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
# -- INT8 builds (engines/int8.py, edge-agent quantize) --------------------------------

INT8_CALIBRATION = 20
"""Calibration frames of the test builds: NNCF's statistics pass costs about 0.3 s a frame
on 2 busy cores; the guard's check frames are as many again."""


def video_frames(video: Path, start: int, stop: int, step: int) -> list[np.ndarray]:
    """Frames start, start+step ... (before stop) of a video, decoded by OpenCV."""
    capture = cv2.VideoCapture(str(video))
    frames, index = [], 0
    while index < stop:
        ok, frame = capture.read()
        if not ok:
            break
        if index >= start and (index - start) % step == 0:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


def int8_images(samples: Path, folder: Path) -> Path:
    """20 street frames to calibrate on, then 20 later ones to check on (sorted by name):
    the check frames are 20 s further on, never neighbours of calibration frames."""
    folder.mkdir(parents=True, exist_ok=True)
    video = samples / "media" / "vtest.mp4"
    frames = video_frames(video, 0, 200, 10) + video_frames(video, 400, 800, 20)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:03d}.jpg"), frame)
    return folder


def int8_settings(min_f1: float = 0.9, check: int = INT8_CALIBRATION) -> str:
    """The backend section of a config whose INT8 builds match the test builds' key."""
    return ("backend:\n  type: openvino\n  device: CPU\n  precision: int8\n"
            f"  int8_min_f1: {min_f1}\n  int8_calibration_frames: {INT8_CALIBRATION}\n"
            f"  int8_check_frames: {check}\n")


def scaled_fake_quantize(source: Path, target: Path, factor: float) -> None:
    """A copy of an INT8 IR whose activation ranges are all `factor` times too narrow: the
    damage a wrong calibration scale does (values clip), for the guard to catch."""
    import openvino as ov

    model = ov.Core().read_model(str(source))
    for node in model.get_ordered_ops():
        if node.get_type_name() != "FakeQuantize":
            continue
        for port in range(1, 5):  # input_low, input_high, output_low, output_high
            source_node = node.input_value(port).get_node()
            if source_node.get_type_name() != "Constant":
                continue
            value = source_node.get_data().astype(np.float32)  # stays an array when 0-d
            value *= np.float32(factor)
            node.input(port).replace_source_output(ov.op.Constant(value).output(0))
    ov.save_model(model, str(target), compress_to_fp16=False)
