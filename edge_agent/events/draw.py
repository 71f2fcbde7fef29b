"""Draw masks, zones, lines (with direction arrows) and boxes on a frame.

For `edge-agent snapshot --zones` (aiming shapes) and event snapshots: the daemon may use
it too, so it lives here rather than in edge_agent.tools. Shapes are drawn in the frame's
pixels, converted from their config units with the same code the events use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from edge_agent.config.geometry import to_pixels
from edge_agent.config.zones import LineConfig, ZoneConfig

ZONE_COLOUR = (0, 200, 255)  # BGR amber
LINE_COLOUR = (255, 200, 0)  # BGR cyan
MASK_COLOUR = (60, 60, 200)  # BGR dull red
FILL_ALPHA = 0.25


def _scale(image: np.ndarray) -> tuple[int, float]:
    """(line thickness, font scale) that read well at this frame size."""
    short = min(image.shape[:2])
    return max(1, round(short / 360)), max(0.4, short / 900)


def label(image: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int]
          ) -> None:
    """Text on a filled box of `colour`, kept inside the frame, drawn in place."""
    thickness, font = _scale(image)
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font,
                                                thickness)
    frame_h, frame_w = image.shape[:2]
    left = int(min(max(0, at[0]), max(0, frame_w - width)))
    top = int(min(max(0, at[1] - height - baseline), max(0, frame_h - height - baseline)))
    cv2.rectangle(image, (left, top), (left + width, top + height + baseline), colour,
                  cv2.FILLED)
    cv2.putText(image, text, (left, top + height), cv2.FONT_HERSHEY_SIMPLEX, font,
                (255, 255, 255), thickness, cv2.LINE_AA)


def draw_box(image: np.ndarray, box: Sequence[float], text: str,
             colour: tuple[int, int, int]) -> None:
    """One detection or track box with its text above it, drawn in place."""
    thickness, _ = _scale(image)
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    label(image, text, (x1, y1), colour)


def _polygon(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int],
             name: str, alpha: float) -> None:
    thickness, _ = _scale(image)
    corners = np.round(points).astype(np.int32).reshape(-1, 1, 2)
    overlay = image.copy()
    cv2.fillPoly(overlay, [corners], colour)
    cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0, dst=image)
    cv2.polylines(image, [corners], isClosed=True, color=colour, thickness=thickness,
                  lineType=cv2.LINE_AA)
    top = corners[np.argmin(corners[:, 0, 1]), 0]
    label(image, name, (int(top[0]), int(top[1])), colour)


def _line(image: np.ndarray, line: LineConfig, frame_size: tuple[int, int]) -> None:
    """The segment, its ends named A and B, and an arrow per direction name."""
    thickness, _ = _scale(image)
    a, b = to_pixels(line.points, line.units, frame_size, name=f"line {line.name}")
    ia, ib = tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int))
    cv2.line(image, ia, ib, LINE_COLOUR, thickness + 1, cv2.LINE_AA)
    label(image, f"A {line.name}", (ia[0], ia[1]), LINE_COLOUR)
    label(image, "B", (ib[0], ib[1]), LINE_COLOUR)
    middle = (a + b) / 2
    along = b - a
    arrow = np.array([along[1], -along[0]])  # A->B turned 90 degrees counter-clockwise
    arrow = arrow / max(float(np.hypot(*arrow)), 1e-9) * max(25.0, min(frame_size) / 12)
    for sign, name in ((1, line.directions.forward), (-1, line.directions.backward)):
        start = middle - sign * arrow * 0.2
        end = middle + sign * arrow
        cv2.arrowedLine(image, tuple(np.round(start).astype(int)),
                        tuple(np.round(end).astype(int)), LINE_COLOUR, thickness,
                        cv2.LINE_AA, tipLength=0.3)
        label(image, name, tuple(np.round(end).astype(int)), LINE_COLOUR)


def draw_shapes(image: np.ndarray, zones: Sequence[ZoneConfig] = (),
                lines: Sequence[LineConfig] = (), masks: Sequence[Any] = ()) -> np.ndarray:
    """A copy of the frame with masks (dull red), zones (amber) and lines (cyan) drawn.

    masks: any objects with name, points and units (the masks config of the camera).
    Each line shows an arrow per direction: `forward` points along A->B turned 90 degrees
    counter-clockwise on screen, `backward` the other way; a track is counted in the
    direction its arrow points to as it crosses.
    """
    out = image.copy()
    frame_size = (int(image.shape[1]), int(image.shape[0]))
    for mask in masks:
        _polygon(out, to_pixels(mask.points, mask.units, frame_size, name=f"mask {mask.name}"),
                 MASK_COLOUR, f"mask {mask.name}", 0.45)
    for zone in zones:
        _polygon(out, to_pixels(zone.points, zone.units, frame_size, name=f"zone {zone.name}"),
                 ZONE_COLOUR, zone.name, FILL_ALPHA)
    for line in lines:
        _line(out, line, frame_size)
    return out
