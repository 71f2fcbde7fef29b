"""Probation rules (a table of live counters) and the pipeline's hand-over of a new engine
and ring of recent frames."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_agent.config.model import DriftConfig
from edge_agent.config.models_store import ModelsConfig
from edge_agent.models.checks import Counters, probation_problem
from edge_agent.models.handover import Handover, RecentFrames

SETTINGS = ModelsConfig(max_error_ratio=0.1, max_latency_ratio=3.0)
DRIFT = DriftConfig(collapse_ratio=0.2, min_baseline_detections=0.5)
START = Counters(frames=100, failed=2, detected=300, infer_ms_total=1000.0)


def now(frames: int = 50, failed: int = 0, detected: int = 150, infer_ms: float = 10.0,
        problem: str | None = None) -> Counters:
    return Counters(START.frames + frames, START.failed + failed, START.detected + detected,
                    START.infer_ms_total + infer_ms * frames, problem)


@pytest.mark.parametrize(("current", "final", "baseline_rate", "expected"), [
    (now(), True, 3.0, None),
    (now(), False, 3.0, None),
    (now(problem="every model output value is NaN"), False, 3.0, "NaN"),
    (now(frames=20, failed=5), False, 3.0, "5 of 25 frames failed"),
    (now(frames=5, failed=4), False, 3.0, None),  # too few frames to judge yet
    (now(frames=100, failed=10), True, 3.0, None),  # 10 of 110: under 0.1
    (now(infer_ms=35.0), True, 3.0, "3.5 times the previous model's 10.0 ms"),
    (now(infer_ms=35.0), False, 3.0, None),  # judged at the end of the window only
    (now(detected=0), True, 3.0, "collapsed to 0.00 per frame from 3.00"),
    (now(detected=40), True, 3.0, None),  # 0.8 per frame: above 0.2 * 3.0
    (now(detected=25), True, 3.0, "collapsed to 0.50"),  # under 0.6
    (now(detected=0), True, 0.3, None),  # the previous model found too little to judge
    (now(frames=0), True, 3.0, None),  # no frames since the swap: nothing to compare
])
def test_probation_rules(current: Counters, final: bool, baseline_rate: float,
                         expected: str | None) -> None:
    problem = probation_problem({"cam": baseline_rate}, {"cam": 10.0},
                                at_swap={"cam": START}, now={"cam": current},
                                config=SETTINGS, drift=DRIFT, final=final)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem
        assert problem.startswith("camera cam: ")


def test_a_camera_started_after_the_swap_is_not_judged() -> None:
    assert probation_problem({}, {}, at_swap={}, now={"new": now(detected=0)},
                             config=SETTINGS, drift=DRIFT, final=True) is None


def test_recent_frames_keep_every_kth_and_the_newest() -> None:
    ring = RecentFrames(size=3, every=2)
    image = np.zeros((2, 2, 3), np.uint8)
    for sequence in range(10):
        ring.offer(sequence, image, sequence * 10)
    assert [(f.sequence, f.detections) for f in ring.snapshot()] == [(4, 40), (6, 60), (8, 80)]
    ring.clear()
    assert ring.snapshot() == []


def test_wide_frames_are_kept_scaled_down() -> None:
    ring = RecentFrames(size=2, every=1)
    wide = np.zeros((1080, 1920, 3), np.uint8)
    small = np.zeros((240, 320, 3), np.uint8)
    ring.offer(0, wide, 1)
    ring.offer(1, small, 1)
    kept = ring.snapshot()
    assert kept[0].image.shape == (720, 1280, 3)
    assert kept[1].image is small  # not copied


def test_handover_waits_for_frames_of_the_old_engine() -> None:
    """The event is set only when no frame submitted before the switch is in flight."""
    handover = Handover()
    engine, options = object(), object()
    drained = handover.offer(engine, options)  # type: ignore[arg-type]
    assert handover.waiting
    assert handover.take() == (engine, options)
    assert handover.generation == 1
    handover.settle(oldest_generation=0)  # a frame of the old engine still in flight
    assert not drained.is_set()
    handover.settle(oldest_generation=1)
    assert drained.is_set()
    assert not handover.waiting
    assert handover.take() is None


def test_a_second_offer_supersedes_the_first() -> None:
    handover = Handover()
    first = handover.offer(object(), object())  # type: ignore[arg-type]
    second_engine = object()
    second = handover.offer(second_engine, object())  # type: ignore[arg-type]
    assert first.is_set()  # never taken: nothing of it to drain
    taken = handover.take()
    assert taken is not None
    assert taken[0] is second_engine
    handover.settle(None)
    assert second.is_set()


def test_handover_across_threads() -> None:
    handover = Handover()
    drained = handover.offer(object(), object())  # type: ignore[arg-type]

    def pipeline() -> None:
        while handover.waiting:
            handover.take()
            handover.settle(None)

    thread = threading.Thread(target=pipeline)
    thread.start()
    assert drained.wait(5)
    thread.join(5)
