"""The cross-backend contract, for every backend in the registry whose runtime is here.

test_contract.py runs OpenVINO and the TensorRT fakes by name; this file takes its list
from the registry, so a backend added there (ONNX Runtime) is held to the same contract
without a test naming it. A backend whose runtime is missing is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines import registry
from engines.backend import Backend
from engines.base import Engine, InferResult
from engines.detector import Detector
from engines.errors import EngineError
from engines.model_info import read_labels


@pytest.fixture(params=registry.declared(), ids=lambda backend: backend.name)
def engine(request: pytest.FixtureRequest, samples: Path, tmp_path: Path) -> Iterator[Engine]:
    backend: Backend = request.param
    status = backend.runtime_status()
    if not status.usable:
        pytest.skip(f"{backend.name}: {status.problem}")
    options = backend.options(backend.default_settings(), tmp_path / "state")
    labels = read_labels(samples / "models" / "coco_labels.txt")
    loaded = registry.open_engine(backend.name, samples / "models" / "yolox_nano.onnx",
                                  class_names=labels, **options)
    yield loaded
    loaded.close()


def test_input_spec_is_what_submit_takes(engine: Engine) -> None:
    tensor = np.zeros(engine.input.shape, np.dtype(engine.input.dtype))
    future = engine.submit(tensor)
    assert isinstance(future, Future)
    result = future.result(timeout=60)
    assert isinstance(result, InferResult)
    assert tuple(out.shape for out in result.outputs) == engine.info.output_shapes
    assert result.latency_ms >= 0
    assert engine.parallelism >= 1
    assert engine.backend in registry.BACKENDS


def test_the_detector_finds_the_two_dogs(engine: Engine, samples: Path) -> None:
    image = cv2.imread(str(samples / "images" / "pets.jpg"))
    detected = Detector(engine).detect(image)
    assert detected.detections is not None
    names = [engine.info.class_names[c] for c in detected.detections.class_ids]
    assert names.count("dog") == 2, names
    assert np.all(detected.detections.boxes[:, 2] <= image.shape[1])


def test_close_twice_then_submit_is_a_clear_error(engine: Engine) -> None:
    tensor = np.zeros(engine.input.shape, np.dtype(engine.input.dtype))
    engine.infer(tensor)
    engine.close()
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.submit(tensor)
