"""Models that break the agent's contract, built for real: fixed batch > 1, NaN/inf outputs.

Each is the sample YOLOX changed with OpenVINO's graph API (tests/models.py), loaded by
the real OpenVINO backend and run on a real photo.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.engine_cache import concrete_shape
from engines.errors import ModelLoadError
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter, NonFiniteOutputError, count_nonfinite, postprocess
from engines.preprocess import prepare
from tests.models import batch_model, dynamic_batch_model, poisoned_model


@pytest.mark.parametrize("batch", [2, 4])
def test_fixed_batch_is_refused_at_load_with_what_to_do(
    tmp_path: Path, samples: Path, batch: int
) -> None:
    model = batch_model(samples, tmp_path / f"batch{batch}", batch)
    for family in ("auto", "yolox"):  # neither guessed as another family nor accepted
        with pytest.raises(ModelLoadError) as caught:
            OpenVinoEngine(model, family=family)
        message = str(caught.value)
        assert str(model) in message
        assert f"fixed batch of {batch}" in message
        assert "batch 1 or a dynamic batch" in message


def test_tensorrt_shape_check_refuses_a_fixed_batch_too(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="fixed batch of 4"):
        concrete_shape((4, 3, 640, 640), {}, tmp_path / "b4.onnx")
    assert concrete_shape((-1, 3, 640, 640), {}, tmp_path / "dyn.onnx") == (1, 3, 640, 640)


def test_dynamic_batch_is_pinned_to_one(tmp_path: Path, samples: Path) -> None:
    with OpenVinoEngine(dynamic_batch_model(samples, tmp_path / "dynamic")) as engine:
        assert engine.info.family == "yolox"
        assert engine.input.shape[0] == 1
        result = engine.infer(np.zeros(engine.input.shape, engine.input.dtype))
        assert result.outputs[0].shape == (1, 3549, 85)


def _run(model: Path, samples: Path) -> tuple[list[np.ndarray], object]:
    frame = cv2.imread(str(samples / "images" / "kite_and_cold.jpg"))
    with OpenVinoEngine(model) as engine:
        tensor, letterbox = prepare(frame, engine.input)
        outputs = list(engine.infer(tensor).outputs)
        height, width = frame.shape[:2]
        return outputs, lambda: postprocess(
            engine.info.family, outputs, engine.input, DetectionFilter(), letterbox, width, height
        )


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_wholly_non_finite_output_is_named_as_such(
    tmp_path: Path, samples: Path, value: float
) -> None:
    outputs, _ = _run(poisoned_model(samples, tmp_path / "poisoned", value), samples)
    with pytest.raises(NonFiniteOutputError, match="fp16 overflow"):
        count_nonfinite(outputs)


def test_partly_non_finite_output_keeps_the_finite_detections(
    tmp_path: Path, samples: Path
) -> None:
    # Rows 0..2000 hold stride-8 cells: small objects vanish, big ones are still found.
    outputs, decode = _run(poisoned_model(samples, tmp_path / "part", math.inf, 2000), samples)
    assert count_nonfinite(outputs) > 0
    found = decode()
    assert len(found) > 0
    assert np.isfinite(found.boxes).all()
    assert np.isfinite(found.scores).all()
