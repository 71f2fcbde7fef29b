"""Letterboxing: tensor layout, dtype, scale and colour, and the exact way back to the frame."""

from __future__ import annotations

import numpy as np
import pytest

from engines.base import InputSpec
from engines.preprocess import Letterbox, _placement, prepare

FRAME_SIZES = [  # (height, width)
    (480, 640),  # landscape
    (640, 480),  # portrait
    (100, 150),  # smaller than the input
    (577, 769),  # odd
    (1080, 1920),
    (416, 416),  # already the input size
    (37, 1001),  # very wide
]


def spec_for(**changes: object) -> InputSpec:
    settings: dict = {"name": "images", "height": 416, "width": 416}
    settings.update(changes)
    return InputSpec(**settings)


@pytest.mark.parametrize("align", ["center", "topleft"])
@pytest.mark.parametrize(("height", "width"), FRAME_SIZES)
def test_letterbox_round_trip_within_a_pixel(height: int, width: int, align: str) -> None:
    frame = np.zeros((height, width, 3), np.uint8)
    _, letterbox = prepare(frame, spec_for(pad_align=align, dtype="uint8"))
    boxes = np.array(
        [
            [0, 0, width, height],
            [width * 0.1, height * 0.2, width * 0.5, height * 0.7],
            [1, 1, 3, 3],
        ],
        np.float32,
    )
    in_input = letterbox.to_input(boxes)
    assert in_input.min() >= 0
    assert in_input[:, 0::2].max() <= 416 + 0.5
    assert in_input[:, 1::2].max() <= 416 + 0.5
    back = letterbox.to_frame(in_input, width, height)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, boxes, atol=1.0)


