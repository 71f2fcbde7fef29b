"""Vectorised geometry against the obvious answers and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.events.shapes import (
    anchors,
    crosses_segment,
    inside_polygon,
    line_side,
    polygon_edges,
)

SQUARE = np.array([[100, 100], [300, 100], [300, 300], [100, 300]], float)
L_SHAPE = np.array([[0, 0], [200, 0], [200, 50], [50, 50], [50, 200], [0, 200]], float)


@pytest.mark.parametrize(("anchor", "expected"), [
    ("bottom_center", [30, 80]), ("center", [30, 50]), ("top_center", [30, 20]),
])
def test_anchors(anchor: str, expected: list[float]) -> None:
    assert anchors(np.array([[10, 20, 50, 80]]), anchor).tolist() == [expected]


def test_inside_polygon_table() -> None:
    points = np.array([[200, 200], [50, 50], [299, 299], [301, 200], [25, 150], [150, 150]])
    assert inside_polygon(points, polygon_edges(SQUARE)).tolist() == [
        True, False, True, False, False, True]
    assert inside_polygon(points, polygon_edges(L_SHAPE)).tolist() == [
        False, False, False, False, True, False]
    assert inside_polygon(np.zeros((0, 2)), polygon_edges(SQUARE)).shape == (0,)


def test_inside_polygon_matches_opencv_on_random_points() -> None:
    """Property: same answer as cv2.pointPolygonTest away from the edges."""
    import cv2

    rng = np.random.default_rng(3)
    for _ in range(20):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radii = rng.uniform(50, 200, 7)
        polygon = np.column_stack([300 + radii * np.cos(angles), 300 + radii * np.sin(angles)])
        points = rng.uniform(50, 550, (200, 2))
        ours = inside_polygon(points, polygon_edges(polygon))
        contour = polygon.astype(np.float32).reshape(-1, 1, 2)
        theirs = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True)
                           for x, y in points])
        clear = np.abs(theirs) > 1e-6
        assert (ours[clear] == (theirs[clear] > 0)).all()


def test_line_side_and_direction_of_the_arrow() -> None:
    """A at the top, B at the bottom: the arrow points right, so left is +1."""
    a, b = np.array([384.0, 0.0]), np.array([384.0, 576.0])
    assert line_side(np.array([[100, 300], [600, 300], [384, 10]]), a, b).tolist() == [1, -1, 0]
    # A left, B right: the arrow points up, so below (larger y) is +1.
    assert line_side(np.array([[10, 500], [10, 100]]), np.array([0.0, 288]),
                     np.array([768.0, 288])).tolist() == [1, -1]


def test_crosses_segment() -> None:
    a, b = np.array([100.0, 0.0]), np.array([100.0, 100.0])
    assert crosses_segment(np.array([90.0, 50]), np.array([110.0, 50]), a, b)
    assert not crosses_segment(np.array([90.0, 150]), np.array([110.0, 150]), a, b)
    assert crosses_segment(np.array([90.0, 100]), np.array([110.0, 100]), a, b)  # the end
