"""The INT8 guard's matching and score, on hand-made detections: each rule can fail."""

from __future__ import annotations

import numpy as np
import pytest

from engines.base import Detections
from engines.int8_guard import MIN_REFERENCE, GuardScore, iou_matrix, match_count, score, verdict


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """(x1, y1, x2, y2, score, class) rows."""
    if not rows:
        return Detections.empty()
    array = np.array(rows, np.float64)
    return Detections(array[:, :4].astype(np.float32), array[:, 4].astype(np.float32),
                      array[:, 5].astype(np.int32))


BOX = (10.0, 10.0, 110.0, 110.0)


@pytest.mark.parametrize(("reference", "candidate", "matched"), [
    (dets((*BOX, 0.9, 0)), dets((*BOX, 0.8, 0)), 1),                       # same object
    (dets((*BOX, 0.9, 0)), dets((*BOX, 0.8, 1)), 0),                       # other class
    (dets((*BOX, 0.9, 0)), dets((40.0, 10.0, 140.0, 110.0, 0.8, 0)), 1),   # IoU 0.54
    (dets((*BOX, 0.9, 0)), dets((45.0, 10.0, 145.0, 110.0, 0.8, 0)), 0),   # IoU 0.48
    (dets((*BOX, 0.9, 0)), dets((*BOX, 0.8, 0), (*BOX, 0.7, 0)), 1),       # one FP box, once
    (dets((*BOX, 0.9, 0), (*BOX, 0.9, 0)), dets((*BOX, 0.8, 0)), 1),
    (dets(), dets((*BOX, 0.8, 0)), 0),
    (dets((*BOX, 0.9, 0)), dets(), 0),
    # the better-scored candidate takes the box it overlaps best; the other still matches
    (dets((*BOX, 0.9, 0), (60.0, 10.0, 160.0, 110.0, 0.9, 0)),
     dets((*BOX, 0.5, 0), (55.0, 10.0, 155.0, 110.0, 0.8, 0)), 2),
])
def test_matching_by_class_and_iou(reference: Detections, candidate: Detections,
                                   matched: int) -> None:
    assert match_count(reference, candidate) == matched


def test_iou_matrix_values() -> None:
    first = np.array([BOX, (0, 0, 10, 10)], np.float32)
    second = np.array([BOX, (60, 10, 160, 110), (200, 200, 200, 200)], np.float32)
    expected = [[1.0, 50 * 100 / (2 * 100 * 100 - 50 * 100), 0.0], [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(iou_matrix(first, second), expected, rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_a_model_against_itself_scores_one_and_losing_boxes_lowers_recall(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(6):
        count = int(rng.integers(1, 8))
        corner = rng.uniform(0, 500, (count, 2))
        size = rng.uniform(20, 100, (count, 2))
        rows = [(*corner[i], *(corner[i] + size[i]), float(rng.uniform(0.3, 1)),
                 int(rng.integers(0, 3))) for i in range(count)]
        frames.append(dets(*rows))
    assert score((d, d) for d in frames).f1 == 1.0
    kept = [Detections(d.boxes[1:], d.scores[1:], d.class_ids[1:]) for d in frames]
    result = score(zip(frames, kept, strict=True))
    total = sum(len(d) for d in frames)
    assert result.matched == total - len(frames)
    assert result.precision == 1.0
    assert result.recall == pytest.approx((total - len(frames)) / total)
    assert result.f1 == pytest.approx(2 * result.matched / (2 * total - len(frames)))


@pytest.mark.parametrize(("result", "min_f1", "passed", "words"), [
    (GuardScore(20, 100, 100, 95), 0.9, True, "F1 0.950 against the FP model"),
    (GuardScore(20, 100, 100, 85), 0.9, False, "is below int8_min_f1 0.9"),
    (GuardScore(20, 100, 10, 10), 0.9, False, "recall 0.100"),
    (GuardScore(20, MIN_REFERENCE - 1, MIN_REFERENCE - 1, MIN_REFERENCE - 1), 0.5, False,
     "cannot judge"),
    (GuardScore(0, 0, 0, 0), 0.1, False, "cannot judge"),
])
def test_verdict(result: GuardScore, min_f1: float, passed: bool, words: str) -> None:
    ok, reason = verdict(result, min_f1)
    assert ok is passed
    assert words in reason