@pytest.mark.parametrize("align", ["center", "topleft"])
@pytest.mark.parametrize(("height", "width"), [(480, 640), (640, 480), (577, 769), (100, 150)])
def test_letterbox_matches_where_the_pixels_land(height: int, width: int, align: str) -> None:
    """A white rectangle in the frame is found in the tensor where the Letterbox says."""
    frame = np.zeros((height, width, 3), np.uint8)
    rect = np.array([[width // 4, height // 3, width // 2, height * 3 // 4]], np.float32)
    x1, y1, x2, y2 = rect[0].astype(int)
    frame[y1:y2, x1:x2] = 255
    tensor, letterbox = prepare(frame, spec_for(pad_align=align, layout="NHWC", dtype="uint8"))
    ys, xs = np.nonzero(tensor[0, :, :, 0] > 127)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(found, letterbox.to_input(rect), atol=1.5)
    np.testing.assert_allclose(
        letterbox.to_frame(found, width, height), rect, atol=1.5 / letterbox.scale
    )


def test_to_frame_clips_to_the_frame() -> None:
    letterbox = Letterbox(scale=0.5, pad_x=0.0, pad_y=10.0)
    boxes = np.array([[-20, 0, 400, 400]], np.float32)
    np.testing.assert_allclose(letterbox.to_frame(boxes, 640, 480), [[0, 0, 640, 480]])


def test_pure_blue_frame_in_rgb_nchw_scaled_center() -> None:
    frame = np.zeros((200, 400, 3), np.uint8)
    frame[:, :, 0] = 255  # blue in BGR
    spec = spec_for(color="RGB", scale=1 / 255, pad_align="center")
    tensor, letterbox = prepare(frame, spec)
    assert tensor.shape == (1, 3, 416, 416)
    assert tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    # 400x200 -> 416x208, padded 104 rows above and below.
    assert (letterbox.scale, letterbox.pad_x, letterbox.pad_y) == (1.04, 0.0, 104.0)
    image = tensor[0, :, 104:312, :]
    np.testing.assert_allclose(image[0], 0.0)  # R
    np.testing.assert_allclose(image[1], 0.0)  # G
    np.testing.assert_allclose(image[2], 1.0, rtol=1e-6)  # B
    pad = np.float32(114 / 255)
    np.testing.assert_allclose(tensor[0, :, :104, :], pad, rtol=1e-6)
    np.testing.assert_allclose(tensor[0, :, 312:, :], pad, rtol=1e-6)


def test_topleft_bgr_nhwc_uint8_keeps_pixels_and_pads_right_and_bottom() -> None:
    frame = np.zeros((300, 200, 3), np.uint8)
    frame[:, :] = (255, 10, 20)
    tensor, letterbox = prepare(frame, spec_for(layout="NHWC", dtype="uint8", pad_align="topleft"))
    assert tensor.shape == (1, 416, 416, 3)
    assert tensor.dtype == np.uint8
    assert tensor.flags.c_contiguous
    # 200x300 portrait -> 277x416 at the left edge, 114 to the right.
    assert (letterbox.pad_x, letterbox.pad_y) == (0.0, 0.0)
    assert (tensor[0, :, :277] == (255, 10, 20)).all()
    assert (tensor[0, :, 277:] == 114).all()


def test_center_portrait_pads_left_and_right() -> None:
    frame = np.full((416, 208, 3), 7, np.uint8)
    tensor, letterbox = prepare(frame, spec_for(dtype="uint8", pad_value=0))
    assert (letterbox.pad_x, letterbox.pad_y, letterbox.scale) == (104.0, 0.0, 1.0)
    assert (tensor[0, :, :, :104] == 0).all()
    assert (tensor[0, :, :, 104:312] == 7).all()
    assert (tensor[0, :, :, 312:] == 0).all()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color", ["BGR", "RGB"])
def test_float16_and_float32_agree(layout: str, color: str) -> None:
    frame = np.random.default_rng(1).integers(0, 256, (576, 768, 3), np.uint8)
    half, _ = prepare(frame, spec_for(layout=layout, color=color, scale=1 / 255, dtype="float16"))
    single, _ = prepare(frame, spec_for(layout=layout, color=color, scale=1 / 255))
    assert half.dtype == np.float16
    assert half.shape == single.shape == spec_for(layout=layout).shape
    np.testing.assert_allclose(half.astype(np.float32), single, atol=1e-3)


def test_rgb_swaps_channels_in_both_layouts() -> None:
    frame = np.zeros((416, 416, 3), np.uint8)
    frame[:, :] = (1, 2, 3)
    nchw, _ = prepare(frame, spec_for(color="RGB"))
    nhwc, _ = prepare(frame, spec_for(color="RGB", layout="NHWC"))
    assert nchw[0, :, 0, 0].tolist() == [3.0, 2.0, 1.0]
    assert nhwc[0, 0, 0].tolist() == [3.0, 2.0, 1.0]


def test_rejects_frames_and_specs_it_cannot_handle() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        prepare(np.zeros((10, 10), np.uint8), spec_for())
    with pytest.raises(ValueError, match="dtype"):
        prepare(np.zeros((10, 10, 3), np.uint8), spec_for(dtype="int8"))
    with pytest.raises(ValueError, match="pad_align"):
        prepare(np.zeros((10, 10, 3), np.uint8), spec_for(pad_align="middle"))


def test_boxes_map_back_per_axis_as_the_exact_inverse_of_the_resize() -> None:
    """Over 300 random frame sizes and input shapes (square and rectangular, both pad
    alignments), really letterboxed: the frame's edges land exactly on the resized
    image's edges in the tensor, and a box goes to the input and back unchanged (float32
    rounding only, < 0.01 px).
    """
    rng = np.random.default_rng(8)
    for _ in range(300):
        width, height = (int(v) for v in rng.integers(8, 1200, 2))
        in_h, in_w = (int(v) * 32 for v in rng.integers(1, 21, 2))
        align = "center" if rng.random() < 0.5 else "topleft"
        frame = np.zeros((height, width, 3), np.uint8)
        tensor, letterbox = prepare(frame, spec_for(height=in_h, width=in_w, layout="NHWC",
                                                    dtype="uint8", pad_align=align))
        rows = np.flatnonzero(tensor[0, :, :, 0].min(axis=1) == 0)  # the resized frame:
        cols = np.flatnonzero(tensor[0, :, :, 0].min(axis=0) == 0)  # black; padding 114
        corners = letterbox.to_input(np.array([[0, 0, width, height]], np.float32))
        np.testing.assert_allclose(
            corners[0], [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], atol=0.01)
        boxes = rng.random((4, 4)).astype(np.float32) * [width, height, width, height]
        boxes[:, 2:] = np.maximum(boxes[:, :2], boxes[:, 2:])
        back = letterbox.to_frame(letterbox.to_input(boxes), width, height)
        np.testing.assert_allclose(back, boxes, atol=0.01)


def test_per_axis_mapping_differs_from_one_gain_where_a_side_is_rounded() -> None:
    """3000 frame sizes x input shapes, geometry only: the per-axis gains are the resized
    sides over the frame's, so the far edge maps exactly; one shared gain misses it by
    up to half an input pixel (the table must hold such cases to tell them apart)."""
    rng = np.random.default_rng(9)
    worst = 0.0
    for _ in range(3000):
        width, height = (int(v) for v in rng.integers(8, 8000, 2))
        in_h, in_w = (int(v) * 32 for v in rng.integers(1, 41, 2))
        place = _placement(height, width, in_h, in_w, "center")
        letterbox = place.letterbox
        far = letterbox.to_input(np.array([[0, 0, width, height]], np.float32))[0, 2:]
        np.testing.assert_allclose(far, [place.left + place.width, place.top + place.height],
                                   atol=0.01)
        if min(width, height) * letterbox.scale >= 1:  # else the side is clamped to 1 px
            worst = max(worst, abs(width * letterbox.scale - place.width),
                        abs(height * letterbox.scale - place.height))
    assert 0.3 < worst <= 0.5  # input pixels a single gain would be off at the far edge
