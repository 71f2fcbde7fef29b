"""Shared fixtures: a private Mosquitto per test, the sample files, MQTT collectors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = Path(os.environ.get("EDGE_AGENT_SAMPLES", REPO / "samples"))


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


def first_frames(samples: Path, out: Path, frames: int) -> Path:
    """The first frames of the sample street video, re-encoded: a short real H.264 file."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(samples / "media" / "vtest.mp4"),
         "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def samples() -> Path:
    """The sample models and media; scripts/fetch-samples puts them there."""
    model = SAMPLES / "models" / "yolox_nano.onnx"
    if not model.is_file():
        pytest.fail(f"{model} is missing: run scripts/fetch-samples first (scripts/test does)")
    return SAMPLES


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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    instance = Broker(port=port, conf=conf, log=tmp_path / "mosquitto.log")
    instance.start()
    yield instance
    instance.stop()


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


@pytest.fixture
def subscribe(broker: Broker) -> Iterator:
    """Call with a topic filter; returns a Collector already subscribed."""
    clients: list[mqtt.Client] = []

    def _subscribe(topic: str) -> Collector:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex}")
        collector = Collector(client)
        client.on_message = collector.on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *_args: subscribed.set()
        client.connect(broker.host, broker.port)
        client.loop_start()
        client.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            raise TimeoutError(f"subscription to {topic} not acknowledged")
        clients.append(client)
        return collector

    yield _subscribe
    for client in clients:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:8]}"
