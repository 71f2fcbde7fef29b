"""Vectorised geometry of one frame: anchor points, point-in-polygon, side of a line."""

from __future__ import annotations

import numpy as np

ANCHOR_Y = {"top_center": (1.0, 0.0), "center": (0.5, 0.5), "bottom_center": (0.0, 1.0)}
"""Weights of (y1, y2) that give each anchor's y; x is always the box's centre."""


def anchors(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """(N, 2) float64 anchor points of (N, 4) x1, y1, x2, y2 boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    top, bottom = ANCHOR_Y[anchor]
    return np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2,
                            boxes[:, 1] * top + boxes[:, 3] * bottom])


def polygon_edges(polygon: np.ndarray) -> np.ndarray:
    """(5, E) float64 rows x1, y1, x2, y2, dx/dy of each edge: made once per frame size."""
    corners = np.asarray(polygon, dtype=np.float64)
    x1, y1 = corners[:, 0], corners[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    dy = np.where(y2 == y1, 1.0, y2 - y1)  # a flat edge never straddles a row: any value
    return np.stack([x1, y1, x2, y2, (x2 - x1) / dy])


def inside_polygon(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) bool: which of (N, 2) points lie inside the polygon (even-odd rule).

    `edges` comes from `polygon_edges`. One (N, E) pass of ray casting; a point exactly on
    an edge is inside on the left/top edges and outside on the right/bottom ones, so
    neighbouring zones never both claim a point.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x1, y1, _, y2, slope = edges
    px, py = points[:, :1], points[:, 1:]
    straddles = (y1 > py) != (y2 > py)  # (N, E): the edge spans the point's row
    crossings = straddles & (px < x1 + (py - y1) * slope)
    return np.count_nonzero(crossings, axis=1) % 2 == 1


def line_side(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) int8: +1 on the side the line's arrow comes from, -1 where it points, 0 on it.

    The arrow is A->B turned 90 degrees counter-clockwise on screen (y grows downwards),
    so a track going from +1 to -1 crosses "forward".
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    cross = (b[0] - a[0]) * (points[:, 1] - a[1]) - (b[1] - a[1]) * (points[:, 0] - a[0])
    return np.sign(cross).astype(np.int8)


def crosses_segment(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the move p->q passes through segment a-b (not around its ends)."""
    def cross(o: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
        return float((u[0] - o[0]) * (v[1] - o[1]) - (u[1] - o[1]) * (v[0] - o[0]))

    d1, d2 = cross(a, b, p), cross(a, b, q)
    d3, d4 = cross(p, q, a), cross(p, q, b)
    return d1 * d2 <= 0 and d3 * d4 <= 0 and not (d1 == d2 == 0)
