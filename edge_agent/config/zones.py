"""Per-camera zones, counting lines and tracker settings (docs/events.md).

Geometry rules live in `edge_agent.config.geometry`; errors carry a `path` in their context
so that `edge_agent.config.located` reports the line of the exact point or name to fix.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edge_agent.config import geometry
from edge_agent.config.detect import check_class_keys
from edge_agent.config.rules import SLUG, Strict

Anchor = Literal["bottom_center", "center", "top_center"]


def _shape_error(kind: str, problem: tuple[int | None, str]) -> PydanticCustomError:
    index, text = problem
    path = ("points",) if index is None else ("points", index)
    return PydanticCustomError(kind, text, {"path": path})


class _Shape(Strict):
    name: str = Field(pattern=SLUG, description="Name in events and topics; unique per camera.")
    points: list[tuple[float, float]] = Field(description="Corners as [x, y] pairs.")
    units: geometry.Units = Field(
        "normalized", description="normalized: 0..1 of width and height; pixels: from top left."
    )
    classes: list[str | int] | None = Field(
        None, description="Only these class names or ids count here; default: all classes."
    )

    @field_validator("classes")
    @classmethod
    def _class_keys(cls, classes: list[str | int] | None) -> list[str | int] | None:
        return check_class_keys(classes)


class ZoneConfig(_Shape):
    """A polygon: enter/exit/dwell events and occupancy per class."""

    anchor: Anchor = Field(
        "bottom_center",
        description="Point of the box that must be inside: bottom_center (the feet), "
        "center or top_center.",
    )
    min_frames: int = Field(
        3, ge=1, le=1000,
        description="Frames in a row inside (outside) before enter (exit) fires: no flapping.",
    )
    dwell_s: float | None = Field(
        None, gt=0, le=86_400,
        description="A dwell event once a track stays inside this many seconds; default: none.",
    )

    @model_validator(mode="after")
    def _valid_polygon(self) -> ZoneConfig:
        problem = geometry.polygon_problem(self.points, self.units)
        if problem is not None:
            raise _shape_error("bad_polygon", problem)
        return self


class LineDirections(Strict):
    """Names of the two senses of crossing; counts and events use them."""

    forward: str = Field(
        "forward", pattern=SLUG,
        description="Crossing along the arrow: A->B turned 90 degrees counter-clockwise on "
        "screen (for A top, B bottom: left to right).",
    )
    backward: str = Field("backward", pattern=SLUG, description="Crossing against the arrow.")

    @model_validator(mode="after")
    def _distinct(self) -> LineDirections:
        if self.forward == self.backward:
            raise PydanticCustomError(
                "same_direction_names",
                "forward and backward have the same name '{name}'; give them different names",
                {"name": self.forward, "field": "backward"},
            )
        return self


class LineConfig(_Shape):
    """A counting line from A to B: cross events with a direction, counts per class."""

    directions: LineDirections = Field(
        default_factory=LineDirections, description="Names of the two crossing senses."
    )
    count_window_s: float | None = Field(
        None, gt=0, le=31_536_000,
        description="Counts are also kept per window of this many seconds; default: none.",
    )
    min_frames: int = Field(
        2, ge=1, le=1000,
        description="Frames in a row on the new side before a cross fires: no flapping.",
    )

    @model_validator(mode="after")
    def _valid_line(self) -> LineConfig:
        problem = geometry.line_problem(self.points, self.units)
        if problem is not None:
            raise _shape_error("bad_line", problem)
        return self


class TrackerConfig(Strict):
    """How detections are joined into tracks across frames (docs/events.md, Tracking)."""

    max_missed_frames: int = Field(
        10, ge=0, le=1000,
        description="Processed frames a track survives without a detection (gaps, occlusion).",
    )
    min_hits: int = Field(
        1, ge=1, le=100, description="Detections in a row before a new track gets an id."
    )
    match_iou: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Least overlap between a detection and a track's prediction to match.",
    )


def check_unique_names(zones: list[ZoneConfig], lines: list[LineConfig]) -> None:
    """Zones and lines share one name space per camera (topics and events use the name)."""
    named: list[tuple[str, int, str]] = [("zones", i, z.name) for i, z in enumerate(zones)]
    named += [("lines", i, line.name) for i, line in enumerate(lines)]
    repeat = geometry.duplicate_name(name for _, _, name in named)
    if repeat is not None:
        section, index, name = named[repeat[0]]
        first_section, first_index, _ = named[repeat[1]]
        raise PydanticCustomError(
            "duplicate_shape_name",
            "name '{name}' is already used by {first}; zone and line names must be unique "
            "per camera",
            {"name": name, "first": f"{first_section}[{first_index}]",
             "path": (section, index, "name")},
        )


def unique_shape_names(camera: Any) -> Any:
    """Model validator body for CameraBase (kept here so model.py gains one line)."""
    check_unique_names(camera.zones, camera.lines)
    return camera
