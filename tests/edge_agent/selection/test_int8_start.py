"""backend.precision: int8 at start: a passing cached build runs, a refused one leaves
the FP model running with the reason, and a build made at start from the cameras' first
frames (blank ones here: a damaged calibration) is refused by the guard end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from edge_agent.config.loader import load_config
from edge_agent.errors import AgentError
from edge_agent.selection.int8 import apply_int8, camera_frames, image_frames, split
from edge_agent.selection.loading import Selection
from engines.int8_cache import MODEL, read_record
from engines.openvino import OpenVinoEngine
from tests.helpers import (
    REPO,
    Broker,
    int8_settings,
    snapshot_config,
    start_agent,
    video_frames,
    write_config,
)

INFO_SCHEMA = json.loads((REPO / "docs" / "schemas" / "info.schema.json").read_text())


@pytest.mark.parametrize(("count", "calibration", "check", "sizes", "held_from"), [
    (100, 60, 20, (60, 20), 80),   # enough: the LAST frames are held back
    (80, 60, 20, (60, 20), 60),
    (40, 60, 20, (30, 10), 30),    # too few: a quarter is held back
    (3, 60, 20, (2, 1), 2),
    (2, 1, 1, (1, 1), 1),
])
def test_split_holds_back_the_last_frames(count: int, calibration: int, check: int,
                                          sizes: tuple[int, int], held_from: int) -> None:
    frames = [np.full((2, 2, 3), index, np.uint8) for index in range(count)]
    calibrate, held = split(frames, calibration, check)
    assert (len(calibrate), len(held)) == sizes
    assert int(held[0][0, 0, 0]) == held_from
    assert int(held[-1][0, 0, 0]) == count - 1
    assert int(calibrate[-1][0, 0, 0]) < held_from  # never the same frame in both


def test_frame_sources_and_their_errors(tmp_path: Path, samples: Path) -> None:
    with pytest.raises(AgentError, match="at least 2 frames"):
        split([np.zeros((2, 2, 3), np.uint8)], 10, 10)
    with pytest.raises(AgentError, match="not a folder of calibration images"):
        image_frames(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(AgentError, match="no readable image"):
        image_frames(tmp_path)
    config = load_config(snapshot_config(tmp_path, samples, (
        f"  - {{id: a, type: file, path: {samples}/media/vtest.mp4}}\n"
        f"  - {{id: b, type: file, path: {samples}/media/traffic_frames.mp4}}\n"
        f"  - {{id: c, type: file, path: {samples}/media/vtest.mp4, enabled: false}}")))
    frames = camera_frames(config.cameras, 50)
    assert len(frames) == 45  # 25 from a, all 20 of b's short clip, none from c
    assert frames[0].shape == (576, 768, 3)
    assert frames[-1].shape == (540, 960, 3)
    with pytest.raises(AgentError, match="no camera is enabled"):
        camera_frames([config.cameras[2]], 10)


@pytest.mark.slow
def test_a_cached_build_runs_when_it_passes_and_fp_stays_when_refused(
    int8_build: dict, samples: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "state" / "int8" / int8_build["folder"].name
    shutil.copytree(int8_build["folder"], folder)
    model = samples / "models" / "yolox_nano.onnx"
    f1 = int8_build["verdict"]["score"]["f1"]
    for min_f1, runs in ((0.8, True), (min(1.0, round(f1 + 0.01, 2)), False)):
        config = snapshot_config(tmp_path, samples, (
            f"  - {{id: a, type: file, path: {samples}/media/vtest.mp4}}"))
        config.write_text(config.read_text().replace(
            "backend:\n  type: openvino\n  device: CPU\n", int8_settings(min_f1)))
        fp = OpenVinoEngine(model)
        selection, status = apply_int8(load_config(config), Selection(fp, "configured"))
        assert status is not None
        assert status.running is runs, status.reason
        assert status.f1 == pytest.approx(f1, abs=1e-4)
        assert status.build == str(folder)
        if runs:
            assert selection.engine.info.path == str(folder / MODEL)
            assert selection.engine.info.name == "yolox_nano-int8"
            assert status.model_sha256 == fp.info.sha256
            assert "INT8 build passed" in status.reason
            assert "INT8 build" in selection.reason
            # The INT8 build takes rectangular input like the FP model (input_size auto):
            # a 16:9 camera gets the 16:9 shape, not the square one.
            assert selection.engine.input_shapes is not None
            shaped = selection.engine.input_shapes.engine_for(1280, 720, wait=True)
            assert shaped.input.width > shaped.input.height, shaped.input
            assert shaped.info.path == str(folder / MODEL)
        else:
            assert selection.engine is fp
            assert status.reason.startswith("INT8 build refused: F1")
            assert "below int8_min_f1" in status.reason
        selection.engine.close()


def blank_then_street(out: Path, samples: Path, blank: int, street: int) -> Path:
    """`blank` grey frames, then `street` street frames 2 s apart: a camera whose first
    frames (the calibration) show nothing, a damaged calibration the guard must catch."""
    frames = video_frames(samples / "media" / "vtest.mp4", 400, 800, 20)[:street]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 10, (768, 576))
    for frame in [np.full_like(frames[0], 114)] * blank + frames:
        writer.write(frame)
    writer.release()
    return out


@pytest.mark.slow
def test_a_build_calibrated_on_blank_frames_is_refused_and_the_agent_runs_fp(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    collector = subscribe(f"{unique_prefix}/#")
    clip = blank_then_street(tmp_path / "clip.mp4", samples, 20, 20)
    cameras = f"  - id: street\n    type: file\n    path: {clip}\n    realtime: false\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, cameras)
    config.write_text(config.read_text().replace(
        "backend:\n  type: openvino\n  device: CPU\n", int8_settings(0.9)))
    agent = start_agent(config)
    output, _ = agent.communicate(timeout=300)
    assert agent.returncode == 0, output

    info = json.loads(collector.wait_for("/box1/info")[0].payload)
    jsonschema.validate(info, INFO_SCHEMA)
    print(f"blank calibration: {info['int8']['reason']}")
    assert info["int8"]["running"] is False
    assert info["int8"]["reason"].startswith("INT8 build refused: F1")
    assert info["int8"]["f1"] < 0.5
    assert info["model"]["name"] == "yolox_nano"  # the FP model runs
    assert "REFUSED (kept for inspection, not used)" in output
    assert "running the FP model" in output
    record = read_record(Path(info["int8"]["build"]))
    assert record is not None
    assert not record.passed
    assert record.source == "cameras street"
    assert (Path(info["int8"]["build"]) / MODEL).is_file()  # kept for inspection
    detections = collector.wait_for("/box1/street/detections", count=40)
    payloads = [json.loads(m.payload) for m in detections]
    assert {p["model"]["name"] for p in payloads} == {"yolox_nano"}
    assert sum(len(p["detections"]) for p in payloads[20:]) >= 100  # people, by FP


def test_a_build_that_cannot_start_leaves_fp_running_with_why(tmp_path: Path,
                                                              samples: Path) -> None:
    """No build in the cache and a camera that gives no frame: FP runs, info says why."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    config = snapshot_config(tmp_path, samples, (
        f"  - {{id: a, type: file, path: {tmp_path / 'empty.mp4'}}}"))
    config.write_text(config.read_text().replace(
        "backend:\n  type: openvino\n  device: CPU\n", int8_settings()))
    fp = OpenVinoEngine(samples / "models" / "yolox_nano.onnx")
    with fp:
        selection, status = apply_int8(load_config(config), Selection(fp, "configured"))
        assert selection.engine is fp
    assert status is not None
    assert not status.running
    assert status.reason.startswith("INT8 build failed: camera a: cannot open video file")
    assert status.f1 is None
    assert status.as_info()["min_f1"] == 0.9
    # Without precision int8 nothing happens at all.
    config.write_text(config.read_text().replace("  precision: int8\n", ""))
    with OpenVinoEngine(samples / "models" / "yolox_nano.onnx") as plain:
        assert apply_int8(load_config(config), Selection(plain, "x")) == (
            Selection(plain, "x"), None)
