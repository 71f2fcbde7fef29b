"""Bad models inside the real agent: NaN/inf outputs and a fixed batch of 4.

The models are the sample YOLOX changed with OpenVINO's graph API (tests/models.py); the
agent runs for real against a real Mosquitto. Before the fix, +inf in the output made
payload building raise in the camera's thread, the thread died, and the agent exited 0
saying every camera had finished; a batch-4 model did the same on its first frame.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import (
    REPO,
    Broker,
    first_frames,
    start_agent,
    stop_agent,
    wait_for_health,
    write_config,
)
from tests.models import batch_model, poisoned_model

DETECTIONS = json.loads((REPO / "docs" / "schemas" / "detections.schema.json").read_text())
FRAMES = 20


@pytest.fixture(scope="module")
def clip(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return first_frames(samples, tmp_path_factory.mktemp("model-faults") / "street.mp4", FRAMES)


def config_with_model(
    tmp_path: Path, samples: Path, broker: Broker, prefix: str, camera: str, model: Path,
    family: str = "auto",
) -> Path:
    config = write_config(tmp_path, samples, broker, prefix, camera)
    text = config.read_text().replace(
        str(samples / "models" / "yolox_nano.onnx"), f"{model}\n  family: {family}"
    )
    config.write_text(text + "health:\n  interval_s: 1\n  metrics_address: ''\n")
    return config


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(4, id="inf-scores"),  # the example: payload building raised
        pytest.param(None, id="inf-boxes-and-scores"),  # NMS lost every box, silently
    ],
)
def test_inf_in_some_outputs_every_frame_published_valid(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path,
    column: int | None,
) -> None:
    """+inf boxes and scores are dropped, never sent, never fatal; the rest is found."""
    model = poisoned_model(samples, tmp_path / "inf_rows", math.inf, rows=2000, column=column)
    collector = subscribe(f"{unique_prefix}/#")
    camera = f"  - id: street\n    type: file\n    path: {clip}\n    realtime: false\n"
    agent = start_agent(config_with_model(tmp_path, samples, broker, unique_prefix, camera, model))
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode == 0, output  # the file did play to its end
    health = wait_for_health(
        collector, lambda h: h["cameras"][0]["frames_processed"] == FRAMES, 30
    )
    messages = collector.wait_for("/box1/street/detections", count=FRAMES)
    payloads = [json.loads(m.payload) for m in messages]
    for payload in payloads:
        jsonschema.validate(payload, DETECTIONS)
    assert [p["sequence"] for p in payloads] == list(range(FRAMES))
    assert any(p["detections"] for p in payloads), "the big, finite boxes are still found"
    (street,) = health["cameras"]
    assert street["nonfinite_values"] > 0
    assert street["frames_failed"] == 0
    assert street["frames_processed"] == FRAMES


def test_all_inf_output_degrades_the_camera_and_the_agent_lives_on(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path
) -> None:
    model = poisoned_model(samples, tmp_path / "all_inf", math.inf)
    collector = subscribe(f"{unique_prefix}/#")
    camera = f"  - id: street\n    type: file\n    path: {clip}\n    loop: true\n"
    log = tmp_path / "agent.log"
    agent = start_agent(
        config_with_model(tmp_path, samples, broker, unique_prefix, camera, model), log
    )
    try:
        health = wait_for_health(
            collector, lambda h: any("fp16 overflow" in r for r in h["reasons"]), 90
        )
        assert agent.poll() is None, "the agent must not stop"
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    assert health["status"] == "degraded"
    (street,) = health["cameras"]
    assert "NaN or infinite" in street["output_problem"]
    assert street["nonfinite_values"] > 0
    assert street["frames_processed"] > 0
    # A frame with no finite output is not reported as "nothing seen".
    assert not collector.on_topic("/box1/street/detections")
    assert "fp16 overflow" in log.read_text()


@pytest.mark.parametrize("family", ["auto", "yolox"])
def test_fixed_batch_4_model_is_refused_at_start_with_what_to_do(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str, clip: Path, family: str
) -> None:
    """With family yolox it used to load and die on the first frame (exit 0); with auto it
    was reported as an unknown family."""
    model = batch_model(samples, tmp_path / "batch4", 4)
    camera = f"  - id: street\n    type: file\n    path: {clip}\n"
    config = config_with_model(tmp_path, samples, broker, unique_prefix, camera, model, family)
    agent = start_agent(config)
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode == 1, output
    assert str(model) in output
    assert "fixed batch of 4" in output
    assert "export the model with batch 1 or a dynamic batch" in output
    assert "Traceback" not in output
    assert "cannot tell the model family" not in output
