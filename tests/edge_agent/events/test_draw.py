"""Drawing shapes: where the zone, the line and its direction arrows land on the frame."""

from __future__ import annotations

import numpy as np

from edge_agent.config.zones import LineConfig, ZoneConfig
from edge_agent.events.draw import LINE_COLOUR, MASK_COLOUR, ZONE_COLOUR, draw_box, draw_shapes

ZONE = ZoneConfig(name="bay", points=[(0.1, 0.5), (0.4, 0.5), (0.4, 0.9), (0.1, 0.9)])
LINE = LineConfig(name="gate", points=[(0.7, 0.1), (0.7, 0.9)],
                  directions={"forward": "in", "backward": "out"})


def near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    return (np.abs(image.astype(int) - np.array(colour)).max(axis=2) < tolerance)


def test_zone_is_tinted_and_outlined_and_the_frame_is_not_changed_in_place() -> None:
    black = np.zeros((576, 768, 3), np.uint8)
    out = draw_shapes(black, zones=[ZONE])
    assert not black.any()
    inside = out[400:500, 120:280]
    assert (inside > 0).any(axis=2).mean() > 0.9  # tinted
    assert not out[100:200, 500:700].any()  # elsewhere untouched
    outline = near(out, ZONE_COLOUR)
    assert outline[:, int(0.4 * 768) - 1:int(0.4 * 768) + 2].sum() > 100  # right edge


def test_line_arrows_point_forward_on_the_right_for_a_top_down_line() -> None:
    """A at the top, B at the bottom: forward points right (A->B turned counter-clockwise)."""
    out = draw_shapes(np.zeros((576, 768, 3), np.uint8), lines=[LINE])
    cyan = near(out, LINE_COLOUR)
    x = int(0.7 * 768)
    assert cyan[100:500, x - 1:x + 2].mean() > 0.5  # the segment itself
    _, xs = np.nonzero(cyan[250:330])  # around the middle, off the segment
    assert (xs > x + 20).sum() > 50  # an arrow to the right
    assert (xs < x - 20).sum() > 50  # and one to the left


def test_masks_from_any_config_with_name_points_units() -> None:
    class Mask:
        name, points, units = "road", [(0.0, 0.0), (0.3, 0.0), (0.3, 0.2)], "normalized"

    out = draw_shapes(np.zeros((576, 768, 3), np.uint8), masks=[Mask()])
    assert near(out, MASK_COLOUR).sum() > 200


def test_draw_box_keeps_the_label_inside_the_frame() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    draw_box(image, [250, 0, 299, 80], "person 7", (0, 255, 0))
    assert image[:, 250:].any()
    assert image[0:20, :].any()
