"""OpenVINO backend: ONNX or IR on CPU, GPU, NPU or AUTO, with async requests and a cache."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from engines.base import Engine, InferResult, ModelInfo, settle
from engines.errors import BackendUnavailableError, EngineError, ModelLoadError
from engines.input_shapes import check_rows
from engines.input_size import EXPORT_HINT, rect_input_size
from engines.model_info import (
    class_names_from_metadata,
    describe_input,
    file_sha256,
    model_files,
    sidecar_metadata,
)
from engines.postprocess import FAMILIES, choose_family

try:
    import openvino as ov
    import openvino.opset13 as opset
except ImportError as exc:  # pragma: no cover - openvino is a hard dependency
    raise BackendUnavailableError(
        f"the OpenVINO runtime does not import ({exc}); install it with 'pip install openvino'"
    ) from exc

log = logging.getLogger(__name__)

PRECISIONS = {"bf16": "bf16", "f16": "f16", "f32": "f32"}
HINTS = {"throughput": "THROUGHPUT", "latency": "LATENCY"}
DTYPES = {"f32": "float32", "f16": "float16", "u8": "uint8"}


def rt_metadata(model: ov.Model) -> dict[str, str]:
    """ONNX metadata_props land in rt_info['framework']; Ultralytics IR uses 'model_info'."""
    found: dict[str, str] = {}
    for section in ("framework", "model_info"):
        if not model.has_rt_info([section]):
            continue
        for key in model.get_rt_info()[section]:
            found[str(key)] = model.get_rt_info([section, key]).astype(str)
    return found


def _input_geometry(
    model: ov.Model, metadata: dict[str, str], path: Path
) -> tuple[str, str, int, int, str]:
    """Input name, layout, height, width, dtype; imgsz metadata fills dynamic sizes."""
    if len(model.inputs) != 1:
        raise ModelLoadError(str(path), f"expected one image input, found {len(model.inputs)}")
    port = model.inputs[0]
    dims = [dim.get_length() if dim.is_static else -1 for dim in port.get_partial_shape()]
    layout, height, width = describe_input(dims, metadata, str(path))
    dtype = DTYPES.get(port.get_element_type().get_type_name(), "float32")
    return port.get_any_name(), layout, height, width, dtype


class RequestPool:
    """A compiled model's infer requests: callers start them, one Python thread collects
    the outputs, in start order, into each request's Future.

    Not AsyncInferQueue with a Python callback: that callback runs on OpenVINO's stream
    thread and needs the GIL, so while the pipeline, capture or MQTT threads hold it the
    stream waits instead of running the next request. No Python runs on OpenVINO's
    threads here, and `count` should be one more than the streams, so each stream finds
    a request queued while Python collects the last one (alternating in one process on
    the 2-core build box: 0.73-0.76 of the loop's bound before, 0.77-0.81 so;
    docs/benchmark.md). The collecting thread ends after IDLE_S with nothing running and
    starts again with the next request: an idle or forgotten engine holds no thread.
    """

    IDLE_S = 1.0

    def __init__(self, compiled: ov.CompiledModel, count: int, name: str) -> None:
        self._free: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(compiled.create_infer_request())
        self.count = count
        self._name = f"openvino-{name}"
        self._running: collections.deque[tuple[ov.InferRequest, Future[InferResult]]] = \
            collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._collecting: tuple[ov.InferRequest, Future[InferResult]] | None = None
        self._closing = False

    def start(self, tensor: np.ndarray, future: Future[InferResult]) -> None:
        """Start inference of `tensor` (copied); blocks while every request is busy."""
        request = self._free.get()
        try:
            request.start_async({0: tensor}, share_inputs=False)
        except BaseException:
            self._free.put(request)
            raise
        with self._lock:
            self._running.append((request, future))
            if self._thread is None:
                thread = threading.Thread(target=self._collect, name=self._name, daemon=True)
                try:
                    thread.start()
                except BaseException:  # no thread to collect it ("can't start new thread")
                    self._running.pop()
                    started = False
                else:
                    self._thread, started = thread, True
            else:
                started = True
            self._ready.notify()
        if not started:  # let it finish before the request is used again, then say why
            request.wait()
            self._free.put(request)
            raise EngineError("cannot start the thread that collects inference results")

    def _collect(self) -> None:
        while True:
            with self._lock:
                self._ready.wait_for(lambda: self._running or self._closing, self.IDLE_S)
                if not self._running:  # idle, or closing with nothing left
                    self._thread = None
                    return
                request, future = self._collecting = self._running.popleft()
            try:
                request.wait()  # without the GIL
                if not future.done():  # a cancelled frame's outputs are not copied
                    settle(future, InferResult([t.data.copy() for t in request.output_tensors],
                                               float(request.latency)))
            except Exception as exc:  # surfaced to the waiter, not lost (a cancel: ignored)
                settle(future, error=exc)
            finally:
                with self._lock:
                    self._collecting = None
                self._free.put(request)

    def close(self, timeout: float = 30.0) -> bool:
        """Wait until the requests started so far have finished and their futures settled
        (the caller stops starting new ones first); False if that took over `timeout`.

        Requests whose futures were cancelled (a pipeline that stopped waiting for them)
        are cancelled in OpenVINO first: a queued one never runs and a running one stops
        between layers, so a stop with a slow model does not wait for abandoned frames.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            self._ready.notify()
            started = [*self._running, *([self._collecting] if self._collecting else [])]
        for request, future in started:
            if future.cancelled():  # nobody waits for it: a queued one never runs
                with contextlib.suppress(RuntimeError):
                    request.cancel()
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return True
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False


