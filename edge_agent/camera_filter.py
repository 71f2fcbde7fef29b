"""Which of a camera's detections count: per-class least score and area, and masks.

Runs after the model's own filter (engines.postprocess: thresholds, NMS, class list) on
the detections in frame pixels, in numpy. A masked detection is one whose anchor, the
bottom-centre of its box (where the feet are), lies inside one of the camera's masks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.config import geometry
from edge_agent.config.detect import MAX_CLASS_ID, ClassKey, DetectConfig, MaskConfig
from edge_agent.config.located import Loc, did_you_mean, key_path, locate
from edge_agent.config.model import AgentConfig
from edge_agent.config.yaml_loader import StrictLoader
from edge_agent.errors import ConfigError
from engines.base import Detections
from engines.errors import EngineError, ModelFileError
from engines.file_metadata import class_names_in_file
from engines.metadata import is_decimal
from engines.model_info import read_labels

log = logging.getLogger(__name__)

MAX_NAMES_SHOWN = 400
"""Characters of the model's class list quoted in an error (COCO has 80 names)."""


def class_id(key: ClassKey, class_names: Sequence[str]) -> int | None:
    """The id `key` names in this model, or None. A name wins over an id written as text
    ("2"); IR labels lose their spaces, so "traffic light" also finds traffic_light."""
    if isinstance(key, str):
        for name in (key, key.replace(" ", "_")):
            if name in class_names:
                return list(class_names).index(name)
        if not is_decimal(key):
            return None
        key = int(key)
    if not 0 <= key <= MAX_CLASS_ID:  # no class of any model (the config refuses these)
        return None
    return key if not class_names or key < len(class_names) else None


def _known(class_names: Sequence[str]) -> str:
    """The model's class list as an error quotes it, cut at a name past MAX_NAMES_SHOWN."""
    known = ", ".join(class_names) or "(the model has no class names)"
    if len(known) > MAX_NAMES_SHOWN:
        known = known[: known.rfind(", ", 0, MAX_NAMES_SHOWN)] + ", ..."
    return known


def unknown_class(key: ClassKey, class_names: Sequence[str]) -> str:
    """Why a class key is refused, with the closest name and what is allowed."""
    if not class_names:  # any id in range resolves: the model states no names to check
        return (f"'{key}' is not a class id and this model states no class names; allowed: "
                f"an id 0 to {MAX_CLASS_ID} in plain digits, or set model.labels")
    return (f"'{key}' is not a class of this model{did_you_mean(str(key), class_names)}; "
            f"allowed: an id 0 to {len(class_names) - 1} or one of {_known(class_names)}")


def class_problems(config: AgentConfig, class_names: Sequence[str]) -> list[tuple[Loc, str]]:
    """(key path, text) for every class in `model.classes` and in enabled cameras'
    detect/masks this model does not have (a disabled camera is checked when a reload
    enables it)."""
    keys: list[tuple[Loc, ClassKey]] = [
        (("model", "classes", index), key)
        for index, key in enumerate(config.model.classes or ())]
    for index, camera in enumerate(config.cameras):
        if not camera.enabled:
            continue
        keys += [(("cameras", index, "detect", section, key), key)
                 for section in ("min_score", "min_area")
                 for key in getattr(camera.detect, section)]
        keys += [(("cameras", index, "masks", m, "classes", c), key)
                 for m, mask in enumerate(camera.masks)
                 for c, key in enumerate(mask.classes or ())]
    return [(loc, unknown_class(key, class_names)) for loc, key in keys
            if class_id(key, class_names) is None]


