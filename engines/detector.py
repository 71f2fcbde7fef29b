"""The engine that detects: a camera frame in, detections in that frame's pixels out.

Letterbox (engines/preprocess.py), infer (the backend's Engine), postprocess and filter
(engines/postprocess.py), un-letterbox: callers ask for the result, not the steps. The
pipeline, `snapshot`, `bench` and `doctor` use this and nothing else from engines/
(apart from types and errors).
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from engines.base import Detections, Engine, InferResult, InputSpec, ModelInfo
from engines.errors import ModelLoadError, PostprocessError
from engines.postprocess import (
    FAMILY_OUTPUTS,
    DetectionFilter,
    NonFiniteOutputError,
    count_nonfinite,
    postprocess,
)
from engines.preprocess import Letterbox, prepare


@dataclass(frozen=True)
class Detected:
    """One frame's result and what each stage cost.

    `detections` is None when no value the model produced was finite, or every candidate
    overflowed in postprocessing (`output_problem` says so): an empty list would claim
    "nothing there" when the model saw nothing. With scores clipped to 1 (a logits
    model) the detections are kept and `output_problem` still says why health degrades.
    """

    detections: Detections | None
    frame_width: int
    frame_height: int
    preprocess_ms: float
    infer_ms: float
    """The runtime's own latency for this request (it overlaps others in flight)."""
    postprocess_ms: float
    nonfinite: int = 0
    """NaN/inf values in the outputs, plus candidate boxes the postprocessing math made
    inf/NaN (finite but huge outputs); the boxes they touch are dropped."""
    output_problem: str | None = None


class PendingDetection:
    """A frame in flight. `result()` postprocesses on the thread that asks, never on the
    runtime's callback thread, and only once."""

    def __init__(
        self, detector: Detector, future: Future[InferResult], letterbox: Letterbox,
        *, size: tuple[int, int], preprocess_ms: float, detection_filter: DetectionFilter,
        spec: InputSpec | None = None,
    ) -> None:
        self._detector = detector
        self._spec = spec
        self._future = future
        self._letterbox = letterbox
        self._size = size
        self._preprocess_ms = preprocess_ms
        self._filter = detection_filter
        self._result: Detected | None = None

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        return self._future.cancel()

    def result(self, timeout: float | None = None) -> Detected:
        """The detections; the engine's own error if inference failed, PostprocessError
        (with the cause chained) if its output could not be turned into boxes."""
        if self._result is None:
            raw = self._future.result(timeout)
            self._result = self._detector.finish(
                raw, self._letterbox, self._size, preprocess_ms=self._preprocess_ms,
                detection_filter=self._filter, spec=self._spec,
            )
        return self._result


def check_model(engine: Engine) -> None:
    """One warm-up inference on a blank frame of the model's input size, postprocessed.

    A model whose outputs can never fit its family's postprocessing (wrong rank, a batch
    of 2, zero classes, a row count that does not match the input's grid, empty
    outputs) is refused here, at load, as a ModelLoadError saying what it outputs and
    what the family expects, instead of failing every frame in the camera's thread
    (a crash loop that systemd would restart into). Non-finite values on a blank frame
    are left to the per-frame checks.
    """
    info, spec = engine.info, engine.input
    blank = np.full((spec.height, spec.width, 3), spec.pad_value, np.uint8)
    tensor, letterbox = prepare(blank, spec)
    try:
        outputs = engine.infer(tensor).outputs
    except Exception as exc:
        raise ModelLoadError(info.path, f"a test inference on a blank frame failed: "
                             f"{type(exc).__name__}: {exc}") from exc
    shapes = [list(np.shape(out)) for out in outputs]
    expectation = FAMILY_OUTPUTS.get(info.family, "")
    empty = [shape for shape in shapes if 0 in shape or not shape]
    if not outputs or empty:
        raise ModelLoadError(info.path, f"it outputs {shapes}: empty or scalar outputs hold "
                             f"no detections; {info.family} expects {expectation}",
                             any_backend=True)
    try:
        postprocess(info.family, outputs, spec, DetectionFilter(), letterbox,
                    spec.width, spec.height)
    except Exception as exc:
        raise ModelLoadError(
            info.path,
            f"its output {shapes} does not fit {info.family} postprocessing ({exc}); "
            f"{info.family} expects {expectation} for a {spec.width}x{spec.height} input. "
            f"Check model.family, or re-export the model with batch 1 and its own imgsz "
            "(Ultralytics: model.export(format='onnx', imgsz=640, batch=1))",
            any_backend=True,
        ) from exc


