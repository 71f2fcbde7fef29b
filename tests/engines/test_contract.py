"""One contract every backend present on this machine passes, through the registry.

OpenVINO always; real TensorRT where it imports and a CUDA device exists; and the
TensorRT backend's own code against the fake tensorrt/pycuda, so it is held to the
contract on machines without a GPU too.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines import registry
from engines.base import Engine, InferResult
from engines.errors import EngineError
from engines.model_info import read_labels
from engines.postprocess import DetectionFilter, postprocess
from engines.preprocess import prepare
from tests.engines import fake_tensorrt
from tests.helpers import real_gpu_missing


@pytest.fixture(
    params=["openvino", "tensorrt-fake", pytest.param("tensorrt", marks=pytest.mark.gpu)]
)
def engine(
    request: pytest.FixtureRequest, samples: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Engine]:
    backend = request.param
    if backend == "tensorrt":
        reason = real_gpu_missing()
        if reason:
            pytest.skip(reason)
    if backend == "tensorrt-fake":
        fake_tensorrt.install(monkeypatch)
        backend = "tensorrt"
    options = {"cache_dir": tmp_path / "cache"}
    labels = read_labels(samples / "models" / "coco_labels.txt")
    loaded = registry.open_engine(
        backend, samples / "models" / "yolox_nano.onnx", class_names=labels, **options
    )
    yield loaded
    loaded.close()


def test_input_spec_is_what_submit_takes(engine: Engine, samples: Path) -> None:
    image = cv2.imread(str(samples / "images" / "pets.jpg"))
    tensor, _ = prepare(image, engine.input)
    assert tensor.shape == engine.input.shape
    assert tensor.dtype == np.dtype(engine.input.dtype)
    future = engine.submit(tensor)
    assert isinstance(future, Future)
    result = future.result(timeout=60)
    assert isinstance(result, InferResult)
    assert all(isinstance(out, np.ndarray) for out in result.outputs)
    assert tuple(out.shape for out in result.outputs) == engine.info.output_shapes
    assert result.latency_ms >= 0
    assert engine.parallelism >= 1
    assert engine.backend in registry.BACKENDS


def test_outputs_decode_to_detections(engine: Engine, samples: Path) -> None:
    image = cv2.imread(str(samples / "images" / "pets.jpg"))
    tensor, letterbox = prepare(image, engine.input)
    found = postprocess(
        engine.info.family, engine.infer(tensor).outputs, engine.input,
        DetectionFilter(score_threshold=0.3), letterbox, image.shape[1], image.shape[0],
    )
    names = [engine.info.class_names[c] for c in found.class_ids]
    assert names.count("dog") == 2, names
    assert np.all(found.boxes[:, 2] <= image.shape[1])


def test_close_twice_then_submit_is_a_clear_error(engine: Engine) -> None:
    tensor = np.zeros(engine.input.shape, np.dtype(engine.input.dtype))
    engine.infer(tensor)
    engine.close()
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.submit(tensor)
