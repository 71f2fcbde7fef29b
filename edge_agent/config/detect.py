"""Per-camera `detect:` (which frames are inferred, which detections count) and `masks:`.

Class names in `min_score`, `min_area` and a mask's `classes` are checked against the
model's labels once it is loaded (`edge_agent.camera_filter.check_classes`, with FILE:LINE);
at config time the model's classes are not known yet. Polygon rules are shared with zones
(`edge_agent.config.geometry`). docs/config.md describes every field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from edge_agent.config import geometry
from edge_agent.config.rules import SLUG, Strict
from engines.metadata import is_decimal

ClassKey = str | int
"""A class by name (as in the model's labels) or by id (0-based). YAML keys must be text,
so in `min_score`/`min_area` an id is written quoted ("2"); a key that is not a class name
and is all digits is an id."""
Score = Annotated[float, Field(ge=0.0, le=1.0)]
Area = Annotated[float, Field(ge=0.0, le=1e9)]


class MotionConfig(Strict):
    """Motion gating (docs/config.md, detect.motion): a still scene is inferred only at a
    low keep-alive rate."""

    enabled: bool = Field(False, description="Infer still scenes only at keepalive_fps.")
    threshold: float = Field(
        0.003, gt=0.0, le=1.0,
        description="Share (0-1) of the grey cells that must change for a frame to count as "
        "motion: 0.003 is 7 of the 2304 cells of 64x36.",
    )
    pixel_threshold: int = Field(
        15, ge=1, le=255,
        description="Grey-level difference (0-255) from the reference that makes a cell "
        "changed; below it is noise.",
    )
    keepalive_fps: float = Field(
        0.5, ge=0.0, le=1000.0,
        description="Inference rate of a still scene (frames/s); 0: never while still.",
    )
    hold_s: float = Field(
        1.0, ge=0.0, le=3600.0,
        description="Seconds the full rate goes on after the last motion (an object that "
        "stops is still seen a while).",
    )
    compare_s: float = Field(
        0.5, gt=0.0, le=60.0,
        description="Each frame is compared with the one this many seconds before: slower "
        "changes (daylight, exposure) never count as motion.",
    )
    size: tuple[int, int] = Field(
        (64, 36), description="Width, height (pixels) of the grey image compared."
    )

    @model_validator(mode="after")
    def _size(self) -> MotionConfig:
        for index, value in enumerate(self.size):
            if not 4 <= value <= 1024:
                raise PydanticCustomError(
                    "bad_motion_size",
                    "size [{width}, {height}] is not a usable grey image; allowed: width "
                    "and height 4 to 1024 pixels (e.g. [64, 36] for 16:9)",
                    {"width": self.size[0], "height": self.size[1], "path": ("size", index)},
                )
        return self


class DetectConfig(Strict):
    """Which frames of this camera are inferred, and which detections count."""

    fps: float | None = Field(
        None, gt=0.0, le=1000.0,
        description="Inference rate (frames/s), frames spaced evenly by capture time; "
        "default: every frame.",
    )
    min_score: dict[str, Score] = Field(
        default_factory=dict,
        description="Per class (name or id) least score kept, on top of "
        "model.score_threshold.",
    )
    min_area: dict[str, Area] = Field(
        default_factory=dict,
        description="Per class (name or id) least box area: a share of the frame (up to 1) "
        "or pixels (above 1).",
    )
    motion: MotionConfig = Field(
        default_factory=MotionConfig, description="Motion gating; default: off."
    )

    @model_validator(mode="after")
    def _values(self) -> DetectConfig:
        for section in ("min_score", "min_area"):
            for key in getattr(self, section):
                check_class_key((section, key), key)
        keepalive = self.motion.keepalive_fps
        if self.motion.enabled and self.fps is not None and keepalive > self.fps:
            raise PydanticCustomError(
                "keepalive_above_fps",
                "keepalive_fps {keepalive} is above detect.fps {fps}; allowed: at most "
                "detect.fps (a still scene is never inferred more often than a moving one)",
                {"keepalive": keepalive, "fps": self.fps,
                 "path": ("motion", "keepalive_fps")},
            )
        return self


MAX_CLASS_ID = 65_535
"""The highest class id a config may name. COCO has 80 classes, LVIS 1,203, Open Images
601; a bigger id is a typo, and class tables are sized by the largest id (20 billion
asked for 149 GiB), so it is refused here, before any model is known."""


def check_class_key(path: tuple[str | int, ...], key: ClassKey) -> None:
    """Refuse what can be no class of any model: a negative id, an id above MAX_CLASS_ID
    (also written as text, "20000000000"), an empty name. Where classes are written:
    detect, masks, zones, lines, model.classes, homeassistant.classes."""
    number = key if isinstance(key, int) else int(key) if is_decimal(key) else None
    if (number is not None and not 0 <= number <= MAX_CLASS_ID) or (
            isinstance(key, str) and not key.strip()):
        raise PydanticCustomError(
            "bad_class_key", "'{key}' is not a class; allowed: a class name of the model or "
            "its id (0 to {top})", {"key": key, "top": MAX_CLASS_ID, "path": path},
        )


def check_class_keys(keys: list[ClassKey] | None) -> list[ClassKey] | None:
    """Field validator body for a list of class keys (check_class_key on each)."""
    for index, key in enumerate(keys or ()):
        check_class_key((index,), key)
    return keys


class MaskConfig(Strict):
    """A polygon where detections are ignored: their anchor (box bottom-centre) is inside."""

    name: str = Field(pattern=SLUG, description="Name in logs and drawings; unique per camera.")
    points: list[tuple[float, float]] = Field(description="Corners as [x, y] pairs, in order.")
    units: geometry.Units = Field(
        "normalized",
        description="normalized: 0..1 of width and height; pixels: from the top left.",
    )
    classes: list[ClassKey] | None = Field(
        None, description="Only these class names or ids are ignored here; default: all.",
    )

    @model_validator(mode="after")
    def _valid_polygon(self) -> MaskConfig:
        problem = geometry.polygon_problem(self.points, self.units)
        if problem is not None:
            index, text = problem
            raise PydanticCustomError(
                "bad_polygon", text,
                {"path": ("points",) if index is None else ("points", index)},
            )
        for index, key in enumerate(self.classes or ()):
            check_class_key(("classes", index), key)
        return self


def unique_mask_names(camera: Any) -> Any:
    """Model validator body for CameraBase: mask names are unique per camera."""
    masks: list[MaskConfig] = camera.masks
    repeat = geometry.duplicate_name(mask.name for mask in masks)
    if repeat is not None:
        index, first = repeat
        raise PydanticCustomError(
            "duplicate_mask_name",
            "mask name '{name}' is already used by masks[{first}]; mask names must be unique "
            "per camera",
            {"name": masks[index].name, "first": first, "path": ("masks", index, "name")},
        )
    return camera
