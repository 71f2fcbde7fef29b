"""Finite outputs that break in the postprocessing math: values that overflow to inf in
exp() or obj * cls (1e30 everywhere), and scores above 1 (a model that outputs logits).
Real OpenVINO models (tests/models.py), through the Detector.

Before the fix the overflow gave empty detections with nonfinite 0 and no output
problem (health ok), and logits were published as "score": 25.0 although
docs/schemas/detections.schema.json says at most 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.detector import Detector
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter
from tests.models import shaped_model

CELLS = 3549  # 416x416 over strides 8/16/32

CASES = [
    pytest.param("yolox", [1, CELLS, 85], 1e30, "overflowed", id="yolox-1e30"),  # the example
    pytest.param("yolox", [1, CELLS, 85], 3e38, "overflowed", id="yolox-float-max"),
    pytest.param("yolox", [1, CELLS, 85], 1e20, "overflowed", id="yolox-1e20-obj-times-cls"),
    pytest.param("yolov5", [1, 3 * CELLS, 85], 1e30, "overflowed", id="yolov5-1e30"),
    pytest.param("yolox", [1, CELLS, 85], 5.0, "outside 0..1", id="yolox-logits"),
    pytest.param("ultralytics", [1, 84, CELLS], 25.0, "outside 0..1", id="ultralytics-logits"),
    pytest.param("ultralytics", [1, 84, CELLS], 1e30, "outside 0..1", id="ultralytics-1e30"),
    pytest.param("yolov5", [1, CELLS, 85], 5.0, "outside 0..1", id="yolov5-logits"),
]


@pytest.mark.parametrize(("family", "shape", "fill", "said"), CASES)
def test_postprocessing_faults_are_counted_and_named(
    tmp_path: Path, family: str, shape: list[int], fill: float, said: str
) -> None:
    model = shaped_model(tmp_path / "m", shape, fill=fill)
    frame = np.full((480, 640, 3), 90, np.uint8)
    with Detector(OpenVinoEngine(model, family=family), DetectionFilter(max_detections=20)) as d:
        detected = d.detect(frame)
    assert detected.output_problem is not None
    assert said in detected.output_problem
    if said == "overflowed":
        assert detected.nonfinite > 0  # was 0: the overflow happened after the output check
        assert detected.detections is None  # not "nothing there"
    else:  # published, but never above 1
        assert detected.detections is not None
        assert (detected.detections.scores <= 1.0).all()
        assert (detected.detections.scores >= 0.0).all()


def test_a_sane_output_has_no_problem(tmp_path: Path, samples: Path) -> None:
    with Detector(OpenVinoEngine(samples / "models" / "yolox_nano.onnx")) as detector:
        detected = detector.detect(np.full((480, 640, 3), 90, np.uint8))
    assert detected.output_problem is None
    assert detected.nonfinite == 0