class OpenVinoEngine(Engine):
    """One compiled model; `submit` starts requests of a RequestPool so they overlap."""

    backend = "openvino"

    def __init__(
        self,
        model_path: Path,
        *,
        family: str = "auto",
        class_names: tuple[str, ...] | None = None,
        name: str | None = None,
        device: str = "CPU",
        precision: str = "auto",
        performance_hint: str = "throughput",
        num_requests: int = 0,
        cache_dir: Path | None = None,
        host_convert: bool = False,
        max_batch: int = 1,
    ) -> None:
        files = model_files(Path(model_path))
        path = files[0]
        core = ov.Core()
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            detail = _first_line(exc, "unknown error")
            cause = f"not a readable ONNX or OpenVINO IR model, truncated or corrupt? ({detail})"
            raise ModelLoadError(str(path), cause) from exc

        metadata = {**sidecar_metadata(path), **rt_metadata(model)}
        input_name, layout, height, width, dtype = _input_geometry(model, metadata, path)
        dims = model.inputs[0].get_partial_shape()
        self._dynamic_hw = any(not dims[i].is_static for i in (
            (2, 3) if layout == "NCHW" else (1, 2)))
        if dims.is_dynamic:  # a dynamic batch becomes 1
            shape = [1, 3, height, width] if layout == "NCHW" else [1, height, width, 3]
            model.reshape({0: shape})
        output_shapes = tuple(tuple(out.get_shape()) for out in model.outputs)
        if max_batch > 1:  # 1..max_batch frames per request (engines/batching.py)
            model = _with_batch(model, max_batch, str(path))
        family = choose_family(
            family, metadata, output_shapes=output_shapes, input_height=height,
            input_width=width, model_path=str(path),
        )
        self.input = FAMILIES[family].input_spec(input_name, height, width, layout, dtype)
        self._model_input, self._model_layout = self.input, layout
        self.info = ModelInfo(
            path=str(path),
            name=name or path.stem,
            sha256=file_sha256(*files),
            family=family,
            class_names=class_names or class_names_from_metadata(metadata, str(path)),
            output_shapes=output_shapes,
            metadata=metadata,
        )
        config: dict[str, object] = {"PERFORMANCE_HINT": HINTS[performance_hint]}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
        if num_requests:
            config["PERFORMANCE_HINT_NUM_REQUESTS"] = num_requests
        self._core, self._path, self._settings = core, path, (device, config, host_convert)
        self._flexibility: tuple[str | None] | None = None
        self._compile(model, num_requests)

    def _compile(self, model: ov.Model, num_requests: int) -> None:
        """Compile `model` (shaped like self.input) and open its request queue."""
        device, config, host_convert = self._settings
        path = self._path
        if not host_convert and self.input.layout == "NCHW" and self.input.dtype == "float32":
            model = self._convert_in_model(model)
        started = time.perf_counter()
        try:
            self.compiled = self._core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise ModelLoadError(
                str(path), f"does not compile on {device}: {_first_line(exc, 'unknown error')}"
            ) from exc
        self.device = ",".join(self.compiled.get_property("EXECUTION_DEVICES")) or device
        optimal = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        requests = num_requests or optimal + 1  # one queued per stream: see RequestPool
        self._requests = RequestPool(self.compiled, requests, path.stem)
        self._lock = threading.Lock()
        self._closed = False
        log.info(
            "model %s (%s, %dx%d) compiled on %s in %.0f ms, %d requests",
            path.name, self.info.family, self.input.width, self.input.height,
            self.device, (time.perf_counter() - started) * 1000, requests,
        )

    def _reshaped_model(self, height: int, width: int) -> ov.Model:
        """The model file read again and reshaped; ModelLoadError when its graph refuses."""
        model = self._core.read_model(str(self._path))
        layout = "NHWC" if self._model_layout == "NHWC" else "NCHW"
        shape = [1, 3, height, width] if layout == "NCHW" else [1, height, width, 3]
        try:
            model.reshape({0: shape})
        except RuntimeError as exc:
            detail = _first_line(exc, "unknown error")
            log.debug("reshape of %s to %dx%d failed: %s", self._path, width, height, detail)
            raise ModelLoadError(str(self._path), f"its graph does not reshape to {width}x"
                                 f"{height} (a size is fixed inside it: {detail[:100]})") from exc
        output_shapes = [tuple(out.get_partial_shape().get_min_shape()) for out in model.outputs]
        why = check_rows(self.info.family, output_shapes, height, width)
        if why:
            raise ModelLoadError(str(self._path), why)
        return model

    def input_flexibility(self) -> str | None:
        """None for dynamic H/W, or a static graph that reshapes (YOLOX); else why not.

        A static model is tried once on a 16:9 shape (read and reshape, no compile).
        """
        if self._dynamic_hw:
            return None
        if self._flexibility is None:
            side = max(self.input.height, self.input.width)
            try:
                self._reshaped_model(*rect_input_size(16, 9, side, side))
            except ModelLoadError as exc:
                self._flexibility = (f"the model's input is fixed at {self.input.width}x"
                                     f"{self.input.height} and {exc.cause}; {EXPORT_HINT}",)
            else:
                self._flexibility = (None,)
        return self._flexibility[0]

    def reshaped(self, height: int, width: int) -> OpenVinoEngine:
        """The same model compiled for a (height, width) input, same device and settings."""
        model = self._reshaped_model(height, width)
        child = object.__new__(OpenVinoEngine)
        child.input = dataclasses.replace(self._model_input, height=height, width=width)
        child.info = dataclasses.replace(self.info, output_shapes=tuple(
            tuple(out.get_shape()) for out in model.outputs))
        child._core, child._path, child._settings = self._core, self._path, self._settings
        child._model_input, child._model_layout = self._model_input, self._model_layout
        child._dynamic_hw, child._flexibility = self._dynamic_hw, (None,)
        child._compile(model, self._requests.count)
        return child

    def _convert_in_model(self, model: ov.Model) -> ov.Model:
        """Feed uint8 BGR NHWC and let OpenVINO do layout, dtype, scale and colour.

        The host then only resizes and pads (no float conversion): on a 2-core CPU this
        made the whole loop faster, see docs/backends.md. Resize stays on the host.
        """
        spec = self.input
        ppp = ov.preprocess.PrePostProcessor(model)
        tensor = ppp.input().tensor()
        tensor.set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        tensor.set_color_format(ov.preprocess.ColorFormat.BGR)
        steps = ppp.input().preprocess()
        steps.convert_element_type(ov.Type.f32)
        if spec.color == "RGB":
            steps.convert_color(ov.preprocess.ColorFormat.RGB)
        if spec.scale != 1.0:
            steps.scale(1.0 / spec.scale)
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        self.input = dataclasses.replace(spec, layout="NHWC", color="BGR", scale=1.0, dtype="uint8")
        return ppp.build()

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        future: Future[InferResult] = Future()
        with self._lock:
            if self._closed:
                raise EngineError("engine is closed")
            self._requests.start(tensor, future)
        return future

    @property
    def parallelism(self) -> int:
        return self._requests.count

    def raw_throughput(self, seconds: float) -> float:
        """The bare AsyncInferQueue on one fixed random input: OpenVINO's own ceiling."""
        bare = ov.AsyncInferQueue(self.compiled, self._requests.count)
        tensor = np.random.default_rng(0).random(self.input.shape).astype(self.input.dtype)
        bare.start_async({0: tensor}, share_inputs=True)  # warm-up
        bare.wait_all()
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            bare.start_async({0: tensor}, share_inputs=True)
            count += 1
        bare.wait_all()
        return count / (time.perf_counter() - started)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.input_shapes is not None and self.input_shapes.base is self:
            self.input_shapes.close()
        if not self._requests.close():  # in flight finish; their errors went to their futures
            log.warning("closing %s: requests still running after 30 s", self.info.path)


