"""What one camera's pipeline measures: stage times, the latency rings, and the
`PipelineStats` health reads (edge_agent.pipeline keeps them up to date)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.capture.state import CameraState, CameraStats
from edge_agent.health.drift import DriftReport

if TYPE_CHECKING:
    from edge_agent.camera_filter import FilterStats
    from edge_agent.gate import GateStats
    from edge_agent.health.snapshot import EventsHealth

STAGES = ("decode", "preprocess", "infer", "postprocess", "publish")

LATENCY_WINDOW = 1024
"""Frames whose latencies feed the health percentiles (about 40 s at 25 fps)."""


@dataclass
class StageTimes:
    """Running totals of per-stage milliseconds, cheap enough to update every frame."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    frames: int = 0

    def mean_ms(self) -> dict[str, float]:
        count = max(self.frames, 1)
        return {stage: total / count for stage, total in self.totals.items()}


class LatencyRecorder:
    """The last LATENCY_WINDOW frames' inference and capture-to-publish times.

    Fixed numpy rings: one pipeline thread writes a slot per frame, the health thread
    copies them; a copy taken mid-write holds at most one value from the newer frame.
    """

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self.inference_ms = np.zeros(size, np.float32)
        self.end_to_end_ms = np.zeros(size, np.float32)
        self.count = 0

    def add(self, inference_ms: float, end_to_end_ms: float) -> None:
        slot = self.count % len(self.inference_ms)
        self.inference_ms[slot] = inference_ms
        self.end_to_end_ms[slot] = end_to_end_ms
        self.count += 1

    def percentiles(self, which: str, quantiles: tuple[float, ...]) -> list[float] | None:
        """Percentiles (0-100) of `inference_ms` or `end_to_end_ms`; None before any frame."""
        filled = min(self.count, len(self.inference_ms))
        if not filled:
            return None
        values = getattr(self, which)[:filled].copy()
        return [float(v) for v in np.percentile(values, quantiles)]


@dataclass(frozen=True)
class PipelineStats:
    """One camera's pipeline at one moment (`CameraPipeline.stats()`), for health."""

    camera: CameraStats
    state: CameraState
    """The camera's state including its workers' (FAILED when one is dead)."""
    frames_processed: int
    published: int
    not_delivered: int
    processing_error: str | None
    frames_failed: int
    nonfinite_values: int
    output_problem: str | None
    in_flight: int
    inference_ms: tuple[float, float, float] | None
    """p50, p95, p99 over the last LATENCY_WINDOW frames; None before the first."""
    end_to_end_ms: tuple[float, float] | None
    """p50, p95 of capture to publish, same frames; None before the first."""
    drift: DriftReport | None
    """None when drift watch is off."""
    gate: GateStats | None = None
    """Frames not inferred (detect.fps, motion gate); see edge_agent.gate."""
    ignored: FilterStats | None = None
    """Detections removed by detect.min_score, detect.min_area and masks."""
    events: EventsHealth | None = None
    """None when the camera does not track (no zones, lines or on_change)."""
