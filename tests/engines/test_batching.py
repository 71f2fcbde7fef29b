"""Cross-caller batching: split rules, the wait bound, and frames that come back as if
each ran alone. Real OpenVINO on the sample model (a static batch-1 YOLOX export, made
batchable at load) and the sample images."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.base import Detections
from engines.batching import BatchingEngine, BatchPolicy, choose_splitters
from engines.detector import Detector
from engines.errors import EngineError
from engines.model_info import read_labels
from engines.openvino import OpenVinoEngine
from engines.postprocess import DetectionFilter

MAX_SIZE = 4


@pytest.mark.parametrize(("single", "batched", "count", "fits"), [
    ([(1, 3549, 85)], [(3, 3549, 85)], 3, True),
    ([(1, 100, 6), (1,)], [(2, 100, 6), (2,)], 2, True),
    ([(1, 3549, 85)], [(1, 7098, 85)], 2, False),  # batch folded into rows: mixes frames
    ([(1, 84, 8400)], [(4, 84, 8400)], 2, False),
    ([(2, 10)], [(4, 10)], 2, False),  # a model whose own batch is not 1
    ([(1, 10)], [(2, 10), (2, 3)], 2, False),  # output count differs
])
def test_split_rule_is_chosen_from_shapes(
    single: list[tuple[int, ...]], batched: list[tuple[int, ...]], count: int, fits: bool
) -> None:
    ones = [np.zeros(shape) for shape in single]
    many = [np.zeros(shape) for shape in batched]
    if not fits:
        with pytest.raises(EngineError):
            choose_splitters(ones, many, count)
        return
    splitters = choose_splitters(ones, many, count)
    for split, out, one in zip(splitters, many, ones, strict=True):
        parts = split(out, count)
        assert len(parts) == count
        assert all(part.shape == one.shape for part in parts)


@pytest.mark.parametrize(("size", "wait"), [(0, 5.0), (4, -1.0)])
def test_policy_refuses_nonsense(size: int, wait: float) -> None:
    with pytest.raises(ValueError, match="max_size"):
        BatchPolicy(size, wait)


@pytest.fixture(scope="module")
def inner(samples: Path) -> Iterator[OpenVinoEngine]:
    names = read_labels(samples / "models" / "coco_labels.txt")
    with OpenVinoEngine(samples / "models" / "yolox_nano.onnx", class_names=names,
                        max_batch=MAX_SIZE) as engine:
        yield engine


@pytest.fixture(scope="module")
def images(samples: Path) -> list[np.ndarray]:
    return [cv2.imread(str(path)) for path in sorted((samples / "images").glob("*.jpg"))]


def same(a: Detections | None, b: Detections | None) -> bool:
    assert a is not None
    assert b is not None
    return (len(a) == len(b) and np.array_equal(a.class_ids, b.class_ids)
            and np.allclose(a.boxes, b.boxes, atol=0.05) and np.allclose(a.scores, b.scores,
                                                                         atol=1e-4))


def test_batched_frames_come_back_as_if_each_ran_alone(
    inner: OpenVinoEngine, images: list[np.ndarray]
) -> None:
    """Two threads (two cameras) submit at once; every frame gets its own detections."""
    alone = [Detector(inner, DetectionFilter(score_threshold=0.3)).detect(image).detections
             for image in images]
    assert sum(len(found or ()) for found in alone) > 10  # the sample images hold objects
    engine = BatchingEngine(inner, BatchPolicy(MAX_SIZE, 20.0), owns_inner=False)
    detector = Detector(engine, DetectionFilter(score_threshold=0.3))
    results: dict[int, Detections | None] = {}

    def camera(indexes: list[int]) -> None:
        pending = [(i, detector.submit(images[i])) for i in indexes]
        for i, each in pending:
            results[i] = each.result(timeout=60).detections

    halves = [list(range(0, len(images), 2)), list(range(1, len(images), 2))]
    threads = [threading.Thread(target=camera, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == list(range(len(images)))
    assert all(same(results[i], alone[i]) for i in range(len(images)))
    assert engine.stats.frames == len(images)
    assert engine.stats.mean_size > 1  # frames of both threads shared inferences
    assert max(engine.stats.sizes) <= MAX_SIZE
    engine.close()


def test_a_lone_frame_waits_the_bound_and_a_full_batch_does_not(
    inner: OpenVinoEngine, images: list[np.ndarray]
) -> None:
    """max_wait_ms bounds the wait of a frame nobody joins; a full batch leaves at once."""
    wait_ms = 300.0
    engine = BatchingEngine(inner, BatchPolicy(MAX_SIZE, wait_ms), owns_inner=False)
    detector = Detector(engine)
    for _ in range(2):  # alone: each frame waits the bound, then runs as a batch of 1
        started = time.monotonic()
        detector.submit(images[0]).result(timeout=60)
        assert time.monotonic() - started >= wait_ms / 1000
    assert engine.stats.sizes == {1: 2}
    assert wait_ms <= engine.stats.max_fill_wait_ms < wait_ms + 250  # scheduling slack
    pending = [detector.submit(image) for image in images[:MAX_SIZE]]
    for each in pending:
        each.result(timeout=60)
    engine.close()
    assert engine.stats.sizes.get(MAX_SIZE) == 1
    assert engine.stats.last_fill_wait_ms < wait_ms / 2  # full: it left without waiting


def test_close_runs_what_was_queued_and_refuses_more(
    inner: OpenVinoEngine, images: list[np.ndarray]
) -> None:
    engine = BatchingEngine(inner, BatchPolicy(2, 50.0), owns_inner=False)
    detector = Detector(engine)
    pending = [detector.submit(image) for image in images[:6]]
    engine.close()
    assert all(each.result(timeout=60).detections is not None for each in pending)
    assert engine.stats.frames == 6
    with pytest.raises(EngineError, match="closed"):
        detector.submit(images[0])
