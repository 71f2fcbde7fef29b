"""The `bench --input-shapes` parts that are not timings: the 16:9 clip (real ffmpeg),
its cache, and the start-up run's config (read by the real loader)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from edge_agent.config.loader import load_config
from edge_agent.config.model import MqttConfig
from edge_agent.tools.bench_input import (
    _agent_config,
    format_input_report,
    process_cpu_s,
    wide_video,
)


def _size(video: Path) -> tuple[int, int, int]:
    capture = cv2.VideoCapture(str(video))
    try:
        return (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


def test_wide_video_is_made_once_and_kept(samples: Path, tmp_path: Path) -> None:
    source = samples / "media" / "traffic_frames.mp4"  # 960x540, 20 frames
    made = wide_video(source, tmp_path / "cache", seconds=0.5)
    assert made.parent == tmp_path / "cache"
    width, height, frames = _size(made)
    assert (width, height) == (1280, 720)
    assert frames >= 10
    stamp = made.stat().st_mtime_ns
    assert wide_video(source, tmp_path / "cache") == made  # kept, not made again
    assert made.stat().st_mtime_ns == stamp
    assert wide_video(made, tmp_path / "other") == made  # already 1280x720: used as it is
    assert not list((tmp_path / "cache").glob("*.part.mp4"))


def test_startup_config_loads_and_report_reads(samples: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(f"""
device_id: box1
model:
  path: {samples / "models" / "yolox_nano.onnx"}
  input_size: square
backend:
  type: openvino
  cache_dir: {tmp_path / "somewhere"}
mqtt:
  host: 127.0.0.1
cameras:
  - {{id: a, type: usb}}
""")
    config = load_config(base)
    startup = tmp_path / "start.yaml"
    video = samples / "media" / "vtest.mp4"
    startup.write_text(_agent_config(config, video, MqttConfig(host="127.0.0.1", port=1884),
                                     tmp_path / "state"))
    loaded = load_config(startup)
    assert loaded.model.input_size == "auto"
    assert loaded.model.path == config.model.path
    assert getattr(loaded.backend, "cache_dir", "?") is None  # cold means the state dir's
    assert loaded.state_dir == tmp_path / "state"
    assert [c.id for c in loaded.cameras] == ["wide"]
    run = {"input": [416, 416], "engine_fps": 40.0, "loop_fps": 30.0, "notice": None,
           "engine_cpu_ms": 26.0, "loop_cpu_ms": 40.0}
    report = format_input_report({
        "model": "m", "backend": "openvino", "device": "CPU", "video": str(video),
        "square": run, "rect": {**run, "input": [256, 416], "engine_fps": 64.0},
        "rect_over_square_engine": 1.6, "rect_over_square_loop": 1.0,
        "rect_over_square_engine_cpu": 1.7, "rect_over_square_loop_cpu": 1.4,
        "startup": {"cold_s": 3.0, "warm_s": 1.5}})
    assert "rect    input 416x256" in report
    assert "engine 1.60x" in report
    assert "engine 1.70x" in report
    assert "warm cache 1.50 s" in report
    assert "cold n/a" in report  # no /proc figure: said, not invented
    assert process_cpu_s(os.getpid()) > 0
    assert process_cpu_s(2**22 + 1) is None  # no such process
