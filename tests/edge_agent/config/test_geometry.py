"""Shape checks: tables of known shapes plus properties over random polygons."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from edge_agent.config import geometry

SQUARE = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]

POLYGONS = [
    ("square", SQUARE, None),
    ("triangle", [(0, 0), (1, 0), (0, 1)], None),
    ("concave-L", [(0, 0), (1, 0), (1, 0.3), (0.3, 0.3), (0.3, 1), (0, 1)], None),
    ("bow-tie", [(0, 0), (1, 1), (1, 0), (0, 1)], "crosses itself"),
    ("touching-corner", [(0, 0), (1, 0), (0.5, 0.5), (1, 1), (0, 1), (0.5, 0.5)],
     "crosses itself"),
    ("two-points", [(0, 0), (1, 1)], "at least 3 points"),
    ("collinear", [(0, 0), (0.5, 0.5), (1, 1)], "no area"),
    ("repeat", [(0, 0), (0, 0), (1, 1), (0, 1)], "are the same"),
    ("outside", [(0, 0), (1.01, 0), (1, 1)], "outside the frame"),
    ("nan", [(0, 0), (math.nan, 0), (1, 1)], "not a finite number"),
]


@pytest.mark.parametrize(("points", "expected"), [c[1:] for c in POLYGONS],
                         ids=[c[0] for c in POLYGONS])
def test_polygon_problem(points: list[tuple[float, float]], expected: str | None) -> None:
    problem = geometry.polygon_problem(points, "normalized")
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem[1]


def test_pixel_units_accept_large_coordinates_not_negative_ones() -> None:
    assert geometry.polygon_problem([(0, 0), (1920, 0), (1920, 1080)], "pixels") is None
    assert geometry.polygon_problem([(0, -1), (1920, 0), (1920, 1080)], "pixels") == (
        0, "point 0 [0, -1] is negative; allowed: 0 or more pixels")


@pytest.mark.parametrize(("points", "expected"), [
    ([(0, 0), (1, 1)], None),
    ([(0.5, 0.5), (0.5, 0.5)], "zero length"),
    ([(0, 0)], "exactly 2 points"),
    ([(0, 0), (2, 0)], "outside the frame"),
])
def test_line_problem(points: list[tuple[float, float]], expected: str | None) -> None:
    problem = geometry.line_problem(points, "normalized")
    assert (problem is None) if expected is None else (expected in problem[1])


def test_star_polygons_never_cross_themselves_and_their_shuffles_usually_do() -> None:
    """Property: corners sorted by angle around a centre make a simple polygon."""
    rng = random.Random(11)
    crossed = 0
    for _ in range(200):
        count = rng.randint(3, 9)
        step = 2 * math.pi / count  # one corner per sector: no gap of half a turn or more
        angles = [step * (i + rng.uniform(0, 0.9)) for i in range(count)]
        star = [(0.5 + r * math.cos(a), 0.5 + r * math.sin(a))
                for a, r in ((a, rng.uniform(0.1, 0.45)) for a in angles)]
        if abs(geometry.polygon_area(star)) < 1e-6:
            continue
        assert geometry.polygon_problem(star, "normalized") is None, star
        shuffled = star[:]
        rng.shuffle(shuffled)
        problem = geometry.polygon_problem(shuffled, "normalized")
        crossed += problem is not None and "crosses itself" in problem[1]
    assert crossed > 50  # shuffled corners of 4+ points mostly make a crossing outline


def test_segments_intersect_table() -> None:
    assert geometry.segments_intersect((0, 0), (1, 1), (0, 1), (1, 0))
    assert geometry.segments_intersect((0, 0), (1, 0), (1, 0), (2, 5))  # touching end
    assert geometry.segments_intersect((0, 0), (2, 0), (1, 0), (3, 0))  # collinear overlap
    assert not geometry.segments_intersect((0, 0), (1, 0), (2, 0), (3, 0))
    assert not geometry.segments_intersect((0, 0), (1, 0), (0, 1), (1, 1))


def test_duplicate_name() -> None:
    assert geometry.duplicate_name(["a", "b", "c"]) is None
    assert geometry.duplicate_name(["a", "b", "a", "b"]) == (2, 0)


def test_to_pixels_scales_normalized_and_clips_pixels(caplog: pytest.LogCaptureFixture) -> None:
    scaled = geometry.to_pixels([(0.5, 1.0), (0, 0)], "normalized", (768, 576))
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[384, 576], [0, 0]])
    clipped = geometry.to_pixels([(100, 100), (2000, 50)], "pixels", (768, 576), name="bay")
    np.testing.assert_allclose(clipped, [[100, 100], [768, 50]])
    assert "bay: points beyond the 768x576 frame" in caplog.text


@pytest.mark.parametrize(("points", "dead"), [
    ([(800, 10), (900, 10), (900, 100)], True),  # right of the frame
    ([(10, 600), (700, 600), (300, 900)], True),  # below it
    ([(900, 700), (1000, 700), (1000, 800), (900, 800)], True),  # beyond the corner
    ([(800, 100), (1000, 400)], True),  # a line right of the frame
    ([(100, 700), (500, 650)], True),  # a line below it
    ([(100, 100), (2000, 50)], False),  # a line reaching out: clipped, still a line
    ([(700, 500), (900, 500), (900, 700), (700, 700)], False),  # overlapping the corner
    ([(800, 10), (10, 800), (800, 800)], False),  # every point outside, the area inside
])
def test_a_pixel_shape_wholly_outside_the_frame_is_named_as_dead(
    caplog: pytest.LogCaptureFixture, points: list[tuple[float, float]], dead: bool
) -> None:
    """A zone drawn for a larger frame would be clipped onto the frame's edge and never
    match: the log must say so, not only that points were clipped."""
    geometry.to_pixels(points, "pixels", (768, 576), name="zone dock")
    assert ("zone dock lies wholly outside the 768x576 frame" in caplog.text) is dead
    assert ("zone dock: points beyond the 768x576 frame are clipped" in caplog.text) is not dead
