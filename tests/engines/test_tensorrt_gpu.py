"""The real TensorRT engine on a real GPU gives OpenVINO's detections on the sample images.

Skipped, with the reason, unless tensorrt and pycuda import and a CUDA device exists.
FP16 moves scores and boxes a little, so detections are compared where both backends
are clearly above the threshold: same labels, IoU >= 0.9 per matched box.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.base import Detections, Engine
from engines.model_info import read_labels
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter, postprocess
from engines.preprocess import prepare
from tests.helpers import iou, real_gpu_missing

pytestmark = pytest.mark.gpu

THRESHOLD = 0.3
CLEAR = 0.45  # a detection this confident in one backend must be found by the other


def detections(engine: Engine, image: np.ndarray) -> Detections:
    tensor, letterbox = prepare(image, engine.input)
    result = engine.submit(tensor).result(timeout=60)
    return postprocess(engine.info.family, result.outputs, engine.input,
                       DetectionFilter(score_threshold=THRESHOLD), letterbox,
                       image.shape[1], image.shape[0])


def unmatched(wanted: Detections, found: Detections) -> list[str]:
    """Confident boxes of `wanted` with no box of the same class at IoU >= 0.9 in `found`."""
    missing = []
    for box, score, class_id in zip(wanted.boxes, wanted.scores, wanted.class_ids, strict=True):
        if score < CLEAR:
            continue
        same = [iou(box, other) for other, c in zip(found.boxes, found.class_ids, strict=True)
                if c == class_id]
        if not same or max(same) < 0.9:
            best = max(same, default=0.0)
            missing.append(f"class {class_id} score {score:.2f} best IoU {best:.2f}")
    return missing


@pytest.fixture(scope="module")
def openvino(samples: Path) -> Iterator[OpenVinoEngine]:
    with OpenVinoEngine(samples / "models" / "yolox_nano.onnx", precision="f32") as engine:
        yield engine


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_real_engine_matches_openvino(
    samples: Path, tmp_path: Path, openvino: OpenVinoEngine, precision: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reason = real_gpu_missing()
    if reason:
        pytest.skip(reason)
    from engines.tensorrt import TensorRtEngine

    labels = read_labels(samples / "models" / "coco_labels.txt")
    model = samples / "models" / "yolox_nano.onnx"
    with TensorRtEngine(model, class_names=labels, precision=precision,
                        cache_dir=tmp_path) as engine:
        assert engine.info.family == "yolox"
        assert engine.info.output_shapes == ((1, 3549, 85),)
        images = sorted((samples / "images").glob("*.jpg"))
        assert images
        for path in images:
            image = cv2.imread(str(path))
            ours, theirs = detections(engine, image), detections(openvino, image)
            missed = unmatched(theirs, ours)
            assert not missed, f"{path.name}: TensorRT missed {missed}"
            extra = unmatched(ours, theirs)
            assert not extra, f"{path.name}: OpenVINO missed {extra}"
        assert engine.raw_throughput(1.0) > 0
    assert len(list(tmp_path.iterdir())) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="engines.tensorrt"):
        TensorRtEngine(model, precision=precision, cache_dir=tmp_path).close()
    assert "loaded from" in caplog.text
    assert "building" not in caplog.text
