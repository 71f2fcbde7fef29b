"""The input-size rules: the shape a frame's aspect gets at the model's stride, and the
valid `model.input_size` values (plain Python, milliseconds)."""

from __future__ import annotations

import numpy as np
import pytest

from engines.input_size import check_input_size, model_stride, rect_input_size


@pytest.mark.parametrize(
    ("frame", "model", "stride", "expected"),
    [
        ((1280, 720), (640, 640), 32, (384, 640)),  # 16:9, the example
        ((1920, 1080), (640, 640), 32, (384, 640)),
        ((960, 540), (416, 416), 32, (256, 416)),
        ((768, 576), (416, 416), 32, (320, 416)),  # 4:3
        ((720, 1280), (640, 640), 32, (640, 384)),  # portrait
        ((640, 640), (640, 640), 32, (640, 640)),  # square keeps the model's size
        ((1001, 37), (640, 640), 32, (32, 640)),  # very wide: one stride at least
        ((1280, 720), (384, 640), 32, (384, 640)),  # a model exported rectangular
        ((1280, 720), (1280, 1280), 64, (768, 1280)),  # P6 model, stride 64
    ],
)
def test_rect_input_size_table(frame: tuple[int, int], model: tuple[int, int], stride: int,
                               expected: tuple[int, int]) -> None:
    assert rect_input_size(*frame, *model, stride) == expected


def test_rect_input_size_property() -> None:
    """Any frame: stride multiples, never above the model's side, the letterboxed frame
    fits, and the padding on each side is less than one stride."""
    rng = np.random.default_rng(13)
    for _ in range(2000):
        width, height = (int(v) for v in rng.integers(16, 4000, 2))
        side = int(rng.choice([320, 416, 512, 640, 1280]))
        stride = int(rng.choice([32, 64]))
        h, w = rect_input_size(width, height, side, side, stride)
        assert h % stride == 0 or h == side
        assert w % stride == 0 or w == side
        assert max(h, w) <= side
        scale = min(h / height, w / width)
        assert round(width * scale) <= w
        assert round(height * scale) <= h
        assert w - round(width * scale) < stride
        assert h - round(height * scale) < stride


@pytest.mark.parametrize(
    ("value", "valid"),
    [("auto", "auto"), ("square", "square"), ([384, 640], (384, 640)), ((64, 32), (64, 32)),
     ("wide", None), ([300, 640], None), ([384], None), ([384, 640, 3], None),
     ([True, 640], None), ([384.0, 640], None), ([0, 640], None), ([8224, 640], None),
     (384, None), (None, None)],
)
def test_check_input_size_table(value: object, valid: object) -> None:
    if valid is None:
        with pytest.raises(ValueError, match=r"auto, square or|multiple of 32"):
            check_input_size(value)
    else:
        assert check_input_size(value) == valid


@pytest.mark.parametrize(("metadata", "stride"), [
    ({}, 32), ({"stride": "32"}, 32), ({"stride": "64"}, 64), ({"stride": "x"}, 32),
    ({"stride": "4"}, 32), ({"stride": "512"}, 32)])
def test_model_stride_from_metadata(metadata: dict[str, str], stride: int) -> None:
    assert model_stride(metadata) == stride
