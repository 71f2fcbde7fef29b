"""Per-camera inference loop: frame -> detector (engines.detector) -> publish.

Each camera's worker keeps up to `depth` frames in flight and publishes results in
frame order, so video decoding (capture thread), inference (engine threads) and
postprocessing (this thread) overlap.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_agent.camera_filter import CameraFilter
from edge_agent.capture.camera import Camera, Frame
from edge_agent.capture.state import CameraState
from edge_agent.config.model import CameraConfig
from edge_agent.gate import FrameGate
from edge_agent.health.drift import DriftWatch
from edge_agent.health.snapshot import EventsHealth
from edge_agent.models.handover import Handover, RecentFrames
from edge_agent.pipeline_stats import (
    LatencyRecorder,
    PipelineStats,
    StageTimes,
)
from edge_agent.publish.payload import detections_payload
from edge_agent.supervision import GuardedWorker, is_broken
from edge_agent.workers import InjectedFaultError, Worker, WorkerState
from engines.base import Detections, Engine
from engines.detector import Detected, Detector, PendingDetection
from engines.errors import PostprocessError
from engines.postprocess import DetectionFilter

if TYPE_CHECKING:
    from edge_agent.events.types import ExitReason

log = logging.getLogger(__name__)

FRAME_ERROR_LOG_S = 10.0
"""At most one per-frame error line per camera this often; the count says what was held."""
FAILED_IN_A_ROW = 50
"""Frames failing one after another before the pipeline counts as broken (a crash)."""


class PipelineBrokenError(RuntimeError):
    """Every recent frame failed: restarting the worker is the next thing to try."""


class DetectionSink(Protocol):
    """Where payloads go (the MQTT publisher); returns False when it had to drop one."""

    def publish_detections(self, camera_id: str, payload: bytes) -> bool: ...


class FrameOutcome(Protocol):
    publish_detections: bool
    track_ids: np.ndarray | None


class FrameDelivery(Protocol):
    """Events of one camera (edge_agent.delivery.camera.CameraDelivery): called once per
    processed frame; says whether the detections message goes out, with which track ids."""

    def on_frame(
        self, frame: Frame, detections: Detections, detected: Detected
    ) -> FrameOutcome: ...

    def stats(self) -> EventsHealth | None: ...

    def reconfigure(self, camera: CameraConfig) -> None: ...

    def relabel(self, labels: Sequence[str]) -> None: ...

    def close(self, reason: ExitReason, *, removed: bool) -> None: ...

    def flush_retained(self) -> None: ...

    def unsent_retained(self) -> dict[str, bytes]: ...

    def adopt_retained(self, pending: dict[str, bytes]) -> None: ...


@dataclass
class _InFlight:
    frame: Frame
    pending: PendingDetection
    generation: int = 0
    """Which engine took the frame (Handover.generation): a swap waits for older ones."""


class CameraPipeline:
    """Runs one camera's frames through the shared engine and publishes every result."""

    def __init__(
        self,
        camera: Camera,
        engine: Engine,
        sink: DetectionSink,
        options: DetectionFilter,
        depth: int | None = None,
    ) -> None:
        self.camera = camera
        self.engine = engine
        self.detector = Detector(engine, options)
        self.sink = sink
        self.options = options
        # One more than the engine runs at once, so a prepared frame waits for each
        # request that frees up and the device never idles while we post-process.
        self.depth = max(1, depth or self.detector.parallelism + 1)
        self.times = StageTimes()
        self.published = 0
        self.not_delivered = 0
        self.last_error: str | None = None
        self.latency = LatencyRecorder()
        self.in_flight = 0
        """Frames submitted to the engine and not yet published."""
        self.drift: DriftWatch | None = None
        """Set by the health monitor when drift watch is on."""
        self.delivery: FrameDelivery | None = None
        """Set by the agent: tracking, zones, lines, events (edge_agent.delivery)."""
        self.latest: tuple[Frame, Detections] | None = None
        """The newest published frame and its detections (references; the snapshot command)."""
        self.frames_failed = 0
        """Frames lost to a per-frame fault (inference, postprocessing, payload); loop goes on."""
        self.nonfinite_values = 0
        """NaN/inf values seen in model outputs; the boxes they touch are dropped."""
        self._failed_in_a_row = 0
        self._failure_logged_at = float("-inf")
        self._failures_logged = 0
        self.output_problem: str | None = None
        """Set while the model's whole output is NaN/inf (degrades health); None when fine."""
        self.rules = camera.config
        """The camera settings the gate and filter follow (a reload's retune replaces them)."""
        self.gate = FrameGate(camera.config.detect)
        self.camera_filter = CameraFilter(
            camera.config.detect, camera.config.masks, engine.info.class_names
        )
        self.detected = 0
        """Detections published so far (model probation compares rates per frame)."""
        self.recent = RecentFrames()
        """A few recent frames with their detection counts, to validate a new model on."""
        self.handover = Handover()
        self._stop = threading.Event()
        self._worker = GuardedWorker(f"pipeline-{camera.id}", self._run, on_crash=self._crashed)

    def start(self) -> None:
        self._worker.start()

    def workers(self) -> list[Worker]:
        """This camera's threads: inference loop and capture."""
        return [self._worker, *self.camera.workers()]

    def stats(self) -> PipelineStats:
        """What health may read of this camera and its pipeline, at this moment."""
        inference = self.latency.percentiles("inference_ms", (50, 95, 99))
        end_to_end = self.latency.percentiles("end_to_end_ms", (50, 95))
        return PipelineStats(
            camera=self.camera.stats(), state=self.state, frames_processed=self.times.frames,
            published=self.published, not_delivered=self.not_delivered,
            processing_error=self.last_error, frames_failed=self.frames_failed,
            nonfinite_values=self.nonfinite_values, output_problem=self.output_problem,
            in_flight=self.in_flight,
            inference_ms=None if inference is None else (inference[0], inference[1], inference[2]),
            end_to_end_ms=None if end_to_end is None else (end_to_end[0], end_to_end[1]),
            drift=self.drift.report() if self.drift is not None else None,
            gate=self.gate.stats(), ignored=self.camera_filter.stats(),
            events=self.delivery.stats() if self.delivery is not None else None,
        )

    def retune(self, config: CameraConfig) -> None:
        """Apply a reloaded camera's `detect` and `masks` in place, between two frames:
        capture and frames in flight go on; counts carry over."""
        self.rules = config
        self.gate = FrameGate(config.detect, counts_from=self.gate)
        self.camera_filter = CameraFilter(config.detect, config.masks,
                                          self.engine.info.class_names, self.camera_filter)

    @property
    def frames_handled(self) -> int:
        """Frames inferred or skipped by the gate: what the watchdog counts as progress
        (a still scene with motion gating infers little, and is not hung)."""
        return self.times.frames + self.gate.skipped_rate + self.gate.skipped_motion
    def use_engine(self, engine: Engine, options: DetectionFilter) -> threading.Event:
        """Switch to `engine` between two frames (edge_agent.models); the event is set when
        no frame of the engine before is in flight any more."""
        drained = self.handover.offer(engine, options)
        if not self._worker.is_alive():  # no loop to take it: switch here
            self._take_engine([])
        return drained

    def _take_engine(self, inflight: collections.deque[_InFlight] | list[_InFlight]) -> None:
        taken = self.handover.take()
        if taken is not None:
            self.engine, self.options = taken
            self.detector = Detector(self.engine, self.options)
            self.recent.clear()
            # Class names may differ between models: the camera's rules follow the new ones.
            self.camera_filter = CameraFilter(self.rules.detect, self.rules.masks,
                                              self.engine.info.class_names, self.camera_filter)
            if self.delivery is not None:  # events, occupancy, snapshot topics too
                self.delivery.relabel(self.engine.info.class_names)
            if self.drift is not None:  # and the drift watch's class rates
                self.drift.relabel(self.engine.info.class_names)
        self.handover.settle(inflight[0].generation if inflight else None)

    def end_visits(self, reason: ExitReason, *, removed: bool = False) -> None:
        """After `stop`: every open visit ends with an exit (`reason`), occupancy goes to 0
        (a removed camera's topics are deleted); never raises, so a stop goes on."""
        try:
            if self.delivery is not None:
                self.delivery.close(reason, removed=removed)
        except Exception:
            log.exception("camera %s: the exits of its visits were not sent", self.camera.id)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the frames already captured and in flight are published."""
        self.camera.stop()
        if self._worker.state is WorkerState.BACKOFF:  # crashed: no restart just to stop
            self._worker.stop()
        self._worker.join(timeout)
        if self._worker.is_alive():
            self._stop.set()
            log.warning("camera %s: pipeline did not drain within %.0f s", self.camera.id, timeout)
        self._worker.stop()
        self._worker.join(2.0)
        log.info(
            "camera %s: %d frames published, %d not delivered, %d dropped at capture; "
            "%d processed", self.camera.id, self.published, self.not_delivered,
            self.camera.frames.dropped, self.times.frames,
        )

    @property
    def finished(self) -> bool:
        """The camera's file played to its end and every frame was handled."""
        return self.camera.ended and self._worker.state is WorkerState.FINISHED

    @property
    def broken(self) -> bool:
        """A worker of this camera crash-looped and was given up: it will not recover."""
        return any(is_broken(worker) for worker in self.workers())

    @property
    def state(self) -> CameraState:
        """The camera's published state: FAILED or BACKOFF when a worker is, else capture's."""
        workers = self.workers()
        if any(is_broken(worker) for worker in workers):
            return CameraState.FAILED
        if any(worker.state is WorkerState.BACKOFF for worker in workers):
            return CameraState.BACKOFF
        return self.camera.state

    def _crashed(self, worker: Worker, _exc: BaseException) -> None:
        given_up = getattr(worker, "given_up", False)
        self.camera.last_error = (
            f"camera {self.camera.id}: pipeline worker crashed"
            f"{', given up' if given_up else ', restarting'}: {worker.last_error}"
        )
        if given_up:  # nobody reads the frames any more: stop capturing them
            self.camera.request_stop()

    def _run(self) -> None:
        inflight: collections.deque[_InFlight] = collections.deque()
        frames = self.camera.frames
        while not self._stop.is_set():
            if self.handover.waiting:  # a new model: taken here, between two frames
                self._take_engine(inflight)
            while inflight and inflight[0].pending.done():
                self._finish(inflight.popleft())
            if len(inflight) >= self.depth:
                self._finish(inflight.popleft())
                continue
            frame = frames.get(timeout=0.0 if inflight else 0.1)
            if frame is not None and not self._admit(frame):
                continue  # counted by the gate; never published as "nothing there"
            if frame is not None:
                try:
                    inflight.append(self._submit(frame))
                except Exception as exc:  # this frame is lost, not the loop
                    self._frame_failed(frame, "cannot submit the frame to the engine", exc)
            elif inflight:
                self._finish(inflight.popleft())
            elif frames.closed:
                break
            self.in_flight = len(inflight)
        self.in_flight = 0
        for item in inflight:
            item.pending.cancel()

    def _admit(self, frame: Frame) -> bool:
        """Whether the frame gate lets this frame through to inference."""
        try:
            return self.gate.admit(frame.image, frame.timeline)
        except Exception as exc:  # the gate is an optimisation: infer rather than lose it
            self._frame_failed(frame, "frame gate failed", exc)
            return True

    def _submit(self, frame: Frame) -> _InFlight:
        return _InFlight(frame, self.detector.submit(frame.image, self.options),
                         self.handover.generation)

    def _frame_failed(self, frame: Frame, what: str, exc: Exception) -> None:
        """One bad frame is counted and logged (one line per FRAME_ERROR_LOG_S); the loop
        goes on.

        FAILED_IN_A_ROW failures with no good frame between mean the pipeline, not the
        frames, is broken (an engine that cannot run): the worker crashes, is restarted,
        and is given up if that keeps happening.
        """
        if isinstance(exc, InjectedFaultError):
            raise exc  # it stands for a bug that kills the thread: never contained per frame
        self.frames_failed += 1
        self._failed_in_a_row += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._failure_logged_at >= FRAME_ERROR_LOG_S:  # error texts vary per frame
            held = self.frames_failed - self._failures_logged - 1
            log.error(
                "camera %s frame %d: %s%s", self.camera.id, frame.sequence, self.last_error,
                f" ({held} more failed frames not logged)" if held else "",
            )
            self._failure_logged_at, self._failures_logged = now, self.frames_failed
        if self._failed_in_a_row >= FAILED_IN_A_ROW:
            self._failed_in_a_row = 0
            raise PipelineBrokenError(
                f"{FAILED_IN_A_ROW} frames in a row failed, last: {self.last_error}"
            ) from exc

    def _finish(self, item: _InFlight) -> None:
        frame = item.frame
        try:
            detected = item.pending.result()
        except PostprocessError as exc:  # an output that makes no boxes loses this frame
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            self._frame_failed(frame, "cannot turn the model output into a message", cause)
            return
        except Exception as exc:  # an engine failure loses this frame, not the loop
            self._frame_failed(frame, "inference failed", exc)
            return
        try:
            detections = self._publish(frame, detected)
        except Exception as exc:  # a bad output or payload loses this frame, not the loop
            self._frame_failed(frame, "cannot turn the model output into a message", exc)
            return
        self._failed_in_a_row = 0
        if self.drift is not None and detections is not None:
            try:
                self.drift.offer(frame.image, detections)
            except Exception as exc:  # drift is an extra; the frame was published
                self._frame_failed(frame, "drift watch failed", exc)

    def _note_outputs(self, detected: Detected) -> bool:
        """Count NaN/inf output values and keep the output problem (degraded); False when
        nothing finite came out, so nothing is published."""
        self.nonfinite_values += detected.nonfinite
        if detected.output_problem is not None:
            if self.output_problem is None:
                log.error("camera %s: %s", self.camera.id, detected.output_problem)
            self.output_problem = detected.output_problem
            return detected.detections is not None  # clipped logits are still published
        if self.output_problem is not None:
            log.info("camera %s: the model output is finite again", self.camera.id)
            self.output_problem = None
        return True

    def _publish(self, frame: Frame, detected: Detected) -> Detections | None:
        """Publish one frame's detections; None when its output held nothing finite.

        Such a frame is counted as processed but not published: an empty detection list
        would tell consumers "nothing there" when the model saw nothing at all.
        """
        started = time.perf_counter()
        detections = detected.detections if self._note_outputs(detected) else None
        if detections is not None:
            detections = self.camera_filter.filter(
                detections, detected.frame_width, detected.frame_height)
            self._send(frame, detected, detections)
            self.detected += len(detections)
            self.recent.offer(frame.sequence, frame.image, len(detections))
            self.latest = (frame, detections)
        published_at = time.monotonic()
        totals = self.times.totals
        totals["decode"] += frame.decode_ms
        totals["preprocess"] += detected.preprocess_ms
        totals["infer"] += detected.infer_ms
        totals["postprocess"] += detected.postprocess_ms
        totals["publish"] += (time.perf_counter() - started) * 1000
        self.times.frames += 1
        # Monotonic on both ends: a wall-clock step (NTP at boot) cannot skew latency.
        self.latency.add(detected.infer_ms, (published_at - frame.captured_mono) * 1000)
        return detections

    def _send(self, frame: Frame, detected: Detected, detections: Detections) -> None:
        track_ids = None
        if self.delivery is not None:
            outcome = self.delivery.on_frame(frame, detections, detected)
            if not outcome.publish_detections:
                return
            track_ids = outcome.track_ids
        payload = detections_payload(
            camera_id=frame.camera_id,
            sequence=frame.sequence,
            captured_at=frame.captured_at,
            frame_width=detected.frame_width,
            frame_height=detected.frame_height,
            model=self.detector.info,
            backend=self.detector.backend,
            device=self.detector.device,
            inference_ms=detected.infer_ms,
            detections=detections,
            clock_synced=frame.clock_synced,
            track_ids=track_ids,
        )
        if self.sink.publish_detections(frame.camera_id, payload):
            self.published += 1
        else:
            self.not_delivered += 1