def _with_batch(model: ov.Model, max_batch: int, path: str) -> ov.Model:
    """The model reshaped to a batch of 1..max_batch; ModelLoadError when it cannot be.

    Exports that wrote batch 1 into their Reshape targets (YOLOX's [1, 85, -1]) get a 0
    there instead (OpenVINO's special_zero: copy the input's batch), so a batch of N
    stays N frames instead of folding into one; engines/batching.py checks the result.
    """
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Reshape":
            _copy_batch_in_reshape(op)
    shape = model.inputs[0].get_partial_shape()
    shape[0] = ov.Dimension(1, max_batch)
    try:
        model.reshape({0: shape})
    except RuntimeError as exc:
        raise ModelLoadError(path, f"cannot take a batch of up to {max_batch} frames "
                             f"({_first_line(exc, 'reshape failed')}); set backend.batch: "
                             "null") from exc
    return model


def _copy_batch_in_reshape(op: ov.Node) -> None:
    """A Reshape of a (1, ...) tensor to a constant (1, ...) target: target[0] -> 0."""
    data, target = op.input_value(0), op.input_value(1).get_node()
    shape = data.get_partial_shape()
    if (target.get_type_name() != "Constant" or data.get_node().get_type_name() == "Constant"
            or shape.rank.is_dynamic or shape.rank.get_length() < 2
            or not shape[0].is_static or shape[0].get_length() != 1):
        return
    values = target.get_vector()
    if len(values) < 2 or values[0] != 1:
        return
    values = values.astype(np.int64)
    values[0] = 0
    op.input(1).replace_source_output(opset.constant(values).output(0))
    op.set_special_zero(True)


def _first_line(exc: BaseException, fallback: str) -> str:
    """OpenVINO errors carry a C++ trace; the first meaningful line is what a user needs."""
    for raw in str(exc).splitlines():
        line = raw.strip()
        if line and not line.startswith(("Exception from", "Check '", "FrontEnd API failed")):
            return line
    return fallback
