"""`edge-agent run` (a real process) on a model it can never use: exit 1 with one line
that names the file and says what to do, no traceback, no crash loop.

Before the fix a model whose output fits no postprocessing started, crashed every
frame in the camera's thread and exited 1 after the camera FAILED (systemd restarted it
into the same loop); a misspelt model.path was blamed on the forced backend with the
advice to allow a fallback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import shaped_model


def _run(tmp_path: Path, model: Path, family: str = "auto") -> tuple[int, str, Path]:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: box1\nstate_dir: {tmp_path / 'state'}\n"
        f"model:\n  path: {model}\n  family: {family}\n"
        "backend:\n  type: openvino\n  device: CPU\n"
        "mqtt:\n  host: 127.0.0.1\n  port: 9\n"
        f"cameras:\n  - id: cam\n    type: file\n    path: {tmp_path / 'clip.mp4'}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return done.returncode, done.stderr, config


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("edge-agent:")]


def test_a_model_whose_output_never_fits_is_refused_by_run(tmp_path: Path) -> None:
    model = shaped_model(tmp_path / "rows", [1, 1000, 85])
    code, stderr, _ = _run(tmp_path, model, "yolox")
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = _error_lines(stderr)
    assert len(lines) == 1, stderr
    assert str(model) in lines[0]
    assert "does not fit yolox" in lines[0]
    assert "[1, 1000, 85]" in lines[0]
    assert "fall back" not in lines[0]
    assert "running 1 camera" not in stderr  # refused before any camera started


def test_a_misspelt_model_path_names_the_config_and_the_key(tmp_path: Path) -> None:
    model = tmp_path / "yolox_nanno.onnx"
    code, stderr, config = _run(tmp_path, model)
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = _error_lines(stderr)
    assert lines == [f"edge-agent: {config}: model.path: {model}: file not found (the model "
                     "file; check the path and that the agent's user can read it)"], stderr


@pytest.mark.parametrize("camera_rules", [
    "    detect: {min_score: {persn: 0.5}}\n",
    "    masks:\n      - {name: m, points: [[0, 0], [1, 0], [1, 1]], classes: [persn]}\n",
])
def test_a_start_refused_after_the_model_loaded_leaves_nothing_running(
    tmp_path: Path, samples: Path, camera_rules: str
) -> None:
    """The config is checked against the model's class names once the model is loaded;
    that refusal must close the engine, or its threads hold the exit (10 s, then
    os._exit with an ERROR that blames a stuck thread)."""
    config = tmp_path / "agent.yaml"
    models = samples / "models"
    config.write_text(
        f"device_id: box1\nstate_dir: {tmp_path / 'state'}\n"
        f"model:\n  path: {models / 'yolox_nano.onnx'}\n  labels: {models / 'coco_labels.txt'}\n"
        "backend:\n  type: openvino\n  device: CPU\n"
        "mqtt:\n  host: 127.0.0.1\n  port: 9\n"
        f"cameras:\n  - id: cam\n    type: file\n    path: {tmp_path / 'clip.mp4'}\n"
        + camera_rules
    )
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0, done.stderr
    assert "'persn' is not a class of this model" in done.stderr
    assert "still running" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
