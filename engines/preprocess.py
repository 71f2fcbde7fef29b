"""Letterbox a camera frame into a model's input tensor, and map boxes back out of it.

Measured on the 2-core build CPU, 768x576 frame -> 416x416, best of 9 timeit runs (noisy
+-20%): prepare() 0.48-0.60 ms for float32 NCHW (of which the resize is 0.29-0.34 ms;
INTER_AREA would be 2.6 ms), 0.65-0.70 ms for float16. Alternatives measured: a padded
uint8 canvas + transpose/multiply 0.82-0.99 ms, copyMakeBorder + transpose/astype 0.86-0.89
ms, canvas + cv2.dnn.blobFromImage 3.1-3.3 ms, float32 + numpy astype(float16) 2.3-2.7 ms.
So: resize to the small image only, cv2.split it, write each plane straight into its
window of a fresh tensor (numpy cast or multiply for float32, one cv2.LUT pass for float16
and scaled uint8) and fill only the padding strips. RGB costs nothing in NCHW (planes are
taken in reverse); in NHWC the small image is converted (cvtColor after the resize 0.25 ms
with it, before 0.30-0.32 ms).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from engines.base import InputSpec

_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the model input, per axis:
    input_x = frame_x * scale_x + pad_x, input_y = frame_y * scale_y + pad_y.

    `scale` is the one ratio the letterbox chose; the resized sides are rounded to whole
    pixels, so the gain actually applied differs per axis (resized side / frame side,
    up to half a pixel over a side). `scale_x`/`scale_y` are those gains (default:
    `scale`), and `to_frame` is the exact inverse of that resize, as Ultralytics 8.4's
    per-axis `scale_boxes` is.
    """

    scale: float
    pad_x: float
    pad_y: float
    scale_x: float = 0.0
    scale_y: float = 0.0

    def __post_init__(self) -> None:
        if not self.scale_x:
            object.__setattr__(self, "scale_x", self.scale)
        if not self.scale_y:
            object.__setattr__(self, "scale_y", self.scale)

    def to_frame(self, boxes: np.ndarray, frame_width: int, frame_height: int) -> np.ndarray:
        """Map (N, 4) x1, y1, x2, y2 boxes from model-input pixels to frame pixels, clipped."""
        out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        out -= np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        out *= np.array([1.0 / self.scale_x, 1.0 / self.scale_y] * 2, np.float32)
        np.clip(out[:, 0::2], 0, frame_width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, frame_height, out=out[:, 1::2])
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) frame-pixel boxes into model-input pixels (the forward direction)."""
        out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * np.array(
            [self.scale_x, self.scale_y] * 2, np.float32)
        out += np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        return out


@dataclass(frozen=True)
class _Placement:
    """Where the resized frame sits in the input: its size and top-left corner."""

    width: int
    height: int
    left: int
    top: int
    letterbox: Letterbox


@functools.lru_cache(maxsize=32)
def _placement(
    frame_height: int, frame_width: int, input_height: int, input_width: int, pad_align: str
) -> _Placement:
    """Letterbox geometry; cached because a camera's frame size rarely changes."""
    if pad_align not in ("center", "topleft"):
        raise ValueError(f"pad_align must be 'center' or 'topleft', not {pad_align!r}")
    scale = min(input_height / frame_height, input_width / frame_width)
    width = min(input_width, max(1, round(frame_width * scale)))
    height = min(input_height, max(1, round(frame_height * scale)))
    if pad_align == "center":
        # Ultralytics' round(d - 0.1) on a half pixel is the floor of the split.
        left, top = (input_width - width) // 2, (input_height - height) // 2
    else:
        left, top = 0, 0
    letterbox = Letterbox(scale, float(left), float(top), width / frame_width,
                          height / frame_height)
    return _Placement(width, height, left, top, letterbox)


@functools.lru_cache(maxsize=16)
def _lookup_table(dtype: str, scale: float) -> np.ndarray | None:
    """uint8 -> value * scale in the tensor dtype, one cv2.LUT pass; None when identity."""
    if dtype not in _DTYPES:
        raise ValueError(f"input dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    values = np.arange(256, dtype=np.float64)
    if scale != 1.0:
        values *= scale
    if dtype == "uint8":
        if scale == 1.0:
            return None
        return np.clip(np.rint(values), 0, 255).astype(np.uint8).reshape(1, 256)
    return values.astype(_DTYPES[dtype]).reshape(1, 256)


def _fill_padding(image: np.ndarray, place: _Placement, value: object) -> None:
    """Fill only the strips around the image; `image` is (H, W, ...) or (C, H, W) via views."""
    bottom, right = place.top + place.height, place.left + place.width
    image[: place.top] = value
    image[bottom:] = value
    image[place.top : bottom, : place.left] = value
    image[place.top : bottom, right:] = value


def _convert_into(
    source: np.ndarray, target: np.ndarray, scale: float, table: np.ndarray | None
) -> None:
    """uint8 pixels -> tensor values: numpy is quicker for float32, a LUT for the rest."""
    if table is None or (target.dtype == np.float32 and scale == 1.0):
        target[...] = source
    elif target.dtype == np.float32:
        np.multiply(source, np.float32(scale), out=target)
    else:
        cv2.LUT(source, table, dst=target)


def prepare(frame: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Letterbox]:
    """Letterbox an HxWx3 uint8 BGR frame into a fresh C-contiguous tensor of `spec.shape`.

    A fresh tensor every call: the engine may still be reading the previous one.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
        raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame.dtype} {frame.shape}")
    if spec.layout not in ("NCHW", "NHWC"):
        raise ValueError(f"input layout must be NCHW or NHWC, not {spec.layout!r}")
    if spec.color not in ("BGR", "RGB"):
        raise ValueError(f"input color must be BGR or RGB, not {spec.color!r}")
    place = _placement(frame.shape[0], frame.shape[1], spec.height, spec.width, spec.pad_align)
    table = _lookup_table(spec.dtype, float(spec.scale))
    out = np.empty(spec.shape, dtype=_DTYPES[spec.dtype])
    pad = spec.pad_value if table is None else table[0, spec.pad_value]
    rows = slice(place.top, place.top + place.height)
    cols = slice(place.left, place.left + place.width)
    size = (place.width, place.height)
    resized = size != (frame.shape[1], frame.shape[0])

    if spec.layout == "NHWC":
        image = out[0]
        _fill_padding(image, place, pad)
        region = image[rows, cols]
        if table is None and spec.color == "BGR" and resized:
            cv2.resize(frame, size, dst=region, interpolation=cv2.INTER_LINEAR)
            return out, place.letterbox
        small = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) if resized else frame
        if spec.color == "RGB":
            small = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        _convert_into(small, region, float(spec.scale), table)
        return out, place.letterbox

    planes_out = out[0]
    for channel in planes_out:
        _fill_padding(channel, place, pad)
    small = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) if resized else frame
    planes = cv2.split(small)
    if spec.color == "RGB":
        planes = planes[::-1]
    for plane, channel in zip(planes, planes_out, strict=True):
        _convert_into(plane, channel[rows, cols], float(spec.scale), table)
    return out, place.letterbox
