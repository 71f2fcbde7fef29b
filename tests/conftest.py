"""Shared fixtures: a private Mosquitto per test, the sample files, MQTT collectors,
publishers closed after the test. Plain helpers are in tests/helpers.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

# Older test files imported these from here; they keep working, but new code imports
# from tests.helpers.
from tests.helpers import (  # noqa: F401
    DEVICE,
    REPO,
    SAMPLES,
    Broker,
    Collector,
    first_frames,
    free_port,
    start_broker,
    subscribed,
    wait_for_port,
)


@pytest.fixture(scope="session")
def samples() -> Path:
    """The sample models and media; scripts/fetch-samples puts them there."""
    model = SAMPLES / "models" / "yolox_nano.onnx"
    if not model.is_file():
        pytest.fail(f"{model} is missing: run scripts/fetch-samples first (scripts/test does)")
    return SAMPLES


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    instance = start_broker(tmp_path)
    yield instance
    instance.stop()


@pytest.fixture
def subscribe(broker: Broker) -> Iterator:
    """Call with a topic filter; returns a Collector already subscribed."""
    clients: list[mqtt.Client] = []

    def _subscribe(topic: str) -> Collector:
        collector = subscribed(broker, topic)
        clients.append(collector.client)
        return collector

    yield _subscribe
    for client in clients:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def publishers() -> Iterator:
    """Make Publishers that are closed at the end of the test whatever happens."""
    from edge_agent.config.model import MqttConfig
    from edge_agent.publish.publisher import Publisher

    made: list[Publisher] = []

    def make(
        config: MqttConfig, device_id: str = DEVICE, state_dir: Path | None = None
    ) -> Publisher:
        publisher = Publisher(config, device_id, state_dir)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close(timeout=1.0)


@pytest.fixture(scope="session")
def int8_build(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One INT8 build of the sample model by `edge-agent quantize --images`, shared by the
    test modules that need a real one (NNCF takes tens of seconds): the config, the
    images, the build folder, the CLI's exit status and its JSON verdict."""
    import contextlib
    import io
    import json

    from edge_agent.cli import main
    from tests.helpers import int8_images, int8_settings, snapshot_config

    root = tmp_path_factory.mktemp("int8")
    config = snapshot_config(
        root, samples, f"  - {{id: cam, type: file, path: {samples}/media/vtest.mp4}}")
    config.write_text(config.read_text().replace(
        "backend:\n  type: openvino\n  device: CPU\n", int8_settings(min_f1=0.8)))
    images = int8_images(samples, root / "images")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["quantize", "--config", str(config), "--images", str(images), "--json"])
    verdict = json.loads(out.getvalue())
    return {"config": config, "images": images, "code": code, "verdict": verdict,
            "folder": Path(verdict["build"]), "state_dir": root / "state"}
