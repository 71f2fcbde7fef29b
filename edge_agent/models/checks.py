"""The two judgements of a deploy: validation before the swap (the new model on recent
frames of each camera) and probation after it (live health against the previous model).

Plain functions over numbers, so the rules are table-tested without a camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_agent.config.model import DriftConfig
from edge_agent.config.models_store import ModelsConfig
from edge_agent.health.drift import collapsed
from edge_agent.models.handover import RecentFrame
from engines.base import Engine
from engines.detector import Detector
from engines.postprocess import DetectionFilter


class ModelRejectedError(ValueError):
    """The new model failed a check before the swap; the text is the reason."""


@dataclass(frozen=True)
class Validation:
    """What the new model did on the recent frames, per camera."""

    frames: int
    cameras: dict[str, dict[str, int]] = field(default_factory=dict)
    """camera -> {frames, running_detections, new_detections}."""
    inference_ms: float = 0.0

    def baseline_rates(self) -> dict[str, float]:
        """Running model's detections per frame on each camera's recent frames."""
        return {cam: c["running_detections"] / c["frames"]
                for cam, c in self.cameras.items() if c["frames"]}


def validate(
    engine: Engine, options: DetectionFilter, recent: dict[str, list[RecentFrame]],
    min_detection_ratio: float,
) -> Validation:
    """Run the new engine on a blank frame and on each camera's recent frames.

    Raises ModelRejectedError when an output is not finite, the family cannot decode it,
    inference fails, or a camera's detections fall below `min_detection_ratio` of what
    the running model detected on the same frames.
    """
    detector = Detector(engine, options)
    spec = engine.input
    blank = np.full((spec.height, spec.width, 3), 114, np.uint8)
    _detect(detector, blank, "a blank frame")
    cameras: dict[str, dict[str, int]] = {}
    timings: list[float] = []
    for camera, frames in recent.items():
        found = 0
        for frame in frames:
            detections, infer_ms = _detect(detector, frame.image,
                                           f"camera {camera} frame {frame.sequence}")
            found += detections
            timings.append(infer_ms)
        running = sum(frame.detections for frame in frames)
        cameras[camera] = {"frames": len(frames), "running_detections": running,
                           "new_detections": found}
        if running and found < min_detection_ratio * running:
            raise ModelRejectedError(
                f"camera {camera}: the new model detects {found} objects on {len(frames)} "
                f"recent frames where the running model detected {running} (needs at least "
                f"{min_detection_ratio:g} of them: models.min_detection_ratio)"
            )
    return Validation(sum(c["frames"] for c in cameras.values()), cameras,
                      float(np.mean(timings)) if timings else 0.0)


def _detect(detector: Detector, image: np.ndarray, what: str) -> tuple[int, float]:
    try:
        detected = detector.detect(image)
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise ModelRejectedError(
            f"on {what}: {type(cause).__name__}: {cause} (the {detector.info.family} "
            "postprocessing cannot decode the output, or inference failed)"
        ) from exc
    if detected.output_problem is not None or detected.detections is None:
        problem = detected.output_problem or "no finite output"
        raise ModelRejectedError(f"its output is not usable on {what}: {problem}")
    return len(detected.detections), detected.infer_ms


@dataclass(frozen=True)
class Counters:
    """One camera's pipeline counters at one moment (CameraPipeline attributes)."""

    frames: int
    failed: int
    detected: int
    infer_ms_total: float
    output_problem: str | None = None


def probation_problem(
    baseline_rates: dict[str, float], baseline_infer_ms: dict[str, float], *,
    at_swap: dict[str, Counters], now: dict[str, Counters],
    config: ModelsConfig, drift: DriftConfig, final: bool,
) -> str | None:
    """Why the new model must be rolled back, or None while it is fine.

    Checked all along: an output problem (NaN/inf), and a share of failed frames over
    `max_error_ratio` once 10 frames were tried. At the end of the window (`final`):
    mean inference time over `max_latency_ratio` times the previous model's, and
    detections per frame collapsed against the previous model's on the same camera
    (the drift watch's collapse rule, health.drift.collapse_ratio).
    """
    for camera, current in now.items():
        start = at_swap.get(camera)
        if start is None:
            continue
        if current.output_problem:
            return f"camera {camera}: {current.output_problem}"
        frames = current.frames - start.frames
        failed = current.failed - start.failed
        tried = frames + failed
        if tried >= 10 and failed > config.max_error_ratio * tried:
            return (f"camera {camera}: {failed} of {tried} frames failed since the swap "
                    f"(over models.max_error_ratio {config.max_error_ratio:g})")
        if not final or not frames:
            continue
        infer_ms = (current.infer_ms_total - start.infer_ms_total) / frames
        before = baseline_infer_ms.get(camera, 0.0)
        if before and infer_ms > config.max_latency_ratio * before:
            return (f"camera {camera}: inference takes {infer_ms:.1f} ms per frame, "
                    f"{infer_ms / before:.1f} times the previous model's {before:.1f} ms "
                    f"(over models.max_latency_ratio {config.max_latency_ratio:g})")
        rate = (current.detected - start.detected) / frames
        base = baseline_rates.get(camera, 0.0)
        if collapsed(base, rate, drift):
            return (f"camera {camera}: detections collapsed to {rate:.2f} per frame from "
                    f"{base:.2f} with the previous model (under health.drift.collapse_ratio "
                    f"{drift.collapse_ratio:g})")
    return None