class Detector:
    """One loaded engine and the filter to apply, seen as frame -> detections."""

    def __init__(self, engine: Engine, detection_filter: DetectionFilter | None = None) -> None:
        self.engine = engine
        self.filter = detection_filter or DetectionFilter()

    @property
    def info(self) -> ModelInfo:
        return self.engine.info

    @property
    def input(self) -> InputSpec:
        return self.engine.input

    @property
    def backend(self) -> str:
        return self.engine.backend

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def parallelism(self) -> int:
        """Frames the backend wants in flight at once."""
        return self.engine.parallelism

    def submit(
        self, frame: np.ndarray, detection_filter: DetectionFilter | None = None
    ) -> PendingDetection:
        """Letterbox an HxWx3 uint8 BGR frame and start inference on it.

        Blocks while the backend already has `parallelism` frames in flight. The input
        shape is the one the engine keeps for this frame size (engines.input_shapes:
        rectangular input; the first frame of a new shape waits for its compile).
        """
        size = (int(frame.shape[1]), int(frame.shape[0]))
        engine = self.engine.for_frame(*size)
        started = time.perf_counter()
        tensor, letterbox = prepare(frame, engine.input)
        preprocess_ms = (time.perf_counter() - started) * 1000
        future = engine.submit(tensor)
        return PendingDetection(self, future, letterbox, size=size, preprocess_ms=preprocess_ms,
                                detection_filter=detection_filter or self.filter,
                                spec=engine.input)

    def detect(
        self, frame: np.ndarray, detection_filter: DetectionFilter | None = None
    ) -> Detected:
        """One frame, synchronously (tools, tests); the loop uses `submit`."""
        return self.submit(frame, detection_filter).result()

    def finish(
        self, raw: InferResult, letterbox: Letterbox, size: tuple[int, int],
        *, preprocess_ms: float, detection_filter: DetectionFilter,
        spec: InputSpec | None = None,
    ) -> Detected:
        """Postprocess one inference's outputs into frame-pixel detections; `spec` is the
        input they came from (default: the engine's own)."""
        width, height = size
        started = time.perf_counter()
        try:
            nonfinite, problem = count_nonfinite(raw.outputs), None
        except NonFiniteOutputError as exc:
            nonfinite = sum(np.asarray(out).size for out in raw.outputs)
            problem = str(exc)
        try:
            found = None if problem else postprocess(
                self.engine.info.family, raw.outputs, spec or self.engine.input,
                detection_filter,
                letterbox, width, height,
            )
        except Exception as exc:
            raise PostprocessError(f"{type(exc).__name__}: {exc}") from exc
        if found is not None:
            nonfinite += found.nonfinite
            problem = self._decode_problem(found)
            if problem and found.nonfinite and not len(found):
                found = None  # nothing finite came out: "no detections" would be a lie
        return Detected(found, width, height, preprocess_ms, raw.latency_ms,
                        (time.perf_counter() - started) * 1000, nonfinite, problem)

    def _decode_problem(self, found: Detections) -> str | None:
        """What postprocessing found wrong with finite outputs, for health (degraded).

        Overflow: every candidate box became inf/NaN in the decode math (exp, obj * cls)
        although the outputs were finite. Logits: scores above 1 were clipped to 1 so no
        payload breaks the schema, but thresholds mean nothing on such a model.
        """
        family = self.engine.info.family
        if found.nonfinite and not len(found):
            return (f"every candidate box overflowed to inf/NaN in {family} postprocessing "
                    f"({found.nonfinite} boxes) although the outputs were finite: the model "
                    "outputs huge values (wrong export or precision); re-export it, or run it "
                    "at full precision (backend.precision: f32 / fp32)")
        if found.scores_clipped:
            return (f"scores outside 0..1 ({found.scores_clipped} clipped to 1): the model "
                    f"outputs logits, not probabilities; export {family} with its final "
                    "sigmoid (YOLOX: decode_in_inference; Ultralytics: model.export) or set "
                    "model.family to the family it really is")
        return None

    def raw_throughput(self, seconds: float) -> float:
        """Frames/s of the bare engine: the ceiling `bench` compares the loop with."""
        return self.engine.raw_throughput(seconds)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
