"""The agent with backend.batch: three cameras' frames batched on one engine, each
camera's frames published in order with none lost. Real agent, OpenVINO, video, broker."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from edge_agent.config.loader import load_config
from edge_agent.errors import ConfigError
from tests.helpers import REPO, Broker, first_frames, frame_count, start_agent, write_config

SCHEMA = json.loads((REPO / "docs" / "schemas" / "detections.schema.json").read_text())
CAMERAS = ("north", "south", "west")


@pytest.mark.slow
def test_batched_cameras_keep_their_order_and_lose_nothing(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    clip = first_frames(samples, tmp_path / "street.mp4", 24)
    frames = frame_count(clip)
    cameras = "".join(f"  - id: {name}\n    type: file\n    path: {clip}\n"
                      "    realtime: false\n" for name in CAMERAS)
    config = write_config(tmp_path, samples, broker, unique_prefix, cameras)
    config.write_text(config.read_text().replace(
        "  device: CPU\n", "  device: CPU\n  batch:\n    max_size: 3\n    max_wait_ms: 5\n"))
    collector = subscribe(f"{unique_prefix}/#")
    agent = start_agent(config)
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode == 0, output
    assert "batching frames across cameras: up to 3 per inference, 5.0 ms" in output

    for name in CAMERAS:
        messages = collector.wait_for(f"/box1/{name}/detections", count=frames)
        payloads = [json.loads(m.payload) for m in messages]
        assert [p["sequence"] for p in payloads] == list(range(frames)), name
        for payload in payloads:
            jsonschema.validate(payload, SCHEMA)
        assert sum(d["label"] == "person" for p in payloads for d in p["detections"]) >= frames
    info = json.loads(collector.wait_for("/box1/info")[0].payload)
    assert "batches of up to 3" in json.dumps(info)


@pytest.mark.parametrize(("batch", "field", "fits"), [
    ("{max_size: 1}", "max_size", False),
    ("{max_size: 65}", "max_size", False),
    ("{max_wait_ms: -1}", "max_wait_ms", False),
    ("{max_size: 4, max_wait_ms: 5, fill: true}", "fill", False),
    ("{max_size: 8, max_wait_ms: 0}", "", True),
    ("null", "", True),
])
def test_batch_setting_is_checked_with_a_clear_error(
    tmp_path: Path, samples: Path, batch: str, field: str, fits: bool
) -> None:
    config_path = tmp_path / "agent.yaml"
    config_path.write_text(f"""device_id: box1
model:
  path: {samples / "models" / "yolox_nano.onnx"}
backend:
  type: openvino
  batch: {batch}
cameras:
  - id: a
    type: file
    path: {samples / "media" / "vtest.mp4"}
""")
    if fits:
        load_config(config_path)
        return
    with pytest.raises(ConfigError) as caught:
        load_config(config_path)
    text = str(caught.value)
    assert f"agent.yaml:6: backend.batch.{field}" in text, text
