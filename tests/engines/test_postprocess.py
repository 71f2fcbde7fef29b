"""Decoders on hand-built tensors whose right answers are known, and on the real sample model."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import pytest

from engines.base import Detections, InputSpec
from engines.postprocess import (
    FAMILIES,
    DetectionFilter,
    NonFiniteOutputError,
    boxes_in_input,
    count_nonfinite,
    detect_family,
    postprocess,
)
from engines.preprocess import Letterbox, prepare

SPEC_416 = FAMILIES["yolox"].input_spec("images", 416, 416)
SPEC_640 = FAMILIES["ultralytics"].input_spec("images", 640, 640)
OPTIONS = DetectionFilter()


def assert_valid(found: Detections) -> None:
    assert found.boxes.dtype == np.float32
    assert found.boxes.shape == (len(found), 4)
    assert found.scores.dtype == np.float32
    assert found.class_ids.dtype == np.int32
    assert (np.diff(found.scores) <= 0).all(), "scores must be sorted, highest first"


# --- yolox -------------------------------------------------------------------------------


def yolox_row(
    output: np.ndarray, index: int, offsets: tuple[float, float, float, float], obj: float
) -> np.ndarray:
    output[0, index, :4] = offsets
    output[0, index, 4] = obj
    return output[0, index, 5:]


def test_yolox_decodes_grid_offsets_exactly() -> None:
    output = np.zeros((1, 3549, 85), np.float32)
    # stride 16 (after 52*52 stride-8 cells), cell x=7 y=5: w = 4*16, h = 2*16.
    yolox_row(output, 52 * 52 + 5 * 26 + 7, (0.25, 0.5, math.log(4), math.log(2)), 0.9)[17] = 0.8
    # stride 8, cell x=3 y=2, no offsets: an 8x8 box centred on (24, 16).
    yolox_row(output, 2 * 52 + 3, (0, 0, 0, 0), 0.6)[0] = 1.0
    # stride 32, last cell x=12 y=12, plus a weaker second class that must not win.
    scores = yolox_row(output, 3548, (0.5, 0.5, math.log(3), math.log(3)), 0.7)
    scores[[5, 6]] = (0.9, 0.5)
    found = boxes_in_input("yolox", [output], SPEC_416, OPTIONS)
    assert_valid(found)
    assert found.class_ids.tolist() == [17, 5, 0]
    np.testing.assert_allclose(found.scores, [0.72, 0.63, 0.6], rtol=1e-6)
    np.testing.assert_allclose(
        found.boxes,
        [[84, 72, 148, 104], [352, 352, 448, 448], [20, 12, 28, 20]],
        rtol=1e-5,
    )


def test_yolox_score_is_objectness_times_class() -> None:
    output = np.zeros((1, 3549, 85), np.float32)
    yolox_row(output, 10, (0, 0, 0, 0), 0.5)[3] = 0.6  # 0.30: below 0.35
    yolox_row(output, 20, (0, 0, 0, 0), 0.2)[3] = 1.0  # objectness alone below
    assert len(boxes_in_input("yolox", [output], SPEC_416, OPTIONS)) == 0


# --- ultralytics ---------------------------------------------------------------------------


def ultralytics_output(boxes: list[tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """[1, 84, 8400] with (cx, cy, w, h, class, score) written into the first columns."""
    output = np.zeros((1, 84, 8400), np.float32)
    for column, (cx, cy, w, h, class_id, score) in enumerate(boxes):
        output[0, :4, column * 7] = (cx, cy, w, h)
        output[0, 4 + class_id, column * 7] = score
    return output


def test_ultralytics_nms_is_per_class() -> None:
    output = ultralytics_output(
        [
            (100, 100, 50, 50, 0, 0.9),
            (102, 101, 50, 50, 1, 0.8),  # overlaps the first, other class: kept
            (300, 300, 60, 60, 2, 0.85),
            (305, 300, 60, 60, 2, 0.7),  # overlaps the third, same class: suppressed
        ]
    )
    found = boxes_in_input("ultralytics", [output], SPEC_640, OPTIONS)
    assert_valid(found)
    assert found.class_ids.tolist() == [0, 2, 1]
    np.testing.assert_allclose(found.scores, [0.9, 0.85, 0.8], rtol=1e-6)
    np.testing.assert_allclose(
        found.boxes, [[75, 75, 125, 125], [270, 270, 330, 330], [77, 76, 127, 126]]
    )


def test_nms_keeps_classes_apart_for_boxes_past_the_edge() -> None:
    """cv2.dnn.NMSBoxesBatched would suppress the second box here: it shifts classes by max x."""
    output = ultralytics_output([(615, 615, 50, 50, 0, 0.9), (-15, -15, 50, 50, 1, 0.8)])
    found = boxes_in_input("ultralytics", [output], SPEC_640, DetectionFilter(iou_threshold=0.3))
    assert found.class_ids.tolist() == [0, 1]


def test_class_allow_list() -> None:
    output = ultralytics_output(
        [(100, 100, 50, 50, 0, 0.9), (300, 300, 60, 60, 2, 0.6), (500, 500, 20, 20, 7, 0.5)]
    )
    options = DetectionFilter(class_ids=np.array([2, 7]))
    found = boxes_in_input("ultralytics", [output], SPEC_640, options)
    assert found.class_ids.tolist() == [2, 7]


def test_allow_list_does_not_promote_a_weaker_class() -> None:
    """A dog that scores a little 'person' stays a dog, and is dropped by a person-only list."""
    output = ultralytics_output([(100, 100, 50, 50, 16, 0.9)])
    output[0, 4 + 0, 0] = 0.5
    only = DetectionFilter(class_ids=np.array([0]))
    found = boxes_in_input("ultralytics", [output], SPEC_640, only)
    assert len(found) == 0


def test_max_detections_keeps_the_highest_scores() -> None:
    scores = [0.4, 0.95, 0.5, 0.8, 0.6, 0.9]
    output = ultralytics_output(
        [(40 + 100 * i, 320, 30, 30, i % 3, s) for i, s in enumerate(scores)]
    )
    found = boxes_in_input("ultralytics", [output], SPEC_640, DetectionFilter(max_detections=3))
    np.testing.assert_allclose(found.scores, [0.95, 0.9, 0.8], rtol=1e-6)


# --- end2end ------------------------------------------------------------------------------


def test_end2end_threshold_and_max_without_nms() -> None:
    output = np.zeros((1, 300, 6), np.float32)
    output[0, :5] = [
        (10, 10, 50, 50, 0.9, 0),
        (10, 10, 50, 50, 0.2, 0),  # below threshold
        (12, 12, 52, 52, 0.5, 0),  # overlaps the first, same class: the model owns NMS
        (100, 100, 150, 150, 0.6, 3),
        (200, 200, 250, 250, 0.4, 5),
    ]
    found = boxes_in_input("end2end", [output], SPEC_640, OPTIONS)
    assert_valid(found)
    np.testing.assert_allclose(found.scores, [0.9, 0.6, 0.5, 0.4], rtol=1e-6)
    assert found.class_ids.tolist() == [0, 3, 0, 5]
    np.testing.assert_allclose(found.boxes[2], [12, 12, 52, 52])
    capped = boxes_in_input("end2end", [output], SPEC_640, DetectionFilter(max_detections=2))
    np.testing.assert_allclose(capped.scores, [0.9, 0.6], rtol=1e-6)


# --- yolov5 -------------------------------------------------------------------------------


def test_yolov5_multiplies_objectness() -> None:
    output = np.zeros((1, 25200, 85), np.float32)
    output[0, 0, :5] = (320, 240, 100, 50, 0.5)
    output[0, 0, 5 + 2] = 0.9  # 0.45: kept
    output[0, 1, :5] = (100, 100, 20, 20, 0.9)
    output[0, 1, 5 + 4] = 0.3  # 0.27: dropped
    output[0, 2, :5] = (500, 500, 20, 20, 0.3)
    output[0, 2, 5 + 1] = 1.0  # objectness below threshold: dropped
    found = boxes_in_input("yolov5", [output], SPEC_640, OPTIONS)
    assert_valid(found)
    assert found.class_ids.tolist() == [2]
    np.testing.assert_allclose(found.scores, [0.45], rtol=1e-6)
    np.testing.assert_allclose(found.boxes, [[270, 215, 370, 265]])


# --- ssd ----------------------------------------------------------------------------------


SPEC_SSD = FAMILIES["ssd"].input_spec("data", 200, 300)  # height 200, width 300


def test_ssd_detection_output_scales_and_stops_at_the_terminating_row() -> None:
    output = np.zeros((1, 1, 100, 7), np.float32)
    output[0, 0, :5] = [
        (0, 1, 0.9, 0.1, 0.2, 0.5, 0.6),
        (0, 3, 0.2, 0.1, 0.1, 0.2, 0.2),  # below threshold
        (0, 2, 0.8, 0.0, 0.5, 1.0, 1.0),
        (-1, 0, 0, 0, 0, 0, 0),  # end of list
        (0, 4, 0.99, 0.3, 0.3, 0.4, 0.4),  # after the end: ignored
    ]
    found = boxes_in_input("ssd", [output], SPEC_SSD, OPTIONS)
    assert_valid(found)
    assert found.class_ids.tolist() == [1, 2]
    np.testing.assert_allclose(found.boxes, [[30, 40, 150, 120], [0, 100, 300, 200]], atol=1e-4)


def test_ssd_two_outputs_skip_background_and_run_nms() -> None:
    boxes = np.zeros((1, 50, 4), np.float32)
    scores = np.zeros((1, 50, 3), np.float32)
    scores[0, :, 0] = 1.0  # background everywhere...
    boxes[0, 0], scores[0, 0] = (0.1, 0.1, 0.5, 0.5), (0.1, 0.9, 0.0)
    boxes[0, 1], scores[0, 1] = (0.11, 0.1, 0.5, 0.5), (0.2, 0.7, 0.1)  # suppressed by row 0
    boxes[0, 2], scores[0, 2] = (0.6, 0.6, 0.9, 0.9), (0.3, 0.0, 0.6)
    for outputs in ([boxes, scores], [scores, boxes]):
        found = boxes_in_input("ssd", outputs, SPEC_SSD, OPTIONS)
        assert_valid(found)
        assert found.class_ids.tolist() == [1, 2]
        np.testing.assert_allclose(found.boxes, [[30, 20, 150, 100], [180, 120, 270, 180]])


# --- common -------------------------------------------------------------------------------

EMPTY_OUTPUTS = {
    "yolox": [np.zeros((1, 3549, 85), np.float32)],
    "ultralytics": [np.zeros((1, 84, 3549), np.float32)],
    "end2end": [np.zeros((1, 300, 6), np.float32)],
    "yolov5": [np.zeros((1, 3 * 3549, 85), np.float32)],
    "ssd": [np.full((1, 1, 100, 7), -1, np.float32)],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_nothing_found_gives_empty_detections(family: str) -> None:
    found = boxes_in_input(family, EMPTY_OUTPUTS[family], SPEC_416, OPTIONS)
    assert len(found) == 0
    assert_valid(found)


@pytest.mark.parametrize(
    ("family", "shape", "match"),
    [
        ("yolox", (1, 100, 85), r"yolox.*\[1, 3549, 5\+classes\].*\(1, 100, 85\)"),
        ("yolox", (3549, 85), r"yolox.*\(3549, 85\)"),
        ("ultralytics", (1, 84), r"ultralytics.*\[1, 4\+classes, N\].*\(1, 84\)"),
        ("end2end", (1, 300, 7), r"end2end.*\[1, N, 6\].*\(1, 300, 7\)"),
        ("yolov5", (1, 25200, 4), r"yolov5.*\(1, 25200, 4\)"),
        ("ssd", (1, 100, 7), r"ssd.*\[1, 1, N, 7\].*\(1, 100, 7\)"),
    ],
)
def test_wrong_shape_raises_a_helpful_value_error(
    family: str, shape: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        boxes_in_input(family, [np.zeros(shape, np.float32)], SPEC_416, OPTIONS)


def test_unknown_family_and_missing_outputs() -> None:
    with pytest.raises(ValueError, match="allowed: yolox, ultralytics, end2end, yolov5, ssd"):
        boxes_in_input("detr", [], SPEC_416, OPTIONS)
    with pytest.raises(ValueError, match="no output arrays"):
        boxes_in_input("yolox", [], SPEC_416, OPTIONS)


def test_float16_outputs_decode_to_float32() -> None:
    output = ultralytics_output([(100, 100, 50, 50, 3, 0.9)]).astype(np.float16)
    found = boxes_in_input("ultralytics", [output], SPEC_640, OPTIONS)
    assert_valid(found)
    np.testing.assert_allclose(found.boxes, [[75, 75, 125, 125]])


def test_postprocess_maps_to_frame_and_drops_boxes_in_the_padding() -> None:
    output = np.zeros((1, 300, 6), np.float32)
    output[0, 0] = (10, 110, 110, 210, 0.9, 0)
    output[0, 1] = (10, 10, 100, 50, 0.8, 1)  # wholly in the top padding
    letterbox = Letterbox(scale=0.5, pad_x=0.0, pad_y=100.0)  # 1280x880 frame in 640x640
    found = postprocess("end2end", [output], SPEC_640, OPTIONS, letterbox, 1280, 880)
    assert_valid(found)
    assert found.class_ids.tolist() == [0]
    np.testing.assert_allclose(found.boxes, [[20, 20, 220, 220]])


# --- detect_family ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "size", "family"),
    [
        ([(1, 3549, 85)], 416, "yolox"),
        ([(1, 3549, 6)], 416, "yolox"),  # one class: not end2end
        ([(1, 84, 8400)], 640, "ultralytics"),
        ([(1, 5, 8400)], 640, "ultralytics"),
        ([(1, 300, 6)], 640, "end2end"),
        ([(1, 25200, 85)], 640, "yolov5"),
        ([(1, 1, 100, 7)], 300, "ssd"),
        ([(1, 3000, 4), (1, 3000, 21)], 300, "ssd"),
    ],
)
def test_detect_family(shapes: list[tuple[int, ...]], size: int, family: str) -> None:
    assert detect_family(shapes, size, size) == family


@pytest.mark.parametrize("shapes", [[(1, 1000, 5)], [(1, 84, 8400)], [], [(1, 2, 3, 4, 5)]])
def test_detect_family_unknown_shape_says_to_set_model_family(
    shapes: list[tuple[int, ...]],
) -> None:
    with pytest.raises(ValueError, match=r"model\.family.*yolox, ultralytics, end2end"):
        detect_family(shapes, 416, 416)


# --- the real sample model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def yolox_nano(samples: Path) -> ov.CompiledModel:
    return ov.Core().compile_model(str(samples / "models" / "yolox_nano.onnx"), "CPU")


def test_yolox_nano_on_kites(samples: Path, yolox_nano: ov.CompiledModel) -> None:
    frame = cv2.imread(str(samples / "images" / "kite_and_cold.jpg"))
    height, width = frame.shape[:2]
    output_shapes = [tuple(output.shape) for output in yolox_nano.outputs]
    family = detect_family(output_shapes, 416, 416)
    assert family == "yolox"
    tensor, letterbox = prepare(frame, FAMILIES[family].input_spec("images", 416, 416))
    outputs = list(yolox_nano(tensor).values())
    found = postprocess(family, outputs, SPEC_416, OPTIONS, letterbox, width, height)
    assert_valid(found)
    ids = found.class_ids.tolist()
    assert ids.count(0) >= 3, f"expected several people, got classes {ids}"
    assert 33 in ids, f"expected a kite, got classes {ids}"
    boxes = found.boxes
    assert (boxes[:, 0] >= 0).all()
    assert (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all()
    assert (boxes[:, 3] <= height).all()
    sizes = boxes[:, 2:] - boxes[:, :2]
    assert (sizes > 10).all()
    assert (sizes < [width / 2, height / 2]).all()
    people = boxes[found.class_ids == 0]
    assert (people[:, 3] - people[:, 1] > people[:, 2] - people[:, 0]).all(), "people stand"
    kites = boxes[found.class_ids == 33]
    assert (kites[:, 3] < height / 2).any(), "a kite flies in the upper half"


def test_spec_from_family_matches_the_readme_convention() -> None:
    spec = FAMILIES["yolox"].input_spec("images", 416, 416)
    assert spec == InputSpec(
        "images", 416, 416, color="BGR", scale=1.0, pad_value=114, pad_align="topleft"
    )
    ultralytics = FAMILIES["ultralytics"]
    assert (ultralytics.color, ultralytics.scale, ultralytics.pad_align) == (
        "RGB",
        1 / 255,
        "center",
    )


# --- non-finite outputs (fp16 overflow and friends) ---------------------------------------


def candidates(family: str, rows: list[tuple[float, float]]) -> list[np.ndarray]:
    """`family`'s outputs with one class-1 candidate per (coordinate error, score), far apart."""
    if family in ("yolox", "yolov5"):
        output = np.zeros((1, 3549 if family == "yolox" else 3 * 3549, 85), np.float32)
        for i, (error, score) in enumerate(rows):
            centre = (error, 0) if family == "yolox" else (50 + 100 * i + error, 100)
            output[0, i * 10, :5] = (*centre, 2, 2, score)
            output[0, i * 10, 6] = 1.0
        return [output]
    if family == "ultralytics":
        output = np.zeros((1, 84, 3549), np.float32)
        for i, (error, score) in enumerate(rows):
            output[0, :4, i * 10] = (50 + 100 * i + error, 100, 20, 20)
            output[0, 5, i * 10] = score
        return [output]
    if family == "end2end":
        output = np.zeros((1, 300, 6), np.float32)
        for i, (error, score) in enumerate(rows):
            left = 50 + 100 * i + error
            output[0, i] = (left, 50, left + 20, 70, score, 1)
        return [output]
    output = np.zeros((1, 1, 100, 7), np.float32)  # ssd
    for i, (error, score) in enumerate(rows):
        left = 0.1 + 0.3 * i + error
        output[0, 0, i] = (0, 1, score, left, 0.1, left + 0.1, 0.2)
    return [output]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("where", ["score", "box"])
def test_non_finite_candidates_are_dropped(family: str, bad: float, where: str) -> None:
    """A +inf score passes any threshold and a NaN box reaches JSON: neither may survive."""
    poisoned = (bad, 0.9) if where == "box" else (0.0, bad)
    found = boxes_in_input(family, candidates(family, [(0.0, 0.8), poisoned]), SPEC_416, OPTIONS)
    assert_valid(found)
    assert len(found) == 1
    assert np.isfinite(found.boxes).all()
    np.testing.assert_allclose(found.scores, [0.8], rtol=1e-6)


def test_count_nonfinite_counts_and_refuses_an_all_nan_output() -> None:
    output = np.zeros((1, 3549, 85), np.float32)
    output[0, :3, 0] = (math.inf, -math.inf, math.nan)
    assert count_nonfinite([output, np.arange(4)]) == 3
    assert count_nonfinite([np.zeros((1, 300, 6), np.float16)]) == 0
    for bad in (math.inf, math.nan):
        with pytest.raises(NonFiniteOutputError, match="fp16 overflow"):
            count_nonfinite([np.full((1, 300, 6), bad, np.float16)])
