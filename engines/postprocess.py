"""Postprocessing: a detector's raw output arrays into Detections, the same for every backend.

"Decode" is a video word here; turning outputs into boxes is postprocessing, and what
to keep (thresholds, NMS, the class list) is the DetectionFilter.

Each family turns one frame (batch 1) into candidate boxes in model-input pixels, one
class per candidate (the argmax), dropping low scores before anything costly; a common
step then applies the class allow-list, per-class NMS and the detection cap.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from engines.base import Detections, InputSpec
from engines.errors import ModelLoadError
from engines.model_info import family_hint
from engines.output_checks import (  # noqa: F401 - re-exported: callers import them here
    NonFiniteOutputError,
    count_nonfinite,
)
from engines.preprocess import Letterbox

logger = logging.getLogger(__name__)

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class DetectionFilter:
    """What to keep: `class_ids` is the allow-list of class ids (None keeps every class)."""

    score_threshold: float = 0.35
    iou_threshold: float = 0.45
    max_detections: int = 100
    class_ids: np.ndarray | None = None


Postprocessor = Callable[[Sequence[np.ndarray], InputSpec, DetectionFilter], Detections]


@dataclass(frozen=True)
class Family:
    """A postprocessor and the input convention (colour, scale, padding) of its models."""

    name: str
    postprocess: Postprocessor
    color: str
    scale: float
    pad_align: str
    pad_value: int = 114

    def input_spec(
        self, name: str, height: int, width: int, layout: str = "NCHW", dtype: str = "float32"
    ) -> InputSpec:
        """The InputSpec a model of this family wants, for a backend that read its shape."""
        return InputSpec(
            name=name,
            height=height,
            width=width,
            layout=layout,
            color=self.color,
            scale=self.scale,
            pad_value=self.pad_value,
            pad_align=self.pad_align,
            dtype=dtype,
        )


def anchor_count(input_height: int, input_width: int) -> int:
    """Grid cells over strides 8/16/32: 3549 for 416x416, 8400 for 640x640."""
    return sum(-(-input_height // s) * -(-input_width // s) for s in STRIDES)


@functools.lru_cache(maxsize=8)
def _yolox_grid(input_height: int, input_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (N, 2) and strides (N, 1) in YOLOX's output order, built once per shape."""
    grids, strides = [], []
    for stride in STRIDES:
        rows, cols = -(-input_height // stride), -(-input_width // stride)
        y, x = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grids.append(np.stack((x.ravel(), y.ravel()), axis=1))
        strides.append(np.full((rows * cols, 1), stride))
    grid = np.concatenate(grids).astype(np.float32)
    stride_column = np.concatenate(strides).astype(np.float32)
    grid.flags.writeable = False
    stride_column.flags.writeable = False
    return grid, stride_column


def _output(outputs: Sequence[np.ndarray], family: str, expected: str) -> np.ndarray:
    if len(outputs) == 0:
        raise ValueError(
            f"{family} postprocessing got no output arrays; expected one shaped {expected}"
        )
    return np.asarray(outputs[0])


def _shape_error(family: str, expected: str, array: np.ndarray) -> ValueError:
    return ValueError(
        f"{family} postprocessing expects an output shaped {expected}, got {tuple(array.shape)}; "
        "check model.family in the config"
    )


def _rows(array: np.ndarray, family: str, expected: str, min_columns: int) -> np.ndarray:
    """The (N, C) rows of a [1, N, C] output, or a ValueError naming what was expected."""
    if array.ndim != 3 or array.shape[0] != 1 or array.shape[2] < min_columns:
        raise _shape_error(family, expected, array)
    return array[0]


def _xywh_to_xyxy(centre_size: np.ndarray) -> np.ndarray:
    half = centre_size[:, 2:4] * 0.5
    return np.concatenate((centre_size[:, :2] - half, centre_size[:, :2] + half), axis=1)


def _best_class(
    scores: np.ndarray, options: DetectionFilter
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices above the threshold, their argmax class and its score, for (N, C) scores."""
    best = scores.max(axis=1)
    keep = np.flatnonzero(best > options.score_threshold)
    class_ids = scores[keep].argmax(axis=1) if keep.size else np.zeros(0, np.int64)
    return keep, class_ids, best[keep]


def _finish(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    options: DetectionFilter,
    nms: bool,
) -> Detections:
    """Allow-list, per-class NMS (when the model did not do it), cap, highest score first."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    class_ids = np.asarray(class_ids, np.int32).reshape(-1)
    # NaN fails the threshold; +inf passes it, so boxes and scores must also be finite.
    # These rows passed the family's own prefilter: a non-finite one is a candidate that
    # the decode math overflowed (finite outputs such as 1e30), counted for health.
    finite = np.isfinite(scores) & np.isfinite(boxes).all(1)
    nonfinite = int(scores.size - np.count_nonzero(finite))
    keep = (scores > options.score_threshold) & finite
    if options.class_ids is not None:
        keep &= np.isin(class_ids, np.asarray(options.class_ids))
    if not keep.all():
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    # A probability is at most 1 (the detections schema says so): higher means logits.
    above = scores > 1.0
    clipped = int(np.count_nonzero(above))
    if clipped:
        scores = np.minimum(scores, np.float32(1.0))
    if scores.size == 0:
        return Detections.empty(nonfinite, clipped)
    if nms and scores.size > 1:
        # Per-class NMS by moving each class to its own disjoint square. NMSBoxesBatched
        # does the same but offsets by max coordinate only: boxes reaching below -1 px
        # could then touch another class's.
        corners = boxes.astype(np.float64)
        origin = corners.min()
        extent = corners.max() - origin + 1.0
        corners += (class_ids * extent - origin)[:, None]
        sizes = np.concatenate((corners[:, :2], corners[:, 2:] - corners[:, :2]), axis=1)
        kept = cv2.dnn.NMSBoxes(sizes, scores, options.score_threshold, options.iou_threshold)
        index = np.asarray(kept, np.int64).reshape(-1)
        index = index[np.argsort(-scores[index], kind="stable")]
    else:
        index = np.argsort(-scores, kind="stable")
    index = index[: max(options.max_detections, 0)]
    return Detections(
        np.ascontiguousarray(boxes[index]),
        np.ascontiguousarray(scores[index]),
        np.ascontiguousarray(class_ids[index]),
        nonfinite,
        clipped,
    )


def postprocess_yolox(
    outputs: Sequence[np.ndarray], spec: InputSpec, options: DetectionFilter
) -> Detections:
    """[1, N, 5+nc]: raw grid offsets cx, cy, w, h, objectness, class scores (sigmoided)."""
    expected = f"[1, {anchor_count(spec.height, spec.width)}, 5+classes]"
    rows = _rows(_output(outputs, "yolox", expected), "yolox", expected, 6)
    grid, strides = _yolox_grid(spec.height, spec.width)
    if rows.shape[0] != grid.shape[0]:
        raise _shape_error("yolox", expected, np.asarray(outputs[0]))
    # Class scores are sigmoids (<= 1), so obj * cls <= obj: objectness alone prefilters.
    candidates = np.flatnonzero(rows[:, 4] > options.score_threshold)
    rows = rows[candidates].astype(np.float32, copy=False)
    keep, class_ids, scores = _best_class(rows[:, 5:] * rows[:, 4:5], options)
    rows, cells = rows[keep], candidates[keep]
    centre = (rows[:, :2] + grid[cells]) * strides[cells]
    size = np.exp(rows[:, 2:4]) * strides[cells]
    boxes = _xywh_to_xyxy(np.concatenate((centre, size), axis=1))
    return _finish(boxes, scores, class_ids, options, nms=True)


def postprocess_ultralytics(
    outputs: Sequence[np.ndarray], spec: InputSpec, options: DetectionFilter
) -> Detections:
    """[1, 4+nc, N]: cx, cy, w, h in input pixels then class scores, no objectness."""
    expected = "[1, 4+classes, N]"
    array = _output(outputs, "ultralytics", expected)
    if array.ndim != 3 or array.shape[0] != 1 or array.shape[1] < 5:
        raise _shape_error("ultralytics", expected, array)
    if array.shape[2] != anchor_count(spec.height, spec.width):
        raise _shape_error("ultralytics",
                           f"[1, 4+classes, {anchor_count(spec.height, spec.width)}]", array)
    channels = array[0]
    # max over the class axis of the channel-major array, argmax only where it passes.
    best = channels[4:].max(axis=0)
    keep = np.flatnonzero(best > options.score_threshold)
    class_ids = channels[4:, keep].argmax(axis=0)
    boxes = _xywh_to_xyxy(channels[:4, keep].T.astype(np.float32))
    return _finish(boxes, best[keep], class_ids, options, nms=True)


def postprocess_end2end(
    outputs: Sequence[np.ndarray], spec: InputSpec, options: DetectionFilter
) -> Detections:
    """[1, N, 6]: x1, y1, x2, y2, score, class_id in input pixels; the model did NMS."""
    expected = "[1, N, 6]"
    rows = _rows(_output(outputs, "end2end", expected), "end2end", expected, 6)
    if rows.shape[1] != 6:
        raise _shape_error("end2end", expected, outputs[0])
    rows = rows[rows[:, 4] > options.score_threshold]
    return _finish(rows[:, :4], rows[:, 4], np.rint(rows[:, 5]), options, nms=False)


def postprocess_yolov5(
    outputs: Sequence[np.ndarray], spec: InputSpec, options: DetectionFilter
) -> Detections:
    """[1, N, 5+nc]: cx, cy, w, h in input pixels, objectness, class scores."""
    expected = "[1, N, 5+classes]"
    rows = _rows(_output(outputs, "yolov5", expected), "yolov5", expected, 6)
    rows = rows[rows[:, 4] > options.score_threshold].astype(np.float32, copy=False)
    keep, class_ids, scores = _best_class(rows[:, 5:] * rows[:, 4:5], options)
    boxes = _xywh_to_xyxy(rows[keep, :4])
    return _finish(boxes, scores, class_ids, options, nms=True)


def postprocess_ssd(
    outputs: Sequence[np.ndarray], spec: InputSpec, options: DetectionFilter
) -> Detections:
    """DetectionOutput [1, 1, N, 7], or boxes [1, N, 4] + scores [1, N, C]; coords 0..1.

    DetectionOutput rows are (image_id, label, conf, x1, y1, x2, y2) and already NMSed;
    a row with image_id < 0 ends the list. In the two-output form boxes are normalised
    x1, y1, x2, y2 and score column 0 is the background class, which is never reported.
    """
    expected = "[1, 1, N, 7], or [1, N, 4] boxes + [1, N, classes] scores"
    to_pixels = np.array([spec.width, spec.height, spec.width, spec.height], np.float32)
    if len(outputs) == 1:
        array = np.asarray(outputs[0])
        if array.ndim != 4 or array.shape[:2] != (1, 1) or array.shape[3] != 7:
            raise _shape_error("ssd", expected, array)
        rows = array[0, 0]
        ends = np.flatnonzero(rows[:, 0] < 0)
        if ends.size:
            rows = rows[: ends[0]]
        rows = rows[rows[:, 2] > options.score_threshold].astype(np.float32, copy=False)
        labels = np.rint(rows[:, 1])
        return _finish(rows[:, 3:7] * to_pixels, rows[:, 2], labels, options, nms=False)
    if len(outputs) != 2:
        raise ValueError(f"ssd postprocessing expects {expected}, got {len(outputs)} outputs")
    first, second = (np.asarray(o) for o in outputs)
    boxes, scores = (first, second) if first.shape[-1] == 4 else (second, first)
    if (
        boxes.ndim != 3
        or scores.ndim != 3
        or boxes.shape[0] != 1
        or scores.shape[0] != 1
        or boxes.shape[2] != 4
        or boxes.shape[1] != scores.shape[1]
        or scores.shape[2] < 2
    ):
        shapes = f"{tuple(first.shape)} and {tuple(second.shape)}"
        raise ValueError(f"ssd postprocessing expects {expected}, got {shapes}")
    keep, class_ids, best = _best_class(scores[0], options)
    foreground = class_ids != 0
    keep, class_ids, best = keep[foreground], class_ids[foreground], best[foreground]
    return _finish(boxes[0, keep] * to_pixels, best, class_ids, options, nms=True)


FAMILY_OUTPUTS = {
    "yolox": "[1, cells, 5+classes] (cells: 3549 at 416x416)",
    "ultralytics": "[1, 4+classes, cells] (cells: 8400 at 640x640)",
    "end2end": "[1, N, 6]",
    "yolov5": "[1, N, 5+classes]",
    "ssd": "boxes, scores (and classes)",
}
"""What each family's postprocessing takes, for load-time errors."""

FAMILIES: dict[str, Family] = {
    "yolox": Family("yolox", postprocess_yolox, color="BGR", scale=1.0, pad_align="topleft"),
    "ultralytics": Family(
        "ultralytics", postprocess_ultralytics, color="RGB", scale=1 / 255, pad_align="center"
    ),
    "end2end": Family(
        "end2end", postprocess_end2end, color="RGB", scale=1 / 255, pad_align="center"
    ),
    "yolov5": Family("yolov5", postprocess_yolov5, color="RGB", scale=1 / 255, pad_align="center"),
    "ssd": Family("ssd", postprocess_ssd, color="BGR", scale=1.0, pad_align="topleft"),
}


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; allowed: {', '.join(FAMILIES)}") from None


def choose_family(
    family: str,
    metadata: Mapping[str, str],
    *,
    output_shapes: Sequence[tuple[int, ...]],
    input_height: int,
    input_width: int,
    model_path: str,
) -> str:
    """The configured family, else the metadata's hint, else the output shapes' verdict;
    a model no postprocessor fits is a ModelLoadError naming the file."""
    if family != "auto":
        return family
    try:
        return family_hint(metadata) or detect_family(output_shapes, input_height, input_width)
    except ValueError as exc:
        raise ModelLoadError(model_path, str(exc)) from exc


def detect_family(
    output_shapes: Sequence[tuple[int, ...]], input_height: int, input_width: int
) -> str:
    """Name the family from output shapes alone; anchor counts are checked before [1, N, 6]
    so that a one-class YOLOX or YOLOv5 model is not taken for an end-to-end one."""
    shapes = [tuple(int(d) for d in shape) for shape in output_shapes]
    anchors = anchor_count(input_height, input_width)
    if len(shapes) == 2 and all(len(s) == 3 and s[0] == 1 for s in shapes):
        first, second = shapes
        if first[1] == second[1] and 4 in (first[2], second[2]):
            return "ssd"
    if shapes:
        shape = shapes[0]
        if len(shape) == 4 and shape[:2] == (1, 1) and shape[3] == 7:
            return "ssd"
        if len(shape) == 3 and shape[0] == 1:
            _, rows, columns = shape
            if columns == anchors and rows < columns and rows > 4:
                return "ultralytics"
            if rows == anchors and columns > 5:
                return "yolox"
            if rows == 3 * anchors and columns > 5:
                return "yolov5"
            if columns == 6:
                return "end2end"
    raise ValueError(
        f"cannot tell the model family from output shapes {shapes} for a "
        f"{input_height}x{input_width} input; set model.family in the config to one of: "
        f"{', '.join(FAMILIES)}"
    )


def boxes_in_input(
    family: str, outputs: Sequence[np.ndarray], spec: InputSpec, options: DetectionFilter
) -> Detections:
    """Detections of one frame with boxes in model-input pixels."""
    postprocessor = _family(family).postprocess
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite boxes are dropped
        return postprocessor(outputs, spec, options)


def postprocess(  # noqa: PLR0917 -- positional order is the pipeline's documented call
    family: str,
    outputs: Sequence[np.ndarray],
    spec: InputSpec,
    options: DetectionFilter,
    letterbox: Letterbox,
    frame_width: int,
    frame_height: int,
) -> Detections:
    """Detections of one frame with boxes in frame pixels; boxes wholly in padding vanish."""
    found = boxes_in_input(family, outputs, spec, options)
    if len(found) == 0:
        return found
    boxes = letterbox.to_frame(found.boxes, frame_width, frame_height)
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if visible.all():
        return dataclasses.replace(found, boxes=boxes)
    return dataclasses.replace(
        found,
        boxes=np.ascontiguousarray(boxes[visible]),
        scores=found.scores[visible],
        class_ids=found.class_ids[visible],
    )
