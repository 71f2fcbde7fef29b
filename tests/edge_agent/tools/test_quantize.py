"""`edge-agent quantize` and `bench --int8`'s report: what they print and exit with.

The build itself is the session's one (tests/conftest.py `int8_build`): here the command
finds it by its key and judges its stored score again, without quantizing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config.loader import load_config
from edge_agent.tools.bench_int8 import format_figures, fp_config
from edge_agent.tools.quantize import REFUSED
from tests.helpers import snapshot_config


@pytest.mark.slow
def test_a_build_is_found_by_its_key_and_judged_again(
    int8_build: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(int8_build["config"])
    f1 = int8_build["verdict"]["score"]["f1"]
    assert main(["quantize", "--config", config, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] is True
    assert again["build"] == str(int8_build["folder"])
    assert again["score"] == int8_build["verdict"]["score"]

    stricter = f"{min(1.0, f1 + 0.01):.2f}"
    assert main(["quantize", "--config", config, "--min-f1", stricter]) == REFUSED
    out = capsys.readouterr().out
    assert out.startswith("quantizing\n  model from: the config's model.path ")  # first
    out = out[out.index("INT8 build"):]
    assert out.startswith(f"INT8 build REFUSED: F1 {f1:.3f} against the FP model")
    assert f"is below int8_min_f1 {float(stricter):g}" in out
    assert "already built (--force builds again)" in out
    assert "kept for inspection, not used" in out
    assert (int8_build["folder"] / "model.xml").is_file()  # a refusal deletes nothing

    # Other calibration settings are another build: a folder of its own.
    assert main(["quantize", "--config", config, "--images", "/nonexistent/dir",
                 "--frames", "7"]) == 1
    assert "/nonexistent/dir" in capsys.readouterr().err


def test_bench_int8_report(tmp_path: Path, samples: Path) -> None:
    path = snapshot_config(tmp_path, samples, "  - {id: a, type: usb}")
    path.write_text(path.read_text().replace("type: openvino\n  device: CPU\n",
                                             "type: auto\n"))
    fp = fp_config(load_config(path))  # bench --int8 on an auto config: OpenVINO FP
    assert fp.backend.type == "openvino"
    assert fp.backend.precision == "auto"
    report = {
        "model": "yolox_nano", "device": "CPU", "video": "v.mp4", "calibration_frames": 300,
        "check_frames": 100, "preset": "mixed", "build_s": 61.0,
        "fp": {"engine_fps": 100.0, "loop_fps": 60.0, "stage_ms": {"infer": 20.0}},
        "int8": {"engine_fps": 150.0, "loop_fps": 75.0, "stage_ms": {"infer": 13.0}},
        "engine_speedup": 1.5, "loop_speedup": 1.25,
        "guard": {"f1": 0.95, "precision": 0.97, "recall": 0.93, "passed": False,
                  "min_f1": 0.96},
    }
    text = format_figures(report)
    assert "FP                   100.0      60.0     20.00" in text
    assert "INT8                 150.0      75.0     13.00" in text
    assert "INT8 / FP             1.50      1.25" in text
    assert "min 0.96: REFUSED: the agent would stay on FP" in text
    wide = {"frame": [1280, 720], "precision": "auto",
            "fp_square": {"fps": 100.0, "input": [416, 416]},
            "fp_rect": {"fps": 160.0, "input": [256, 416]},
            "fp32_square": {"fps": 80.0, "input": [416, 416]},
            "int8_square": {"fps": 110.0, "input": [416, 416]},
            "int8_rect": {"fps": 180.0, "input": [256, 416]},
            "rect_int8_over_square_fp": 1.8, "rect_int8_over_square_fp32": 2.25,
            "int8_over_fp32": 1.375}
    text = format_figures({**report, "wide": wide})
    assert "engine fps on a 1280x720 frame (FP at precision auto; FP32 at f32):" in text
    assert "INT8  rect     416x256     180.0" in text
    assert "FP32  square   416x416      80.0" in text
    assert "rect INT8 / square FP 1.80x   rect INT8 / square FP32 2.25x   square INT8 / FP32 " \
           "1.38x" in text
