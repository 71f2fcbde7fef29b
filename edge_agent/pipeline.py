"""Per-camera inference loop: frame -> preprocess -> engine -> decode -> publish.

Each camera's worker keeps up to `depth` inferences in flight and publishes results
in frame order, so decode (capture thread), inference (engine threads) and
post-processing (this thread) overlap.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge_agent.capture import Camera, Frame
from edge_agent.drift import DriftWatch
from edge_agent.payload import detections_payload
from engines.base import Engine, InferResult
from engines.decoders import DecodeOptions, postprocess
from engines.preprocess import Letterbox, prepare

log = logging.getLogger(__name__)

STAGES = ("decode", "preprocess", "infer", "postprocess", "publish")

LATENCY_WINDOW = 1024
"""Frames whose latencies feed the health percentiles (about 40 s at 25 fps)."""


class DetectionSink(Protocol):
    """Where payloads go (the MQTT publisher); returns False when it had to drop one."""

    def publish_detections(self, camera_id: str, payload: bytes) -> bool: ...


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


@dataclass
class _InFlight:
    frame: Frame
    letterbox: Letterbox
    future: Future[InferResult]
    preprocess_ms: float


class CameraPipeline:
    """Runs one camera's frames through the shared engine and publishes every result."""

    def __init__(
        self,
        camera: Camera,
        engine: Engine,
        sink: DetectionSink,
        options: DecodeOptions,
        depth: int | None = None,
    ) -> None:
        self.camera = camera
        self.engine = engine
        self.sink = sink
        self.options = options
        # One more than the engine runs at once, so a prepared frame waits for each
        # request that frees up and the device never idles while we post-process.
        self.depth = max(1, depth or engine.parallelism + 1)
        self.times = StageTimes()
        self.published = 0
        self.not_delivered = 0
        self.last_error: str | None = None
        self.latency = LatencyRecorder()
        self.in_flight = 0
        """Frames submitted to the engine and not yet published."""
        self.drift: DriftWatch | None = None
        """Set by the health monitor when drift watch is on."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"pipeline-{camera.id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the frames already captured and in flight are published."""
        self.camera.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            log.warning("camera %s: pipeline did not drain within %.0f s", self.camera.id, timeout)
            self._thread.join(2.0)
        log.info(
            "camera %s: %d frames published, %d not delivered, %d dropped at capture",
            self.camera.id, self.published, self.not_delivered, self.camera.frames.dropped,
        )

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        inflight: collections.deque[_InFlight] = collections.deque()
        frames = self.camera.frames
        while not self._stop.is_set():
            while inflight and inflight[0].future.done():
                self._finish(inflight.popleft())
            if len(inflight) >= self.depth:
                self._finish(inflight.popleft())
                continue
            frame = frames.get(timeout=0.0 if inflight else 0.1)
            if frame is not None:
                inflight.append(self._submit(frame))
            elif inflight:
                self._finish(inflight.popleft())
            elif frames.closed:
                break
            self.in_flight = len(inflight)
        self.in_flight = 0
        for item in inflight:
            item.future.cancel()

    def _submit(self, frame: Frame) -> _InFlight:
        started = time.perf_counter()
        tensor, letterbox = prepare(frame.image, self.engine.input)
        preprocess_ms = (time.perf_counter() - started) * 1000
        return _InFlight(frame, letterbox, self.engine.submit(tensor), preprocess_ms)

    def _finish(self, item: _InFlight) -> None:
        try:
            result = item.future.result()
        except Exception as exc:  # an engine failure loses this frame, not the loop
            self.last_error = f"inference failed: {exc}"
            log.error("camera %s frame %d: %s", self.camera.id, item.frame.sequence, exc)
            return
        frame = item.frame
        height, width = frame.image.shape[:2]
        started = time.perf_counter()
        try:
            detections = postprocess(
                self.engine.info.family, result.outputs, self.engine.input, self.options,
                item.letterbox, width, height,
            )
        except ValueError as exc:  # outputs that do not fit the decoder: say so, keep going
            self.last_error = f"cannot decode model output: {exc}"
            log.error("camera %s frame %d: %s", self.camera.id, frame.sequence, self.last_error)
            return
        payload = detections_payload(
            camera_id=frame.camera_id,
            sequence=frame.sequence,
            captured_at=frame.captured_at,
            frame_width=width,
            frame_height=height,
            model=self.engine.info,
            backend=self.engine.backend,
            device=self.engine.device,
            inference_ms=result.latency_ms,
            detections=detections,
        )
        decoded = time.perf_counter()
        if self.sink.publish_detections(frame.camera_id, payload):
            self.published += 1
        else:
            self.not_delivered += 1
        published_at = time.time()
        totals = self.times.totals
        totals["decode"] += frame.decode_ms
        totals["preprocess"] += item.preprocess_ms
        totals["infer"] += result.latency_ms
        totals["postprocess"] += (decoded - started) * 1000
        totals["publish"] += (time.perf_counter() - decoded) * 1000
        self.times.frames += 1
        # After the stage totals, so drift sampling is not billed to "publish".
        self.latency.add(result.latency_ms, (published_at - frame.captured_at) * 1000)
        if self.drift is not None:
            self.drift.offer(frame.image, detections)
