"""What a camera says about itself: its state (the JSON Schemas' enum) and its counters.

`CameraState` is the one list of camera states: the camera-state and health schemas
(docs/schemas/) name exactly these values, and a test keeps them equal. `CameraStats` is
what `Camera.stats()` offers health and the state topic, so neither reads the camera's
queue or counters directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class CameraState(str, Enum):
    """Supervisor-style states; the value is what MQTT carries."""

    STARTING = "STARTING"
    """Opening for the first time."""
    RUNNING = "RUNNING"
    """Frames flow."""
    BACKOFF = "BACKOFF"
    """The source (or a worker) failed; reopened after a growing, randomised delay."""
    FAILED = "FAILED"
    """FAILED_AFTER failures in a row, or a worker given up: someone must look."""
    STOPPED = "STOPPED"
    """The camera ended: a file that played out, or shutdown."""

    def __str__(self) -> str:  # the value in f-strings and logs, on every Python version
        return self.value

    @property
    def failing(self) -> bool:
        """BACKOFF and FAILED: the camera delivers no frames and health says why."""
        return self in (CameraState.BACKOFF, CameraState.FAILED)


@dataclass(frozen=True)
class CameraStats:
    """One camera's counters at one moment (`Camera.stats()`)."""

    id: str
    state: CameraState
    captured: int
    """Frames read from the source since the camera started."""
    dropped: int
    """Frames dropped at capture because inference was busy (live sources only)."""
    queued: int
    """Frames waiting between capture and inference."""
    reconnects: int
    last_error: str | None
    last_frame_at: float | None
    """time.monotonic() of the last frame read; None before the first."""
    started_at: float | None = None
    """time.monotonic() of `Camera.start`, where `captured` counted from 0; None before.
    Health measures the input rate from it (a restarted camera is a new Camera)."""
