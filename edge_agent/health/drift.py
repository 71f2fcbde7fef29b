"""Drift watch: is this camera still seeing what it saw when the agent started?

Every k-th frame is reduced to a few numbers (brightness, contrast, sharpness, detections
per frame, their confidence and classes) measured on a small grey copy, so the cost stays
well under a millisecond. The first `baseline_samples` form the baseline; the latest
`window_samples` are compared with it. The result is a score 0..1 (the largest relative
change of any statistic) and named reasons a technician can act on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_agent.config.model import DriftConfig
from engines.base import Detections

SAMPLE_WIDTH = 160
"""Width of the grey copy the image statistics are measured on."""

BRIGHTNESS, CONTRAST, SHARPNESS, DETECTIONS, SCORE_SUM = range(5)
_COLUMNS = 5


def image_stats(image: np.ndarray) -> tuple[float, float, float]:
    """(mean grey level, grey-level std, variance of the Laplacian) of a BGR frame."""
    height, width = image.shape[:2]
    if width > SAMPLE_WIDTH:
        size = (SAMPLE_WIDTH, max(1, round(height * SAMPLE_WIDTH / width)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    mean, std = cv2.meanStdDev(grey)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
    return float(mean[0, 0]), float(std[0, 0]), float(lap_std[0, 0]) ** 2


@dataclass(frozen=True)
class DriftReport:
    """One camera's drift: `state` is learning until the baseline is complete."""

    state: str  # "disabled", "learning" or "watching"
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    samples: int = 0
    baseline: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)
    components: dict[str, float] = field(default_factory=dict)
    class_rates: dict[str, dict[str, float]] = field(default_factory=dict)


class DriftWatch:
    """Per camera; `offer` runs on the pipeline thread, `report` on the health thread."""

    def __init__(self, config: DriftConfig, class_names: tuple[str, ...]) -> None:
        self.config = config
        self.class_names = class_names
        classes = len(class_names)
        self._baseline = np.zeros((config.baseline_samples, _COLUMNS), np.float64)
        self._baseline_classes = np.zeros(classes, np.float64)
        self._window = np.zeros((config.window_samples, _COLUMNS), np.float64)
        self._window_classes = np.zeros((config.window_samples, classes), np.float64)
        self._samples = 0
        self._frames = 0
        self._lock = threading.Lock()

    def offer(self, image: np.ndarray, detections: Detections) -> None:
        """Look at every k-th frame; the others cost one addition."""
        if not self.config.enabled:
            return
        self._frames += 1
        if (self._frames - 1) % self.config.sample_every:
            return
        brightness, contrast, sharpness = image_stats(image)
        row = (brightness, contrast, sharpness, len(detections), float(detections.scores.sum()))
        with self._lock:
            classes = len(self.class_names)
            per_class = (
                np.bincount(detections.class_ids[detections.class_ids < classes],
                            minlength=classes) if classes else np.zeros(0)
            )
            index = self._samples
            if index < len(self._baseline):
                self._baseline[index] = row
                self._baseline_classes += per_class
            slot = index % len(self._window)
            self._window[slot] = row
            self._window_classes[slot] = per_class
            self._samples += 1

    def relabel(self, class_names: tuple[str, ...]) -> None:
        """A model swap or rollback (on the pipeline thread, between two frames): the class
        rates follow the new model's names. A class both models have keeps its counts under
        its new id; the others start at zero (the old ids mean nothing to the new model).
        The image statistics and the detection rate do not depend on the names: kept."""
        names = tuple(class_names)
        with self._lock:
            if names == self.class_names:
                return
            old = {name: index for index, name in enumerate(self.class_names)}
            take = np.array([old.get(name, -1) for name in names], np.intp)
            known = take >= 0

            def moved(counts: np.ndarray) -> np.ndarray:
                out = np.zeros((*counts.shape[:-1], len(names)), np.float64)
                out[..., known] = counts[..., take[known]]
                return out

            self._baseline_classes = moved(self._baseline_classes)
            self._window_classes = moved(self._window_classes)
            self.class_names = names

    def report(self) -> DriftReport:
        config = self.config
        if not config.enabled:
            return DriftReport("disabled")
        with self._lock:  # names and counts of one model, even across a swap
            samples = self._samples
            window = self._window[: min(samples, len(self._window))].copy()
            window_classes = self._window_classes[: len(window)].sum(axis=0)
            baseline_classes = self._baseline_classes.copy()
            names = self.class_names
        if samples < len(self._baseline):
            return DriftReport("learning", samples=samples)
        baseline = _summary(self._baseline)
        current = _summary(window)
        components = {
            "brightness": min(
                1.0, abs(current["brightness"] - baseline["brightness"])
                / max(baseline["brightness"], 32.0)
            ),
            "contrast": _ratio_change(current["contrast"], baseline["contrast"], 1.0),
            "sharpness": _ratio_change(current["sharpness"], baseline["sharpness"], 1.0),
            "detections": _ratio_change(
                current["detections_per_frame"], baseline["detections_per_frame"], 0.05
            ),
            "confidence": abs(current["mean_confidence"] - baseline["mean_confidence"])
            if current["detections_per_frame"] and baseline["detections_per_frame"] else 0.0,
            "classes": _class_shift(baseline_classes, window_classes),
        }
        return DriftReport(
            state="watching",
            score=round(max(components.values()), 3),
            reasons=self._reasons(baseline, current),
            samples=samples,
            baseline=_rounded(baseline),
            current=_rounded(current),
            components=_rounded(components, 3),
            class_rates=self._class_rates(names, baseline_classes, window_classes, len(window)),
        )

    def _reasons(self, baseline: dict[str, float], current: dict[str, float]) -> tuple[str, ...]:
        config = self.config
        reasons = []
        if current["brightness"] < config.dark_brightness:
            reasons.append("dark")
        elif current["brightness"] > config.blinded_brightness:
            reasons.append("blinded")
        elif current["contrast"] < config.covered_contrast:
            reasons.append("covered")
        elif current["sharpness"] < config.blur_ratio * baseline["sharpness"]:
            reasons.append("out_of_focus")
        if collapsed(baseline["detections_per_frame"], current["detections_per_frame"], config):
            reasons.append("detections_collapsed")
        return tuple(reasons)

    def _class_rates(self, names: tuple[str, ...], baseline_classes: np.ndarray,
                     window_classes: np.ndarray, window_len: int) -> dict[str, dict]:
        """Detections per sampled frame of each class seen in the baseline or the window."""
        base = baseline_classes / len(self._baseline)
        now = window_classes / max(window_len, 1)
        seen = np.flatnonzero((base > 0) | (now > 0))
        return {
            names[i]: {"baseline": round(float(base[i]), 3),
                                  "current": round(float(now[i]), 3)}
            for i in seen
        }