def labels_check(config: AgentConfig, config_path: Path | str) -> list[str]:
    """What `check-config` can say of class names without loading the model: a class in
    detect or masks that the model lacks is an error (raised as ConfigError, as at start)
    and one in a zone, line or `homeassistant.classes` a warning line with its FILE:LINE
    (the agent ignores it there). The names are the `model.labels` file's, else those
    the model file states (Ultralytics exports), read without compiling; a model that
    states none is checked when it loads, and one whose names cannot be read says so."""
    labels = config.model.labels
    try:
        if labels is not None:
            class_names = read_labels(labels)
        else:
            class_names = class_names_in_file(Path(config.model.path))
    except ModelFileError:
        return []  # a missing file: check-config already says it does not exist (yet)
    except (EngineError, OSError) as exc:
        if labels is not None:
            return []  # the labels file is checked, and reported, with the config
        return [f"  warning: class names not checked: {exc} (run refuses such a model)"]
    if not class_names:
        return []
    check_classes(config, class_names, config_path)
    source = labels or config.model.path
    found: list[tuple[Loc, str]] = [
        (("cameras", index, kind + "s", s, "classes", c),
         f"camera {camera.id}, {kind} {shape.name}: class {name!r} is not one of the class "
         f"names in {source}{did_you_mean(str(name), class_names)}; it is ignored there")
        for index, camera in enumerate(config.cameras) if camera.enabled
        for kind, shapes in (("zone", camera.zones), ("line", camera.lines))
        for s, shape in enumerate(shapes) for c, name in enumerate(shape.classes or ())
        if class_id(name, class_names) is None]
    found += [(("homeassistant", "classes", index),
               f"homeassistant.classes: {name!r} is not one of the class names in {source}"
               f"{did_you_mean(str(name), class_names)}; its entities would never count anything")
              for index, name in enumerate(config.homeassistant.classes)
              if class_id(name, class_names) is None]
    lines = _lines(config_path, [loc for loc, _ in found])
    return [f"  warning: {config_path}{f':{line}' if line else ''}: {text}"
            for (_, text), line in zip(found, lines, strict=True)]


def check_classes(
    config: AgentConfig, class_names: Sequence[str], config_path: Path | str | None
) -> None:
    """Raise ConfigError, one `FILE:LINE: key: problem` line each, for classes in detect and
    masks that this model lacks; run once the model (and its labels) is loaded."""
    problems = class_problems(config, class_names)
    if not problems:
        return
    lines = _lines(config_path, [loc for loc, _ in problems])
    shown = str(config_path) if config_path is not None else "config"
    texts = [f"{shown}{f':{line}' if line else ''}: {key_path(loc)}: {text}"
             for (loc, text), line in zip(problems, lines, strict=True)]
    raise ConfigError("\n".join(texts), texts, count=len(texts))


def _lines(path: Path | str | None, locs: list[Loc]) -> list[int | None]:
    """The file's line of each key path; None where the file cannot be read again."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig") if path is not None else ""
        loader = StrictLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except Exception:  # the file changed or went away: the key path alone still says where
        return [None] * len(locs)
    return [locate(root, loc)[0] if root is not None else None for loc in locs]


@dataclass(frozen=True)
class FilterStats:
    """Detections this camera's rules removed, by the first rule each failed."""

    min_score: int
    min_area: int
    mask: int


@dataclass
class _Mask:
    name: str
    config: MaskConfig
    class_ids: np.ndarray | None


