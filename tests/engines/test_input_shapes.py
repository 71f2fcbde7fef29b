"""Rectangular input: the shape per camera aspect, the compiled-shape cache, the static
model notice, and that a rectangular input finds what the square one finds (real
OpenVINO on the sample YOLOX-nano, sample images and both sample videos).

Tolerance (docs/input-size.md): every detection one input finds with a score of at
least the threshold + 0.1 is found by the other too, same class, IoU >= 0.85 and every
corner within 4 pixels of the square model input (9 px of a 960x540 frame, 4 px of a
416x416 one); detections nearer the threshold may come and go, at most 10 % of them.
The sample model is static ([1,3,416,416]) but fully convolutional: OpenVINO reshapes
it and the host-side YOLOX grid follows the new shape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.base import Detections
from engines.detector import Detector
from engines.input_shapes import ShapedEngines, check_rows
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter, anchor_count
from engines.preprocess import prepare
from tests.helpers import iou
from tests.models import dynamic_size_model, fixed_grid_model

SURE = DetectionFilter().score_threshold + 0.1
CORNER_INPUT_PX, MIN_IOU, MAX_LOST = 4.0, 0.85, 0.10


def test_check_rows_refuses_a_grid_fixed_in_the_graph() -> None:
    assert check_rows("yolox", [(1, anchor_count(384, 640), 85)], 384, 640) is None
    assert check_rows("ultralytics", [(1, 84, anchor_count(384, 640))], 384, 640) is None
    assert "8400" in str(check_rows("ultralytics", [(1, 84, 8400)], 384, 640))
    assert check_rows("yolox", [(1, 3549, 85)], 256, 416) is not None
    assert check_rows("end2end", [(1, 300, 6)], 384, 640) is None  # no grid to check


# -- real OpenVINO -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engines(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[OpenVinoEngine, OpenVinoEngine]]:
    """The sample model twice (one compiled-model cache): square, and rectangular."""
    cache = tmp_path_factory.mktemp("ov-cache")
    model = samples / "models" / "yolox_nano.onnx"
    square = OpenVinoEngine(model, cache_dir=cache)
    rect = OpenVinoEngine(model, cache_dir=cache)
    rect.input_shapes = ShapedEngines(rect, "auto")
    yield square, rect
    rect.close()
    square.close()


def _square(square: OpenVinoEngine, frame: np.ndarray) -> Detections:
    found = Detector(square).detect(frame).detections
    assert found is not None
    return found


def _unmatched(a: Detections, b: Detections, corner_px: float) -> list[str]:
    """Sure detections of `a` with no counterpart in `b` (class, IoU, corners)."""
    missing = []
    for box, score, cls in zip(a.boxes, a.scores, a.class_ids, strict=True):
        if score < SURE:
            continue
        same = b.boxes[b.class_ids == cls]
        ious = [iou(box, other) for other in same]
        best = int(np.argmax(ious)) if ious else -1
        if best < 0 or ious[best] < MIN_IOU or np.abs(same[best] - box).max() > corner_px:
            missing.append(f"class {cls} score {score:.2f} box {box.round(1).tolist()}")
    return missing


def _compare(pairs: list[tuple[str, Detections, Detections, float]]) -> None:
    """(name, square, rect, the square input's scale) per frame."""
    problems, total, lost = [], 0, 0
    for name, square, rect, scale in pairs:
        corner_px = CORNER_INPUT_PX / scale
        problems += [f"{name}: square {m}" for m in _unmatched(square, rect, corner_px)]
        problems += [f"{name}: rect {m}" for m in _unmatched(rect, square, corner_px)]
        total += max(len(square), len(rect))
        lost += abs(len(square) - len(rect))
    assert not problems, "\n".join(problems)
    assert total > 0
    assert lost <= MAX_LOST * total, f"{lost} of {total} detections differ in count"


def _video_frames(path: Path, count: int, step: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) % step == 0:
                frames.append(frame)
    finally:
        capture.release()
    return frames


@pytest.mark.slow
def test_rect_finds_what_square_finds(
    engines: tuple[OpenVinoEngine, OpenVinoEngine], samples: Path,
) -> None:
    """Sample images (5 aspects) and video frames (4:3 and 16:9): same objects."""
    square, rect = engines
    detector = Detector(rect)
    pairs, shapes_used = [], set()
    media = [(p.name, cv2.imread(str(p))) for p in sorted((samples / "images").glob("*.jpg"))]
    media += [(f"traffic#{i}", f) for i, f in enumerate(
        _video_frames(samples / "media" / "traffic_frames.mp4", 4, 5))]
    media += [(f"vtest#{i}", f) for i, f in enumerate(
        _video_frames(samples / "media" / "vtest.mp4", 3, 120))]
    for name, frame in media:
        rect.input_shapes.engine_for(frame.shape[1], frame.shape[0], wait=True)
        found = detector.detect(frame).detections
        assert found is not None
        shapes_used.add(rect.for_frame(frame.shape[1], frame.shape[0]).input.shape[1:3])
        scale = min(416 / frame.shape[0], 416 / frame.shape[1])
        pairs.append((name, _square(square, frame), found, scale))
    _compare(pairs)
    # 640x426 and 1352x900 -> 416x288; 640x483, 640x480, 768x576 -> 416x320;
    # 1280x720, 960x540 -> 416x256; 512x430 -> 416x352; 621x640 stays 416x416.
    assert {(288, 416), (320, 416), (256, 416), (352, 416), (416, 416)} == shapes_used
    assert sorted(rect.input_shapes.shapes()) == sorted(shapes_used)


def test_two_aspects_two_compiled_shapes_reused(
    engines: tuple[OpenVinoEngine, OpenVinoEngine],
) -> None:
    """Two cameras of different aspect: one compiled engine each, made once and shared
    by every later frame and camera of that shape; a square frame keeps the model."""
    _, rect = engines
    shapes = rect.input_shapes
    assert shapes is not None
    assert shapes.engine_for(600, 800) is rect  # compiling: the model's own size meanwhile
    wide = shapes.engine_for(1920, 1080, wait=True)
    assert wide.input.shape == (1, 256, 416, 3)
    assert shapes.engine_for(1280, 720) is wide  # same aspect, another camera
    assert shapes.engine_for(1920, 1080) is wide
    tall = shapes.engine_for(600, 800, wait=True)
    assert tall.input.shape == (1, 416, 320, 3)
    assert shapes.engine_for(600, 800) is tall
    assert tall is not wide
    assert shapes.engine_for(500, 500) is rect
    assert {(256, 416), (416, 320)} <= set(shapes.shapes())
    frame = np.full((800, 600, 3), 90, np.uint8)
    tensor, letterbox = prepare(frame, tall.input)
    assert tensor.shape == tall.input.shape
    assert (letterbox.pad_x, letterbox.pad_y) == (0.0, 0.0)  # YOLOX pads bottom-right
    assert shapes.describe() == {"mode": "auto", "rectangular": True, "notice": None}


def test_square_and_fixed_modes(engines: tuple[OpenVinoEngine, OpenVinoEngine]) -> None:
    square, _ = engines
    assert ShapedEngines(square, "square").engine_for(1280, 720) is square
    fixed = ShapedEngines(square, (224, 416))
    assert fixed.mode == "fixed"
    try:
        assert fixed.engine_for(1280, 720, wait=True).input.shape == (1, 224, 416, 3)
        assert fixed.engine_for(640, 480) is fixed.engine_for(1280, 720)
    finally:
        fixed.close()
    assert fixed.shapes() == [(416, 416)]


@pytest.mark.slow
def test_static_model_notice_and_dynamic_model(
    samples: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A grid fixed in the graph stays square and says how to export a dynamic model; the
    same model with dynamic H/W (dynamic=True, imgsz 416) gets 416x256 for 16:9 and the
    same boxes as at its own square size."""
    with caplog.at_level(logging.INFO, logger="engines.input_shapes"), OpenVinoEngine(
            fixed_grid_model(samples, tmp_path / "fixed")) as fixed:
        shapes = ShapedEngines(fixed, "auto")
        assert fixed.for_frame(1280, 720) is fixed  # nothing attached: the engine itself
        assert shapes.engine_for(1280, 720) is fixed
        assert shapes.describe()["rectangular"] is False
        notice = str(shapes.describe()["notice"])
        assert "fixed at 416x416" in notice
        assert "dynamic=True" in notice
        assert "rectangular input is off" in caplog.text
    frame = cv2.imread(str(samples / "images" / "cat_720p.jpg"))
    with OpenVinoEngine(dynamic_size_model(samples, tmp_path / "dynamic")) as dynamic:
        assert dynamic.input_flexibility() is None
        dynamic.input_shapes = shapes = ShapedEngines(dynamic)
        assert dynamic.input.shape == (1, 416, 416, 3)  # its imgsz, not the 640 default
        assert shapes.engine_for(1280, 720, wait=True).input.shape == (1, 256, 416, 3)
        rect = Detector(dynamic).detect(frame).detections
        dynamic.input_shapes = None
        square = Detector(dynamic).detect(frame).detections
        shapes.close()
        assert rect is not None
        assert square is not None
        _compare([("cat_720p, dynamic model", square, rect, 416 / 1280)])
