"""The frame gate as tables and properties: detect.fps spacing over irregular capture times,
the motion gate's keep-alive on still frames, motion admitted at once, noise and slow
drifts that stay still. Pure logic on small synthetic frames: milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config.detect import DetectConfig, MotionConfig
from edge_agent.gate import (
    KEPT_PER_COMPARE,
    RATE_SLACK,
    FrameGate,
    MotionDetector,
    RateLimiter,
)

BLANK = np.full((72, 128, 3), 100, np.uint8)


def capture_times(seed: int, camera_fps: float, seconds: float, jitter: float,
                  stalls: int = 0) -> np.ndarray:
    """Irregular capture times: a nominal rate, each frame +-jitter of a frame interval off
    its slot (timestamps jitter, the camera's clock does not drift), a few stalls."""
    rng = np.random.default_rng(seed)
    count = int(camera_fps * seconds)
    times = (np.arange(count) + rng.uniform(-jitter, jitter, count)) / camera_fps
    for index in rng.choice(count, size=stalls, replace=False):
        times[index:] += rng.uniform(0.5, 3.0)  # a network hiccup delays the rest
    return 100.0 + np.sort(times)


def admitted(gate: FrameGate, times: np.ndarray, frames: list[np.ndarray] | None = None
             ) -> np.ndarray:
    images = frames or [BLANK] * len(times)
    return np.array([t for t, image in zip(times, images, strict=True) if gate.admit(image, t)])


# (camera fps, detect fps, jitter share of a frame interval)
RATES = [(25, 5, 0.3), (30, 10, 0.5), (25, 2, 0.2), (15, 7, 0.4), (12, 1, 0.5), (30, 29, 0.1)]


@pytest.mark.parametrize(("camera_fps", "detect_fps", "jitter"), RATES)
@pytest.mark.parametrize("seed", range(5))
def test_detect_fps_keeps_its_rate_evenly_over_irregular_capture(
    camera_fps: int, detect_fps: float, jitter: float, seed: int
) -> None:
    times = capture_times(seed, camera_fps, 60, jitter)
    gate = FrameGate(DetectConfig(fps=detect_fps))
    kept = admitted(gate, times)
    duration = times[-1] - times[0]
    # The long-run rate is the detect rate: within one frame either way over a minute.
    assert abs(len(kept) - duration * detect_fps) <= 1.5
    gaps = np.diff(kept)
    period = 1.0 / detect_fps
    assert gaps.min() >= period * (1 - 2 * RATE_SLACK) - 1e-9  # never bunched
    assert gaps.max() <= period + 2.0 / camera_fps * (1 + jitter)  # never a long hole
    assert gate.skipped_rate == len(times) - len(kept)
    assert gate.skipped_motion == 0


@pytest.mark.parametrize("seed", range(5))
def test_a_stalled_stream_restarts_the_grid_without_a_burst(seed: int) -> None:
    times = capture_times(seed, 25, 60, 0.3, stalls=4)
    kept = admitted(FrameGate(DetectConfig(fps=5)), times)
    assert np.diff(kept).min() >= 0.2 * (1 - 2 * RATE_SLACK) - 1e-9


@pytest.mark.parametrize(("camera_fps", "jitter"), [(10, 0.2), (5, 0.2), (10, 0.0)])
def test_a_camera_at_or_below_the_detect_rate_keeps_every_frame(
    camera_fps: int, jitter: float
) -> None:
    times = capture_times(1, camera_fps, 30, jitter)
    assert len(admitted(FrameGate(DetectConfig(fps=10)), times)) == len(times)


def test_no_detect_rate_and_no_motion_gate_keeps_every_frame() -> None:
    times = capture_times(2, 30, 10, 0.5, stalls=2)
    gate = FrameGate(DetectConfig())
    assert len(admitted(gate, times)) == len(times)
    assert gate.stats().motion_active is None


def moving_square(index: int, size: int = 16) -> np.ndarray:
    """A bright square sliding right 4 px per frame over BLANK."""
    image = BLANK.copy()
    x = (index * 4) % (BLANK.shape[1] - size)
    image[20:20 + size, x:x + size] = 250
    return image


def run_scene(gate: FrameGate, kinds: str, fps: float = 10.0) -> list[bool]:
    """One frame per character: 'm' moving, 's' still; the decision for each."""
    decisions, position = [], 0
    for index, kind in enumerate(kinds):
        position += kind == "m"
        decisions.append(gate.admit(moving_square(position), 100.0 + index / fps))
    return decisions


MOTION = MotionConfig(enabled=True, keepalive_fps=0.5, hold_s=1.0, compare_s=0.5)


def test_a_still_scene_runs_at_the_keepalive_rate() -> None:
    gate = FrameGate(DetectConfig(motion=MOTION))
    decisions = run_scene(gate, "s" * 600)  # 60 s at 10 fps
    assert sum(decisions) == pytest.approx(60 * 0.5, abs=1.5)
    assert decisions[0]  # the first frame is always looked at
    gaps = np.diff(np.flatnonzero(decisions)) / 10.0
    assert gaps.min() >= 2.0 * (1 - 2 * RATE_SLACK)
    assert gate.skipped_motion == 600 - sum(decisions)
    assert gate.stats().motion_active is False


def test_keepalive_zero_never_infers_a_still_scene_after_the_first_frame() -> None:
    gate = FrameGate(DetectConfig(motion=MOTION.model_copy(update={"keepalive_fps": 0.0})))
    assert run_scene(gate, "s" * 100) == [False] * 100


@pytest.mark.parametrize("still_frames", [7, 33, 150])
def test_motion_after_a_still_stretch_is_inferred_at_once_and_at_full_rate(
    still_frames: int,
) -> None:
    gate = FrameGate(DetectConfig(motion=MOTION))
    decisions = run_scene(gate, "s" * still_frames + "m" * 40 + "s" * 60)
    moving = decisions[still_frames:still_frames + 40]
    assert moving == [True] * 40  # the first moving frame too, whatever the keep-alive says
    after = decisions[still_frames + 40:]
    # compare_s (0.5 s) until the last move stops differing, then hold_s (1 s): 15 frames.
    assert after[:14] == [True] * 14
    assert sum(after[16:]) <= 2  # back to keep-alive
    assert gate.stats().motion_active is False


def test_motion_with_a_detect_rate_runs_at_the_detect_rate_and_starts_at_once() -> None:
    gate = FrameGate(DetectConfig(fps=2, motion=MOTION))
    decisions = run_scene(gate, "s" * 45 + "m" * 100)
    moving = decisions[45:]
    assert moving[0]  # the keep-alive frame was 5 frames ago; motion is looked at anyway
    assert sum(moving) == pytest.approx(10 * 2, abs=1.5)
    assert gate.skipped_rate > 0
    assert gate.skipped_motion > 0


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sigma", [2.0, 8.0])
def test_sensor_noise_below_the_threshold_is_still(seed: int, sigma: float) -> None:
    rng = np.random.default_rng(seed)
    detector = MotionDetector(MotionConfig(enabled=True))
    scene = rng.integers(40, 200, (180, 320, 3)).astype(np.float32)  # textured, not flat
    moving = []
    for index in range(20):
        noise = rng.normal(0, sigma, scene.shape).astype(np.float32)
        moving.append(detector.moving(np.clip(scene + noise, 0, 255).astype(np.uint8),
                                      index / 10))
    assert not any(moving)
    assert detector.changed < 0.003


@pytest.mark.parametrize("levels_per_s", [2.0, 8.0, 20.0])
def test_a_slow_drift_in_light_is_not_motion(levels_per_s: float) -> None:
    """Daylight or exposure: the whole frame brightens steadily; 20 levels/s is a fast cloud."""
    detector = MotionDetector(MotionConfig(enabled=True))
    moving = [detector.moving(np.full((72, 128, 3), 40 + levels_per_s * t / 10, np.uint8),
                              t / 10) for t in range(100 if levels_per_s < 20 else 60)]
    assert not any(moving)


def test_a_sudden_light_change_is_motion_and_then_settles() -> None:
    detector = MotionDetector(MotionConfig(enabled=True, compare_s=0.5))
    frames = [np.full((72, 128, 3), 60 if t < 20 else 160, np.uint8) for t in range(40)]
    moving = [detector.moving(frame, t / 10) for t, frame in enumerate(frames)]
    assert moving[20]
    assert not any(moving[:20])
    assert not any(moving[27:])


@pytest.mark.parametrize(("object_px", "expected"), [(2, False), (10, True), (24, True)])
def test_the_changed_share_threshold_separates_specks_from_objects(
    object_px: int, expected: bool
) -> None:
    """On 640x360, one 64x36 cell is 10x10 px: a 2 px speck is noise, a 10 px object is not."""
    detector = MotionDetector(MotionConfig(enabled=True, threshold=0.0004))  # 1 cell
    base = np.full((360, 640, 3), 80, np.uint8)
    detector.moving(base, 0.0)
    changed = base.copy()
    changed[100:100 + object_px, 200:200 + object_px] = 250
    assert detector.moving(changed, 0.6) is expected


def test_a_clock_step_back_starts_the_reference_again() -> None:
    detector = MotionDetector(MotionConfig(enabled=True))
    detector.moving(BLANK, 5.0)
    assert detector.moving(np.full((50, 50, 3), 250, np.uint8), 5.1) is True  # any size
    assert detector.moving(BLANK, 1.0) is False  # clock went back: nothing to compare with
    assert detector.moving(moving_square(1), 1.6) is True


def test_the_rate_limiter_grid_survives_a_restart() -> None:
    limiter = RateLimiter(4.0)
    assert limiter.due(0.0)
    limiter.taken(0.0)
    assert not limiter.due(0.1)
    assert limiter.due(0.2)
    limiter.restart(0.13)
    assert limiter.next_due == pytest.approx(0.38)


def test_the_frames_kept_for_comparison_stay_few_at_any_frame_rate() -> None:
    detector = MotionDetector(MotionConfig(enabled=True, compare_s=10.0))
    for index in range(3000):  # 100 s at 30 fps
        detector.moving(BLANK, index / 30)
    assert len(detector.recent) <= KEPT_PER_COMPARE + 2
    assert 10.0 <= 3000 / 30 - detector.recent[0][0] - 1 / 30 <= 10.0 * (1 + 1 / 32) + 0.07


def test_a_replacing_gate_keeps_counting_where_the_old_one_stopped() -> None:
    old = FrameGate(DetectConfig(fps=1))
    admitted(old, capture_times(3, 10, 5, 0.1))
    new = FrameGate(DetectConfig(motion=MOTION), counts_from=old)
    assert (new.skipped_rate, new.skipped_motion) == (old.skipped_rate, 0)
    run_scene(new, "s" * 30)
    assert new.skipped_motion > 0
    assert new.skipped_rate == old.skipped_rate > 0
