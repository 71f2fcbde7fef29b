"""Models whose outputs can never fit their family's postprocessing are refused at load,
through the real loader (select_engine) with real OpenVINO models, by one warm-up
inference on a blank frame (engines.detector.check_model).

Before the fix each of these loaded, then failed every frame in the camera's thread: a
crash loop, the camera FAILED, the agent exited 1 and systemd restarted it into the same
loop. Now the message says what the model outputs and what the family expects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.selection.loading import select_engine
from edge_agent.selection.probe import probe
from engines.errors import EngineError, ModelLoadError
from tests.models import shaped_model

CELLS_416 = 3549

SHAPES = [
    pytest.param("yolox", [CELLS_416, 85], None, "does not fit yolox", id="rank-2"),
    pytest.param("yolox", [1, 0, 85], None, "empty or scalar", id="zero-size"),
    pytest.param("yolox", [2, CELLS_416, 85], None, "does not fit yolox", id="batch-2-output"),
    pytest.param("yolox", [1, 1, CELLS_416, 85], None, "does not fit yolox", id="extra-dims"),
    pytest.param("yolox", [1, CELLS_416, 5], None, "does not fit yolox", id="zero-classes"),
    pytest.param("yolox", [], None, "empty or scalar", id="scalar"),
    pytest.param("yolox", [1, 1000, 85], None, "does not fit yolox", id="rows-not-the-grid"),
    pytest.param("ultralytics", [1, 84, 1000], None, "does not fit ultralytics",
                 id="ultralytics-columns-not-the-grid"),
    pytest.param("ultralytics", [1, 4, 8400], [1, 3, 640, 640], "does not fit ultralytics",
                 id="ultralytics-zero-classes"),
    pytest.param("end2end", [1, 300, 5], None, "does not fit end2end", id="end2end-5-columns"),
    pytest.param("yolox", [1, CELLS_416, 85], [1, 3, -1, -1], "does not fit yolox",
                 id="dynamic-input-no-imgsz"),  # fed 640x640: 8400 cells, not 3549
    pytest.param("yolox", [1, CELLS_416, 85], [1, 3, 1, 1], "per side", id="input-1x1"),
    pytest.param("yolox", [1, CELLS_416, 85], [1, 3, 0, 0], None, id="input-0x0"),
]


def _config(tmp_path: Path, model: Path, family: str, backend: str = "openvino") -> Path:
    config = tmp_path / "agent.yaml"
    device = "  device: CPU\n" if backend == "openvino" else ""
    config.write_text(
        f"device_id: box1\nstate_dir: {tmp_path / 'state'}\n"
        f"model:\n  path: {model}\n  family: {family}\n"
        f"backend:\n  type: {backend}\n{device}"
        "cameras:\n  - id: cam\n    type: usb\n"
    )
    return config


@pytest.mark.parametrize(("family", "output", "input_shape", "said"), SHAPES)
def test_an_output_that_never_fits_is_refused_at_load(
    tmp_path: Path, family: str, output: list[int], input_shape: list[int] | None,
    said: str | None,
) -> None:
    model = shaped_model(tmp_path / "bad", output, input_shape)
    config = _config(tmp_path, model, family)
    with pytest.raises(EngineError) as caught:
        select_engine(load_config(config), probe(), config)
    message = str(caught.value)
    assert str(model) in message
    assert "\n" not in message
    assert "fall back" not in message  # another backend would refuse it alike
    if said:
        assert said in message, message
    if said and "fit" in said:  # what it outputs and what the family expects
        assert str(output) in message, message
        assert "expects" in message, message


def test_auto_does_not_try_other_backends_for_a_bad_model(tmp_path: Path) -> None:
    model = shaped_model(tmp_path / "bad", [1, 1000, 85])
    config = _config(tmp_path, model, "yolox", backend="auto")
    with pytest.raises(ModelLoadError, match="does not fit yolox"):
        select_engine(load_config(config), probe(), config)


def test_a_fitting_model_still_loads(tmp_path: Path) -> None:
    model = shaped_model(tmp_path / "good", [1, CELLS_416, 85])
    config = _config(tmp_path, model, "yolox")
    selection = select_engine(load_config(config), probe(), config)
    selection.engine.close()
