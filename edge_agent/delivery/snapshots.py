"""A JPEG per event: the frame with the object's box drawn, and/or the box cut out.

Files go under `<state_dir>/snapshots/<camera>/`, at most `keep` of them (the oldest go
first); a file that cannot be written (disk full, read-only) costs the file, never the
event: the event says why it has none. Encoding runs on the pipeline thread: at 1280 px
wide it costs a few milliseconds per event (docs/events.md has the figures), and only
frames with events pay it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agent.config.events_publish import SnapshotConfig

log = logging.getLogger(__name__)

BOX_COLOUR = (0, 255, 0)
"""BGR green: visible on most scenes."""
ERROR_LOG_S = 60.0
"""At most one 'cannot write a snapshot' line per camera this often."""


@dataclass(frozen=True)
class Rendered:
    """One event's JPEGs; None where the mode does not ask for that kind."""

    frame: bytes | None
    crop: bytes | None

    @property
    def primary(self) -> bytes | None:
        """What the retained MQTT topic gets: the frame when there is one, else the crop."""
        return self.frame if self.frame is not None else self.crop


def _scaled(image: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """The image no wider than max_width (aspect kept) and the scale applied."""
    width = image.shape[1]
    if width <= max_width:
        return image, 1.0
    scale = max_width / width
    height = max(1, round(image.shape[0] * scale))
    return cv2.resize(image, (max_width, height), interpolation=cv2.INTER_LINEAR), scale


def _encode(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buffer.tobytes()


def render(
    image: np.ndarray, box: Sequence[float], caption: str, config: SnapshotConfig
) -> Rendered:
    """JPEGs of `image` (H, W, 3 BGR uint8) for an object at `box` (x1, y1, x2, y2 px).

    The frame is scaled to `max_width` first and the box drawn on the copy (the
    caller's image is never changed); the crop is cut from the original frame and
    scaled only when wider than `max_width`.
    """
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    frame_jpeg = crop_jpeg = None
    if config.mode in ("frame", "both"):
        scaled, scale = _scaled(image, config.max_width)
        drawn = scaled.copy() if scaled is image else scaled
        p1 = (round(x1 * scale), round(y1 * scale))
        p2 = (round(x2 * scale), round(y2 * scale))
        thickness = max(2, round(drawn.shape[1] / 400))
        cv2.rectangle(drawn, p1, p2, BOX_COLOUR, thickness)
        cv2.putText(drawn, caption, (p1[0], max(p1[1] - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, BOX_COLOUR, 1, cv2.LINE_AA)
        frame_jpeg = _encode(drawn, config.quality)
    if config.mode in ("crop", "both"):
        left, top = max(0, int(x1)), max(0, int(y1))
        right, bottom = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
        if right > left and bottom > top:
            crop, _ = _scaled(image[top:bottom, left:right], config.max_width)
            crop_jpeg = _encode(crop, config.quality)
    return Rendered(frame_jpeg, crop_jpeg)


class SnapshotStore:
    """The files of one camera's snapshots, bounded to `keep` (oldest deleted first)."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = folder
        self.keep = keep
        self.written = 0
        self.failed = 0
        self.last_error: str | None = None
        self._logged_at = float("-inf")
        self._files: collections.deque[Path] = collections.deque(self._existing())
        self._trim()

    def _existing(self) -> list[Path]:
        """Files left by earlier runs, oldest first, so retention counts them too."""
        try:
            found = [(p.stat().st_mtime, p.name, p) for p in self.folder.glob("*.jpg")]
        except OSError:
            return []
        return [path for _, _, path in sorted(found)]

    def save(self, name: str, jpeg: bytes) -> str | None:
        """Write `name` (a file name, no folder); its path relative to the snapshots root
        (`<camera>/<name>`), or None when it could not be written (`last_error` says why)."""
        path = self.folder / name
        partial = path.with_suffix(".part")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as out:
                out.write(jpeg)
            os.replace(partial, path)
        except OSError as exc:
            self._failed(exc, partial)
            return None
        self.written += 1
        self._files.append(path)
        self._trim()
        return f"{self.folder.name}/{name}"

    def _failed(self, exc: OSError, partial: Path) -> None:
        self.failed += 1
        self.last_error = f"cannot write snapshot under {self.folder}: {exc.strerror or exc}"
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        now = time.monotonic()
        if now - self._logged_at >= ERROR_LOG_S:
            self._logged_at = now
            log.warning("%s (events go out without one; %d failed so far)", self.last_error,
                        self.failed)

    def _trim(self) -> None:
        while len(self._files) > self.keep:
            oldest = self._files.popleft()
            try:
                oldest.unlink(missing_ok=True)
            except OSError as exc:  # the next save tries the next one; nothing else to do
                log.debug("cannot delete old snapshot %s: %s", oldest, exc)


def file_name(event_id: str, at: float, label: str, kind: str) -> str:
    """`20261130T071502.123Z-person-<event id>.jpg` (`-crop` before .jpg for a crop):
    sorts by time, names the class, and is unique per event."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    suffix = "-crop" if kind == "crop" else ""
    safe_label = "".join(c if c.isalnum() or c in "-_" else "_" for c in label) or "object"
    return f"{stamp}-{safe_label}-{event_id}{suffix}.jpg"