class CameraFilter:
    """One camera's `detect.min_score`, `detect.min_area` and `masks`, for one model's classes.

    Class keys must already be known to the model (`check_classes`); an unknown one is
    ignored with a warning here.
    """

    def __init__(
        self, detect: DetectConfig, masks: Iterable[MaskConfig], class_names: Sequence[str],
        counts_from: CameraFilter | None = None,
    ) -> None:
        """`counts_from`: the filter this one replaces (a reload); its counts go on here."""
        self.count = max(len(class_names), 1 + max(
            (_ids(detect.min_score, class_names) + _ids(detect.min_area, class_names)), default=0))
        self.min_score = self._table(detect.min_score, class_names)
        area = self._table(detect.min_area, class_names)
        self.area_share = np.where(area <= 1.0, area, 0.0).astype(np.float64)
        self.area_pixels = np.where(area > 1.0, area, 0.0).astype(np.float64)
        self.masks = [
            _Mask(mask.name, mask, None if mask.classes is None else np.array(
                [i for i in (class_id(k, class_names) for k in mask.classes) if i is not None],
                np.int64))
            for mask in masks
        ]
        self.active = bool(detect.min_score or detect.min_area or self.masks)
        self._pixels: dict[tuple[int, int], list[np.ndarray]] = {}
        counted = counts_from.stats() if counts_from is not None else FilterStats(0, 0, 0)
        self.removed_score, self.removed_area, self.removed_mask = (
            counted.min_score, counted.min_area, counted.mask)

    def _table(self, values: dict[str, float], class_names: Sequence[str]) -> np.ndarray:
        table = np.zeros(self.count, np.float64)
        for key, value in values.items():
            index = class_id(key, class_names)
            if index is None:
                log.warning("class %r is not a class of this model: its limit is ignored", key)
            else:
                table[index] = value
        return table

    def filter(self, detections: Detections, frame_width: int, frame_height: int) -> Detections:
        """The detections (boxes (N, 4) x1, y1, x2, y2 in pixels of a frame_width x
        frame_height frame) that pass every rule, in their order; counts what goes."""
        if not self.active or not len(detections):
            return detections
        keep = self.keep(detections, frame_width, frame_height)
        if keep.all():
            return detections
        return Detections(detections.boxes[keep], detections.scores[keep],
                          detections.class_ids[keep], detections.nonfinite,
                          detections.scores_clipped)

    def keep(self, detections: Detections, frame_width: int, frame_height: int) -> np.ndarray:
        """(N,) bool: which detections pass every rule; counts the others by reason."""
        classes = detections.class_ids.astype(np.int64)
        known = (classes >= 0) & (classes < self.count)
        index = np.where(known, classes, 0)
        boxes = detections.boxes.astype(np.float64)
        keep = ~known | (detections.scores >= self.min_score[index])
        self.removed_score += int(np.count_nonzero(~keep))
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        least = self.area_share[index] * (frame_width * frame_height) + self.area_pixels[index]
        big_enough = ~known | (area >= least)
        self.removed_area += int(np.count_nonzero(keep & ~big_enough))
        keep &= big_enough
        if self.masks:
            masked = self._masked(boxes, classes, (frame_width, frame_height))
            self.removed_mask += int(np.count_nonzero(keep & masked))
            keep &= ~masked
        return keep

    def _masked(self, boxes: np.ndarray, classes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(N,) True where the box's bottom-centre is inside a mask that covers its class."""
        width, height = size
        # The anchor is a pixel: its centre, so a mask drawn to the frame's edge holds it.
        anchors = np.stack([
            np.clip((boxes[:, 0] + boxes[:, 2]) / 2, 0.5, max(width - 0.5, 0.5)),
            np.clip(boxes[:, 3], 0.5, max(height - 0.5, 0.5)),
        ], axis=1)
        masked = np.zeros(len(boxes), bool)
        for mask, polygon in zip(self.masks, self._polygons(size), strict=True):
            applies = np.ones(len(boxes), bool) if mask.class_ids is None else np.isin(
                classes, mask.class_ids)
            masked |= applies & inside(anchors, polygon)
        return masked

    def _polygons(self, size: tuple[int, int]) -> list[np.ndarray]:
        """Each mask in pixels of a frame this size, converted once per size."""
        polygons = self._pixels.get(size)
        if polygons is None:
            polygons = [geometry.to_pixels(m.config.points, m.config.units, size,
                                           name=f"mask {m.name}").astype(np.float64)
                        for m in self.masks]
            self._pixels = {size: polygons}  # a camera has one size at a time
        return polygons

    def stats(self) -> FilterStats:
        return FilterStats(self.removed_score, self.removed_area, self.removed_mask)


def _ids(values: dict[str, float], class_names: Sequence[str]) -> list[int]:
    return [i for i in (class_id(key, class_names) for key in values) if i is not None]


def inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which of `points` (N, 2) lie inside `polygon` (M, 2), by even-odd ray
    crossing, vectorised over points and edges (N x M work, no Python loop per point)."""
    if not len(points):
        return np.zeros(0, bool)
    x, y = points[:, :1], points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    spans = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return np.count_nonzero(spans & (x < crossing_x), axis=1) % 2 == 1
