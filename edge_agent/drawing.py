"""Detections drawn on a frame: shared by `edge-agent snapshot` and the snapshot command."""

from __future__ import annotations

import numpy as np

from engines.base import Detections

PALETTE = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
    (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
    (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
)
"""BGR colours, one per class id (modulo): the same class keeps its colour across shots."""


def label_of(class_id: int, class_names: tuple[str, ...]) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)


def draw(image: np.ndarray, detections: Detections, class_names: tuple[str, ...]) -> np.ndarray:
    """A copy of the frame with each box, its label and score drawn on it."""
    import cv2

    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 360))
    font_scale = max(0.4, min(height, width) / 900)
    for box, score, class_id in zip(
        np.round(detections.boxes).astype(int), detections.scores, detections.class_ids,
        strict=True,
    ):
        x1, y1, x2, y2 = (int(v) for v in box)
        colour = PALETTE[int(class_id) % len(PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{label_of(int(class_id), class_names)} {float(score):.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness
        )
        top = y1 - text_h - baseline if y1 - text_h - baseline >= 0 else y1
        left = max(0, min(x1, width - text_w))  # keep the label inside the frame
        cv2.rectangle(out, (left, top), (left + text_w, top + text_h + baseline), colour,
                      cv2.FILLED)
        cv2.putText(out, text, (left, top + text_h), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return out
