"""The snapshot command's picture: the newest frame, scaled, boxes drawn, as JPEG."""

from __future__ import annotations

import cv2
import numpy as np

from edge_agent.commands.box import LatestFrame
from edge_agent.commands.spec import Code, FailedError
from edge_agent.drawing import draw
from engines.base import Detections


def encode_snapshot(latest: LatestFrame, quality: int, max_width: int) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height): scaled down to `max_width` first (the boxes with it),
    so drawing and encoding cost the small picture's time, and the frame is never
    written to (draw works on a copy)."""
    image, detections = latest.image, latest.detections
    height, width = image.shape[:2]
    if width > max_width:
        scale = max_width / width
        size = (max_width, max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        detections = Detections(
            (detections.boxes * np.float32(scale)).astype(np.float32), detections.scores,
            detections.class_ids,
        )
    drawn = draw(image, detections, latest.class_names)
    ok, encoded = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FailedError("the frame could not be encoded as JPEG", Code.ERROR)
    return encoded.tobytes(), int(drawn.shape[1]), int(drawn.shape[0])