def collapsed(baseline_rate: float, current_rate: float, config: DriftConfig) -> bool:
    """Detections per frame fell below `collapse_ratio` of a baseline rate high enough
    to judge (drift watch, and model probation against the previous model)."""
    return (baseline_rate >= config.min_baseline_detections
            and current_rate < config.collapse_ratio * baseline_rate)


def _summary(rows: np.ndarray) -> dict[str, float]:
    """Medians of the image statistics (a passing truck is not drift), mean detection rate."""
    count = rows[:, DETECTIONS].sum()
    return {
        "brightness": float(np.median(rows[:, BRIGHTNESS])),
        "contrast": float(np.median(rows[:, CONTRAST])),
        "sharpness": float(np.median(rows[:, SHARPNESS])),
        "detections_per_frame": float(rows[:, DETECTIONS].mean()) if len(rows) else 0.0,
        "mean_confidence": float(rows[:, SCORE_SUM].sum() / count) if count else 0.0,
    }


def _ratio_change(current: float, baseline: float, floor: float) -> float:
    """0 when equal, towards 1 as one becomes a small fraction of the other."""
    low, high = sorted((max(current, floor), max(baseline, floor)))
    return 1.0 - low / high


def _class_shift(baseline: np.ndarray, current: np.ndarray) -> float:
    """Total variation distance between the class mixes (0 same mix, 1 disjoint)."""
    if not baseline.sum() or not current.sum():
        return 0.0
    return float(0.5 * np.abs(baseline / baseline.sum() - current / current.sum()).sum())


def _rounded(values: dict[str, float], digits: int = 2) -> dict[str, float]:
    return {name: round(value, digits) for name, value in values.items()}
