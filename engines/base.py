"""The one interface every inference backend implements, and the types it speaks."""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engines.errors import ModelLoadError

if TYPE_CHECKING:
    from engines.input_shapes import ShapedEngines


@dataclass(frozen=True)
class InputSpec:
    """What the model wants fed to it, so preprocessing happens once, on the host.

    `scale` multiplies 0-255 pixel values (1.0 for YOLOX, 1/255 for Ultralytics).
    `pad_align` is where letterbox padding goes: "center" (Ultralytics) or
    "topleft" (YOLOX).
    """

    name: str
    height: int
    width: int
    layout: str = "NCHW"  # or "NHWC"
    color: str = "BGR"  # or "RGB"
    scale: float = 1.0
    pad_value: int = 114
    pad_align: str = "center"
    dtype: str = "float32"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        if self.layout == "NHWC":
            return (1, self.height, self.width, 3)
        return (1, 3, self.height, self.width)


@dataclass(frozen=True)
class ModelInfo:
    """Facts read from the model file itself (never guessed from the sample)."""

    path: str
    name: str
    sha256: str
    family: str  # postprocessing family: yolox, ultralytics, end2end, yolov5, ssd
    class_names: tuple[str, ...]
    output_shapes: tuple[tuple[int, ...], ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Detections:
    """Detections of one frame as parallel arrays, boxes in the original frame's pixels."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int32
    nonfinite: int = 0
    """Candidate boxes dropped because postprocessing made their box or score inf/NaN
    from finite outputs (1e30 overflows in exp() or obj*cls)."""
    scores_clipped: int = 0
    """Scores above 1 that were clipped to 1: the model outputs logits, not probabilities."""

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, nonfinite: int = 0, scores_clipped: int = 0) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32),
            nonfinite, scores_clipped,
        )


@dataclass(frozen=True)
class InferResult:
    """Raw output arrays of one inference and how long the device took for it."""

    outputs: Sequence[np.ndarray]
    latency_ms: float


def settle(
    future: Future[InferResult], result: InferResult | None = None,
    error: BaseException | None = None,
) -> bool:
    """Complete a request's future from a runtime's thread, once; False if it was not.

    A waiter may cancel a request (a stopping pipeline does) while the runtime still
    runs it; the late result is then dropped here, never raised on the runtime's
    callback thread (OpenVINO re-raises callback errors from wait_all, so close() would
    fail too). Every backend's completion path goes through this.
    """
    if future.done():
        return False
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled between the check and the set
        return False
    return True


class Engine(abc.ABC):
    """A loaded, compiled model on one device.

    `submit` is the hot path: it queues one preprocessed input tensor and returns a
    Future of the raw output arrays, so video decoding, inference and postprocessing overlap.
    """

    backend: str = ""
    device: str = ""
    input: InputSpec
    info: ModelInfo

    @abc.abstractmethod
    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        """Start inference on one input tensor shaped like `self.input.shape`."""

    def infer(self, tensor: np.ndarray) -> InferResult:
        """Run one input synchronously (tools, tests); the loop uses `submit`."""
        return self.submit(tensor).result()

    def raw_throughput(self, seconds: float) -> float:
        """Frames/s of the bare engine on one fixed input, nothing else: the bench's ceiling.

        Every in-flight slot kept busy through `submit`; a backend with a faster bare path
        of its own (OpenVINO's AsyncInferQueue) overrides this.
        """
        self.infer(np.zeros(self.input.shape, dtype=self.input.dtype))  # warm-up
        count, wall = feed(self, seconds)
        return count / wall

    @property
    def parallelism(self) -> int:
        """How many submits may be in flight before the next one blocks."""
        return 1

    input_shapes: ShapedEngines | None = None
    """Set by the loader: the engines of this model per input shape (rectangular input)."""

    def input_flexibility(self) -> str | None:
        """None when `reshaped` can make this model run other input sizes, else why not."""
        return (f"the {self.backend} backend runs the model at its own input size "
                f"({self.input.width}x{self.input.height}); rectangular input needs "
                "backend openvino")

    def reshaped(self, height: int, width: int) -> Engine:
        """The same model compiled for a (height, width) input: a new Engine the caller
        closes. Raises ModelLoadError (or the runtime's error) where it cannot be done."""
        raise ModelLoadError(self.info.path, self.input_flexibility() or "cannot reshape")

    def for_frame(self, width: int, height: int, *, wait: bool = False) -> Engine:
        """The engine for a frame of this size: this one, or its reshaped sibling (`wait`:
        for its compile, as tools do; the loop goes on at the model's size meanwhile)."""
        shapes = self.input_shapes
        return self if shapes is None else shapes.engine_for(width, height, wait=wait)

    @abc.abstractmethod
    def close(self) -> None:
        """Wait for requests in flight and release the device."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def feed(engine: Engine, seconds: float, rate: float | None = None) -> tuple[int, float]:
    """(inferences, wall s) of one thread submitting one fixed random input for `seconds`
    (after the caller's warm-up): every in-flight slot kept busy (`rate` None), or paced
    at `rate` per second."""
    tensor = np.random.default_rng(0).random(engine.input.shape).astype(engine.input.dtype)
    pending: list[Future[InferResult]] = []
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        pending = [f for f in pending if not f.done()]
        pending.append(engine.submit(tensor))
        count += 1
        if rate:
            time.sleep(max(0.0, started + count / rate - time.perf_counter()))
    for future in pending:
        future.result()
    return count, time.perf_counter() - started
