"""The INT8 accuracy guard: does a quantized model still find what the full-precision one finds?

Backend-agnostic: it compares `Detections` (frame pixels) from two detectors on the same
frames, so it judges an OpenVINO/NNCF INT8 IR and a TensorRT INT8 engine built with a
calibration cache alike. The FP model's output is the reference (no ground truth on a
box): a detection of the INT8 model counts as found when it has the class of an FP
detection and IoU >= `iou` with it (each FP detection matched at most once, highest
INT8 score first). F1 = 2 * matched / (FP count + INT8 count).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from engines.base import Detections

MATCH_IOU = 0.5
"""IoU a detection needs with an FP detection of its class to count as the same object."""
MIN_REFERENCE = 10
"""Fewer FP detections than this on the held-back frames and F1 means nothing: the guard
refuses to judge (and so refuses the build) instead of passing it on luck."""


def iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of every box in (N, 4) `first` with every box in (M, 4) `second`: (N, M)."""
    a = np.asarray(first, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(second, np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_count(reference: Detections, candidate: Detections, iou: float = MATCH_IOU) -> int:
    """How many candidate detections match a distinct reference detection of the same
    class with IoU >= `iou`; candidates are taken highest score first (greedy, as COCO
    evaluation does)."""
    if not len(reference) or not len(candidate):
        return 0
    overlap = iou_matrix(candidate.boxes, reference.boxes)
    same_class = candidate.class_ids[:, None] == reference.class_ids[None, :]
    overlap = np.where(same_class & (overlap >= iou), overlap, -1.0)
    taken = np.zeros(len(reference), bool)
    matched = 0
    for row in np.argsort(-candidate.scores, kind="stable"):  # a few boxes a frame
        choices = np.where(taken, -1.0, overlap[row])
        best = int(np.argmax(choices))
        if choices[best] >= 0:
            taken[best] = True
            matched += 1
    return matched


@dataclass(frozen=True)
class GuardScore:
    """The INT8 model's agreement with the FP model over the held-back frames."""

    frames: int
    reference: int
    """FP detections (the reference)."""
    candidate: int
    """INT8 detections."""
    matched: int

    @property
    def precision(self) -> float:
        return self.matched / self.candidate if self.candidate else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 0.0

    @property
    def f1(self) -> float:
        total = self.reference + self.candidate
        return 2 * self.matched / total if total else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


def score(pairs: Iterable[tuple[Detections, Detections]], iou: float = MATCH_IOU) -> GuardScore:
    """Sum (FP detections, INT8 detections) pairs, one per held-back frame, into a score."""
    frames = reference = candidate = matched = 0
    for fp, int8 in pairs:
        frames += 1
        reference += len(fp)
        candidate += len(int8)
        matched += match_count(fp, int8, iou)
    return GuardScore(frames, reference, candidate, matched)


def verdict(result: GuardScore, min_f1: float) -> tuple[bool, str]:
    """(passed, why) in words a technician can act on."""
    figures = (f"F1 {result.f1:.3f} against the FP model (precision {result.precision:.3f}, "
               f"recall {result.recall:.3f}; {result.matched} of {result.reference} FP "
               f"detections matched, {result.candidate} INT8 detections, {result.frames} "
               "held-back frames)")
    if result.reference < MIN_REFERENCE:
        return False, (f"cannot judge: the FP model found only {result.reference} objects on "
                       f"the {result.frames} held-back frames (need {MIN_REFERENCE}); "
                       "calibrate on frames that show what the camera is for")
    if result.f1 < min_f1:
        return False, f"{figures} is below int8_min_f1 {min_f1:g}"
    return True, f"{figures} >= int8_min_f1 {min_f1:g}"
