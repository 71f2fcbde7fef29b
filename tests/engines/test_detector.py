"""The Detector: a frame in, detections in frame pixels out, with each stage's cost.

Real OpenVINO and ONNX Runtime on the sample model; the faults are an Engine whose
outputs are replaced, as a broken export or fp16 overflow would produce them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.base import Engine, InferResult
from engines.detector import Detector, PendingDetection
from engines.errors import PostprocessError
from engines.model_info import read_labels
from engines.onnxruntime import OnnxRuntimeEngine
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter


@pytest.fixture(scope="module", params=["openvino", "onnxruntime"])
def engine(request: pytest.FixtureRequest, samples: Path) -> Iterator[Engine]:
    names = read_labels(samples / "models" / "coco_labels.txt")
    model = samples / "models" / "yolox_nano.onnx"
    kind = OpenVinoEngine if request.param == "openvino" else OnnxRuntimeEngine
    with kind(model, class_names=names) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def pets(samples: Path) -> np.ndarray:
    return cv2.imread(str(samples / "images" / "pets.jpg"))


def test_detect_returns_frame_pixels_and_stage_times(engine: Engine, pets: np.ndarray) -> None:
    detected = Detector(engine, DetectionFilter(score_threshold=0.3)).detect(pets)
    assert detected.detections is not None
    names = [engine.info.class_names[c] for c in detected.detections.class_ids]
    assert names.count("dog") == 2
    boxes = detected.detections.boxes
    assert (detected.frame_width, detected.frame_height) == (pets.shape[1], pets.shape[0])
    assert boxes[:, 2].max() > engine.input.width  # frame pixels, not the 416 input's
    assert np.all(boxes[:, 2] <= pets.shape[1])
    assert detected.preprocess_ms > 0 and detected.postprocess_ms > 0  # noqa: PT018
    assert detected.infer_ms > 0
    assert (detected.nonfinite, detected.output_problem) == (0, None)


def test_submit_is_async_and_as_deep_as_the_backend(engine: Engine, pets: np.ndarray) -> None:
    detector = Detector(engine)
    assert detector.parallelism == engine.parallelism >= 1
    pending = [detector.submit(pets) for _ in range(detector.parallelism + 1)]
    assert all(isinstance(p, PendingDetection) for p in pending)
    counts = {len(p.result(timeout=60).detections or ()) for p in pending}
    assert len(counts) == 1  # the same frame gives the same answer every time
    first = pending[0]
    assert first.result() is first.result()  # postprocessed once


def test_the_filter_is_per_call(engine: Engine, pets: np.ndarray) -> None:
    detector = Detector(engine)
    only_cats = DetectionFilter(class_ids=np.array([engine.info.class_names.index("cat")]))
    detected = detector.detect(pets, only_cats)
    assert detected.detections is not None
    assert len(detected.detections) == 0
    assert len(detector.detect(pets).detections or ()) >= 2


class Rewired(Engine):
    """The real engine, with every output replaced by `outputs`."""

    def __init__(self, real: Engine, outputs: list[np.ndarray]) -> None:
        self.real, self.outputs = real, outputs
        self.backend, self.device = real.backend, real.device
        self.input, self.info = real.input, real.info

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        future: Future[InferResult] = Future()
        future.set_result(InferResult(self.outputs, 1.0))
        return future

    def close(self) -> None:
        """The real engine is the fixture's."""


def test_nothing_finite_is_no_detections_and_says_why(engine: Engine, pets: np.ndarray) -> None:
    shape = engine.info.output_shapes[0]
    detected = Detector(Rewired(engine, [np.full(shape, np.nan, np.float32)])).detect(pets)
    assert detected.detections is None
    assert "NaN or infinite" in (detected.output_problem or "")
    assert detected.nonfinite == int(np.prod(shape))


def test_some_nonfinite_values_are_counted_and_dropped(engine: Engine, pets: np.ndarray) -> None:
    tensor_shape = engine.info.output_shapes[0]
    outputs = np.zeros(tensor_shape, np.float32)
    outputs[0, :10, 4] = np.inf
    detected = Detector(Rewired(engine, [outputs])).detect(pets)
    assert detected.nonfinite == 10
    assert detected.detections is not None
    assert np.isfinite(detected.detections.boxes).all()


def test_an_output_of_the_wrong_shape_is_a_postprocess_error(
    engine: Engine, pets: np.ndarray
) -> None:
    wrong = np.zeros((1, 100, 85), np.float32)
    with pytest.raises(PostprocessError, match="ValueError: yolox postprocessing expects") as err:
        Detector(Rewired(engine, [wrong])).detect(pets)
    assert isinstance(err.value.__cause__, ValueError)


def test_a_frame_that_is_not_an_image_fails_at_submit(engine: Engine) -> None:
    with pytest.raises(ValueError, match="expected an HxWx3 uint8 BGR frame"):
        Detector(engine).submit(np.zeros((10, 10), np.uint8))


CALLERS = ["edge_agent/pipeline.py", "edge_agent/tools/snapshot.py", "edge_agent/tools/bench.py",
           "edge_agent/tools/doctor.py"]
ALLOWED = {"engines.detector": None, "engines.base": None, "engines.errors": None,
           "engines.postprocess": {"DetectionFilter"}}
"""What the detector's callers may take from engines/: the detector, types and errors."""


@pytest.mark.parametrize("caller", CALLERS)
def test_callers_use_the_detector_not_the_steps(caller: str) -> None:
    source = (Path(__file__).resolve().parents[2] / caller).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engines"):
            assert node.module in ALLOWED, f"{caller} imports {node.module}"
            names = ALLOWED[node.module]
            if names is not None:
                assert {alias.name for alias in node.names} <= names, (caller, node.module)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("engines") for a in node.names), caller
