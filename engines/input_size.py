"""The input-size rules, in plain Python: which shape a camera's frames get, and which
`model.input_size` values are valid. Kept apart from engines/input_shapes.py (which
compiles) so the config can check values without importing OpenCV or a runtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from engines.metadata import is_decimal

InputSize = str | tuple[int, int]
"""'auto', 'square' or (height, width) in pixels."""
MODES = ("auto", "square")
DEFAULT_STRIDE = 32
EXPORT_HINT = (
    "export the model with dynamic input sizes for rectangular input on wide cameras "
    "(Ultralytics: model.export(format='onnx', dynamic=True) or format='openvino', "
    "dynamic=True; torch.onnx.export: dynamic_axes={'images': {2: 'height', 3: 'width'}})"
)


def model_stride(metadata: dict[str, str]) -> int:
    """The model's largest stride: Ultralytics' `stride` metadata, else 32 (P5 models)."""
    text = str(metadata.get("stride", "")).strip()
    return int(text) if is_decimal(text) and 8 <= int(text) <= 128 else DEFAULT_STRIDE


def rect_input_size(
    frame_width: int, frame_height: int, model_height: int, model_width: int,
    stride: int = DEFAULT_STRIDE,
) -> tuple[int, int]:
    """(height, width) for a frame's aspect: the model's long side on the frame's long
    side, the other side rounded up to the stride (Ultralytics' LetterBox(auto=True)).

    1280x720 on 640x640 -> (384, 640); 768x576 on 416x416 -> (320, 416); a square frame
    keeps the model's own size. Never larger than the model's long side per axis.
    """
    if min(frame_width, frame_height, model_height, model_width, stride) <= 0:
        raise ValueError(f"sizes must be positive: frame {frame_width}x{frame_height}, "
                         f"model {model_width}x{model_height}, stride {stride}")
    side = max(model_height, model_width)
    ratio = side / max(frame_width, frame_height)
    width = min(side, max(1, round(frame_width * ratio)))
    height = min(side, max(1, round(frame_height * ratio)))
    return (min(side, math.ceil(height / stride) * stride),
            min(side, math.ceil(width / stride) * stride))


def check_input_size(value: object) -> InputSize:
    """'auto', 'square' or [height, width] (32..8192, multiples of 32); ValueError says why."""
    if isinstance(value, str):
        if value in MODES:
            return value
        raise ValueError(f"must be auto, square or [height, width], not {value!r}")
    if (not isinstance(value, Sequence) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"must be auto, square or [height, width] in pixels, not {value!r}")
    height, width = int(value[0]), int(value[1])
    for label, side in (("height", height), ("width", width)):
        if not 32 <= side <= 8192 or side % DEFAULT_STRIDE:
            raise ValueError(f"{label} {side} must be a multiple of 32 from 32 to 8192 "
                             "(the model's stride)")
    return height, width
