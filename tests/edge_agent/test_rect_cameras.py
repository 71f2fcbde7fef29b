"""Two cameras of different aspect on one model, the real agent end to end: each gets
its own compiled input shape (16:9 -> 416x256, 4:3 -> 416x320), both publish every frame
in order with boxes inside their own frame, and the retained info says rectangular."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import REPO, Broker, start_agent, stop_agent, write_config

INFO_SCHEMA = json.loads((REPO / "docs" / "schemas" / "info.schema.json").read_text())
SHAPES = {"wide": ("416x256", 960, 540), "street": ("416x320", 768, 576)}


@pytest.mark.slow
def test_two_aspects_on_one_model(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str,
) -> None:
    collector = subscribe(f"{unique_prefix}/#")
    media = samples / "media"
    cameras = (f"  - {{id: wide, type: file, path: {media / 'traffic_frames.mp4'}, "
               "realtime: false, loop: true}\n"
               f"  - {{id: street, type: file, path: {media / 'vtest.mp4'}, "
               "realtime: false, loop: true}\n")
    log = tmp_path / "agent.log"
    agent = start_agent(write_config(tmp_path, samples, broker, unique_prefix, cameras), log)
    try:
        deadline = time.monotonic() + 90
        while not all(f"(yolox, {shape}) compiled" in log.read_text()
                      for shape, _, _ in SHAPES.values()):
            assert agent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        counts = {camera: len(collector.on_topic(f"/{camera}/detections")) for camera in SHAPES}
        for camera, count in counts.items():  # frames after both compiles ran rectangular
            collector.wait_for(f"/box1/{camera}/detections", count=count + 10, timeout=60)
    finally:
        stop_agent(agent, log)
    text = log.read_text()
    assert text.count("compiled on CPU") == 3, text  # the model's own size, then one per aspect
    assert "frames of that shape use" not in text
    for camera, (_, width, height) in SHAPES.items():
        payloads = collector.json_on(f"/box1/{camera}/detections")
        assert [p["sequence"] for p in payloads] == list(range(len(payloads)))
        assert payloads[-1]["frame"] == {"width": width, "height": height}
        boxes = [d["box"] for p in payloads for d in p["detections"]]
        assert boxes, camera
        assert all(0 <= b["x1"] < b["x2"] <= width and 0 <= b["y1"] < b["y2"] <= height
                   for b in boxes)
    info = collector.json_on("/box1/info")[0]
    jsonschema.validate(info, INFO_SCHEMA)
    assert info["model"]["input"] == {"width": 416, "height": 416, "shapes": {
        "mode": "auto", "rectangular": True, "notice": None}}
