"""Per-camera delivery settings: which detections go out, and the snapshot per event.

The zones, lines and tracker that make the events are in `edge_agent.config.zones`;
these say how the results are published (docs/events.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.config.rules import Strict


class PublishConfig(Strict):
    """What goes on `<camera>/detections` (events always go on `<camera>/events`)."""

    detections: Literal["every_frame", "on_change", "off"] = Field(
        "every_frame",
        description="every_frame: one message per processed frame (as before); on_change: "
        "only when the set of tracked objects (track ids, or labels without tracking) "
        "changes, plus a keep-alive every keepalive_s; off: no detection messages.",
    )
    keepalive_s: float = Field(
        5.0, ge=0.5, le=3600.0,
        description="on_change: seconds after which an unchanged frame is published anyway.",
    )


class SnapshotConfig(Strict):
    """A JPEG per event: retained on `<camera>/snapshot/<label>` and kept as a file."""

    enabled: bool = Field(False, description="true: a snapshot for every event.")
    mode: Literal["frame", "crop", "both"] = Field(
        "frame", description="frame: the whole frame with the box drawn; crop: the box "
        "only; both: both (the MQTT topic gets the frame, files hold both).",
    )
    max_width: int = Field(
        1280, ge=64, le=7680, description="Wider frames are scaled down to this width (px)."
    )
    quality: int = Field(80, ge=1, le=100, description="JPEG quality, 1 (small) to 100.")
    keep: int = Field(
        500, ge=1, le=1_000_000,
        description="Files kept under <state_dir>/snapshots/<camera>/; the oldest go first.",
    )
