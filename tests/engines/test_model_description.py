"""One model description for every backend: the layout guesser, the input size and the
one-frame contract live in engines/model_info.py.

The example: OpenVINO refused a [1, 4, H, W] input (no 3-channel dim) while the TensorRT
cache's guesser called it NCHW and built an engine for it. Now both use one guesser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.engine_cache import concrete_shape
from engines.errors import ModelLoadError
from engines.model_info import describe_input, input_layout, input_size

LAYOUTS = [
    ([1, 3, 416, 416], "NCHW"),
    ([1, 416, 416, 3], "NHWC"),
    ([1, 3, 640, 3], "NCHW"),  # both could be channels: ONNX's convention wins
    ([-1, 3, -1, -1], "NCHW"),
    ([-1, -1, -1, 3], "NHWC"),
    ([-1, -1, -1, -1], "NCHW"),  # a fully dynamic export: the ONNX default
    ([1, 4, 416, 416], ValueError),
    ([1, 416, 416, 4], ValueError),
    ([1, 1, 416, 416], ValueError),
    ([1, 3, 416], ValueError),
]


@pytest.mark.parametrize(("dims", "want"), LAYOUTS)
def test_one_layout_guesser(dims: list[int], want: object) -> None:
    if want is ValueError:
        with pytest.raises(ValueError, match=r"input shape|4-D image input"):
            input_layout(dims)
    else:
        assert input_layout(dims) == want


@pytest.mark.parametrize(("dims", "want"), [d for d in LAYOUTS if len(d[0]) == 4])
def test_every_backend_path_agrees(dims: list[int], want: object) -> None:
    """The TensorRT cache's shape and OpenVINO/ONNX Runtime's description agree."""
    path = Path("m.onnx")
    if dims == [1, 3, 640, 3]:  # a 640x3 image: no detection grid fits it
        for describe in (lambda: describe_input(dims, {}, str(path)),
                         lambda: concrete_shape(dims, {}, path)):
            with pytest.raises(ModelLoadError, match="per side"):
                describe()
        return
    if want is ValueError:
        with pytest.raises(ModelLoadError, match="cannot tell channels"):
            describe_input(dims, {}, str(path))
        with pytest.raises(ModelLoadError, match="cannot tell channels"):
            concrete_shape(dims, {}, path)
        return
    layout, _, _ = describe_input(dims, {"imgsz": "[320, 480]"}, str(path))
    assert layout == want
    shape = concrete_shape(dims, {"imgsz": "[320, 480]"}, path)
    channels = 1 if layout == "NCHW" else 3
    assert shape[channels] == 3
    assert shape[0] == 1


def test_dynamic_sizes_come_from_imgsz_else_640() -> None:
    assert input_size([1, 3, -1, -1], "NCHW", {"imgsz": "[320, 480]"}) == (320, 480)
    assert input_size([1, 3, -1, -1], "NCHW", {"imgsz": "512"}) == (512, 512)
    assert input_size([1, 3, -1, -1], "NCHW", {}) == (640, 640)
    assert input_size([1, 256, 384, 3], "NHWC", {"imgsz": "[1, 1]"}) == (256, 384)


def test_a_fixed_batch_above_one_is_refused_everywhere() -> None:
    with pytest.raises(ModelLoadError, match="fixed batch of 4"):
        describe_input([4, 3, 416, 416], {}, "m.onnx")
    with pytest.raises(ModelLoadError, match="fixed batch of 4"):
        concrete_shape([4, 3, 416, 416], {}, Path("m.onnx"))
    assert describe_input([-1, 3, 416, 416], {}, "m.onnx") == ("NCHW", 416, 416)
