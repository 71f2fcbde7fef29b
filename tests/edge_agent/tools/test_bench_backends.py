"""`edge-agent bench --backend`: one backend instead of the config's, or every present one.

The loop figures themselves are measured by the real bench; here the choice of configs,
and a short real run of ONNX Runtime and OpenVINO side by side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config.model import AgentConfig
from edge_agent.selection.probe import detect_runtimes
from edge_agent.tools.bench import configs_to_bench

REPO = Path(__file__).resolve().parents[3]


def config(samples: Path) -> AgentConfig:
    return AgentConfig(model={"path": samples / "models" / "yolox_nano.onnx"},
                       cameras=[{"id": "v", "type": "file", "path": samples / "media" /
                                 "vtest.mp4"}],
                       backend={"type": "openvino", "device": "CPU"})


def test_no_option_benches_the_config_as_it_is(samples: Path) -> None:
    assert configs_to_bench(config(samples), None) == [config(samples)]


def test_one_backend_replaces_the_configs(samples: Path) -> None:
    [chosen] = configs_to_bench(config(samples), "onnxruntime")
    assert chosen.backend.type == "onnxruntime"
    assert chosen.model == config(samples).model


def test_all_is_every_backend_whose_runtime_is_here(samples: Path) -> None:
    runtimes = detect_runtimes()
    chosen = [c.backend.type for c in configs_to_bench(config(samples), "all")]
    assert "openvino" in chosen
    for name in ("tensorrt", "onnxruntime"):
        assert (name in chosen) is runtimes.status(name).usable


@pytest.mark.slow
def test_bench_all_reports_onnxruntime_beside_openvino(samples: Path, tmp_path: Path) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    path = tmp_path / "agent.yaml"
    path.write_text(f"model:\n  path: {samples / 'models' / 'yolox_nano.onnx'}\n"
                    f"state_dir: {tmp_path / 'state'}\ncameras:\n  - id: v\n    type: file\n"
                    f"    path: {samples / 'media' / 'vtest.mp4'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "bench", "--config", str(path),
         "--backend", "all", "--seconds", "1", "--json"],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(done.stdout)["runs"]
    by_backend = {run["backend"]: run for run in runs}
    assert {"openvino", "onnxruntime"} <= set(by_backend)
    for run in runs:
        assert run["engine_fps"] > 0
        assert run["loop_frames"] > 0
        assert run["published"] == run["acknowledged"]
