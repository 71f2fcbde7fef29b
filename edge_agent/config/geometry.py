"""Shape checks shared by zones, lines and masks, and their conversion to pixels.

Config validators call the `*_problem` functions (pure, no pydantic) and raise the error
themselves, so that each section reports at its own key. The frame size is unknown at config
time: pixel shapes are checked against the frame when the camera opens (`to_pixels`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Units = Literal["normalized", "pixels"]
Point = tuple[float, float]

UNITS_HELP = (
    "normalized: 0..1 of the frame's width and height, [0,0] top left, [1,1] bottom right; "
    "pixels: x, y from the top left"
)


def point_problem(points: Sequence[Point], units: Units) -> tuple[int, str] | None:
    """(index, text) of the first point that lies outside what its units allow."""
    for index, (x, y) in enumerate(points):
        if not (np.isfinite(x) and np.isfinite(y)):
            return index, f"point {index} [{x}, {y}] is not a finite number"
        if units == "normalized" and not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            return index, (f"point {index} [{x:g}, {y:g}] is outside the frame; allowed: "
                           "0 to 1 in normalized units (write units: pixels for pixel "
                           "coordinates)")
        if units == "pixels" and (x < 0 or y < 0):
            return index, f"point {index} [{x:g}, {y:g}] is negative; allowed: 0 or more pixels"
    return None


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, q: Point, r: Point) -> bool:
    """Whether collinear point r lies on segment p-q."""
    return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(
        p[1], q[1])


def segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether closed segments a-b and c-d share a point (touching counts)."""
    d1, d2 = _cross(c, d, a), _cross(c, d, b)
    d3, d4 = _cross(a, b, c), _cross(a, b, d)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return ((d1 == 0 and _on_segment(c, d, a)) or (d2 == 0 and _on_segment(c, d, b))
            or (d3 == 0 and _on_segment(a, b, c)) or (d4 == 0 and _on_segment(a, b, d)))


def polygon_area(points: Sequence[Point]) -> float:
    """Signed area (shoelace); units of the points squared."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_problem(points: Sequence[Point], units: Units) -> tuple[int | None, str] | None:
    """(point index or None, text) of what makes this polygon unusable, or None.

    Checks: at least 3 points, each inside the frame (normalized units), no repeated
    neighbour, a non-zero area, and no two edges that cross or touch (self-intersection).
    """
    if len(points) < 3:
        return None, (f"a polygon needs at least 3 points (got {len(points)}); allowed: "
                      "a list of [x, y] corners in drawing order")
    outside = point_problem(points, units)
    if outside is not None:
        return outside
    count = len(points)
    for index in range(count):
        if tuple(points[index]) == tuple(points[(index + 1) % count]):
            return index, (f"points {index} and {(index + 1) % count} are the same "
                           f"[{points[index][0]:g}, {points[index][1]:g}]; remove one")
    if all(_cross(points[0], points[1], point) == 0 for point in points[2:]):
        return None, "the points lie on one line: the polygon has no area"
    for first in range(count):
        a, b = points[first], points[(first + 1) % count]
        for second in range(first + 1, count):
            if second == first + 1 or (first == 0 and second == count - 1):
                continue  # neighbours share a corner by construction
            if segments_intersect(a, b, points[second], points[(second + 1) % count]):
                return None, (
                    f"the polygon crosses itself: edge {first}-{(first + 1) % count} meets "
                    f"edge {second}-{(second + 1) % count}; list the corners in order around "
                    "the shape (clockwise or counter-clockwise)"
                )
    return None


def line_problem(points: Sequence[Point], units: Units) -> tuple[int | None, str] | None:
    """(point index or None, text) of what makes this counting line unusable, or None."""
    if len(points) != 2:
        return None, (f"a line needs exactly 2 points (got {len(points)}); allowed: "
                      "[[x1, y1], [x2, y2]]: from A to B")
    outside = point_problem(points, units)
    if outside is not None:
        return outside
    if tuple(points[0]) == tuple(points[1]):
        return 1, ("the line has zero length: its two points are the same; allowed: two "
                   "different points")
    return None


def duplicate_name(names: Iterable[str]) -> tuple[int, int] | None:
    """(index of the repeat, index of the first use) of the first name used twice, or None."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            return index, seen[name]
        seen[name] = index
    return None


def to_pixels(points: Sequence[Point], units: Units, frame_size: tuple[int, int],
              *, name: str = "shape") -> np.ndarray:
    """The points as float32 (N, 2) pixel coordinates for a frame of (width, height).

    Pixel points beyond the frame are clipped to its edge with a warning naming the shape,
    since a camera may open at a lower resolution than the shape was drawn for.
    """
    width, height = frame_size
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if units == "normalized":
        xy = xy * np.array([width, height], dtype=np.float64)
    else:
        limit = np.array([width, height], dtype=np.float64)
        if np.any(xy > limit):
            beyond = xy[np.any(xy > limit, axis=1)].tolist()
            xy = np.minimum(xy, limit)
            if _collapsed(xy, limit):
                log.warning("%s lies wholly outside the %dx%d frame (points %s): it can never "
                            "match anything; redraw it in this camera's pixels (0..%d, 0..%d) "
                            "or use units: normalized", name, width, height,
                            np.asarray(points, dtype=np.float64).tolist(), width, height)
            else:
                log.warning("%s: points beyond the %dx%d frame are clipped to its edge: %s",
                            name, width, height, beyond)
    return xy.astype(np.float32)


def _collapsed(xy: np.ndarray, limit: np.ndarray) -> bool:
    """Whether clipped points no longer reach into the frame: a polygon without area, or
    a line lying along the right or bottom edge (where no anchor ever crosses it)."""
    if len(xy) >= 3:
        return polygon_area([(float(x), float(y)) for x, y in xy]) == 0.0
    return bool(np.any(np.all(xy == limit, axis=0)) or np.all(xy == xy[0]))
