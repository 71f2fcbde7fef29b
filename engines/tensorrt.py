"""TensorRT backend: ONNX built into a cached engine, or a prebuilt .engine/.plan, via pycuda.

TensorRT and pycuda are an optional extra: on a Jetson they come from JetPack, on x86
from NVIDIA's wheels (docs/tensorrt.md). Inputs are preprocessed on the host
(engines/preprocess.py) into the float32 tensor the engine's input wants; outputs come
back in the ONNX model's order and shapes, so engines.postprocess works unchanged. The
execution contexts that run the engine live in engines/tensorrt_runtime.py.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine, InferResult, ModelInfo
from engines.engine_cache import (
    PRECISIONS,
    CachedEngine,
    CacheKey,
    EngineCache,
    concrete_shape,
    fast_fp16_by_capability,
    onnx_metadata,
    resolve_precision,
    split_ultralytics_header,
)
from engines.errors import BackendUnavailableError, EngineError, ModelFileError, ModelLoadError
from engines.model_info import (
    class_names_from_metadata,
    file_sha256,
    input_layout,
    sidecar_metadata,
)
from engines.postprocess import FAMILIES, choose_family

# TensorRT and pycuda come through the runtime module: it raises BackendUnavailableError,
# saying what to install, where either does not import.
from engines.tensorrt_runtime import ContextPool, cuda, trt

log = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan")
SPEC_DTYPES = ("float32", "float16", "uint8")


class _Logger(trt.ILogger):  # type: ignore[misc]
    """TensorRT's messages go to our log; the last error explains a failed build."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.last_error = ""

    def log(self, severity: Any, msg: str) -> None:
        if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
            self.last_error = msg
            log.error("TensorRT: %s", msg)
        elif severity == trt.ILogger.WARNING:
            log.warning("TensorRT: %s", msg)
        else:
            log.debug("TensorRT: %s", msg)


def _cache_only_calibrator(cache: bytes) -> Any:
    """An INT8 calibrator that only replays the user's calibration cache.

    Made on demand: the calibrator classes are deprecated since TensorRT 10.1 and
    must not stop this module importing where they are gone.
    """

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Sequence[str]) -> None:
            return None  # no images: everything comes from the cache

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: bytes) -> None:
            return None

    return CacheCalibrator()


def _has_fast_fp16(builder: Any, capability: tuple[int, int]) -> bool:
    """Ask TensorRT; where the query is gone (deprecated in 10.5) use the CUDA capability."""
    answer = getattr(builder, "platform_has_fast_fp16", None)
    return answer if isinstance(answer, bool) else fast_fp16_by_capability(capability)


def _build_config(  # noqa: PLR0917 -- one call site, all of it needed
    builder: Any, source: Any, shape: tuple[int, ...], precision: str, fast_fp16: bool,
    calibration: bytes, workspace_mb: int,
) -> Any:
    """Precision flags, workspace, and a profile pinned to the one shape we feed."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16" or (precision == "int8" and fast_fp16):  # int8 falls back to fp16
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _cache_only_calibrator(calibration)
    if any(dim < 0 for dim in source.shape):
        profile = builder.create_optimization_profile()
        profile.set_shape(source.name, shape, shape, shape)  # min = opt = max
        config.add_optimization_profile(profile)
        if precision == "int8":
            config.set_calibration_profile(profile)
    return config


class TensorRtEngine(Engine):
    """One TensorRT engine with `num_contexts` execution contexts, each on its own thread.

    Loading and building run here with the device's primary context pushed; the
    contexts run in a ContextPool (engines/tensorrt_runtime.py). submit() only queues work.
    """

    backend = "tensorrt"

    def __init__(
        self,
        model_path: Path,
        *,
        family: str = "auto",
        class_names: Sequence[str] | None = None,
        name: str | None = None,
        device: int = 0,
        precision: str = "auto",
        cache_dir: Path | None = None,
        workspace_mb: int = 1024,
        int8_calibration_cache: Path | None = None,
        num_contexts: int = 2,
    ) -> None:
        path = Path(model_path)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if family != "auto" and family not in FAMILIES:
            allowed = ", ".join(("auto", *FAMILIES))
            raise ValueError(f"unknown model family {family!r}; allowed: {allowed}")
        if num_contexts < 1:
            raise ValueError(f"num_contexts must be at least 1, not {num_contexts}")
        if not path.is_file():
            raise ModelFileError(str(path), "file not found" if not path.exists() else "not a file")
        if path.suffix.lower() not in (".onnx", *ENGINE_SUFFIXES):
            raise ModelLoadError(
                str(path), "TensorRT runs .onnx, .engine or .plan files; an OpenVINO IR needs "
                "backend openvino"
            )
        self._pool: ContextPool | None = None  # until the workers run: close() is safe
        self._trt_logger = _Logger()
        started = time.perf_counter()
        gpu_name, capability = self._open_gpu(device)
        metadata = sidecar_metadata(path)
        self._cuda_context.push()
        try:
            self._runtime = trt.Runtime(self._trt_logger)
            if path.suffix.lower() == ".onnx":
                built = self._onnx_engine(
                    path, metadata, precision, cache_dir, workspace_mb,
                    int8_calibration_cache, gpu_name, capability,
                )
            else:
                built = self._prebuilt_engine(path, metadata)
            self._engine, self._input_name, self._input_shape, self._output_names = built
        except BaseException:
            self._runtime = None  # released while its context is current
            cuda.Context.pop()
            self._cuda_context.detach()  # the retain from _open_gpu, or a failed load leaks it
            raise
        cuda.Context.pop()
        output_shapes = self._start_workers(num_contexts)
        try:
            family = self._describe(path, family, metadata, output_shapes)
        except BaseException:
            self.close()
            raise
        self.info = ModelInfo(
            path=str(path),
            name=name or path.stem,
            sha256=file_sha256(path),
            family=family,
            class_names=tuple(class_names or class_names_from_metadata(metadata, str(path))),
            output_shapes=output_shapes,
            metadata=metadata,
        )
        log.info(
            "model %s (%s, %dx%d) ready on %s in %.0f ms, %d contexts", path.name, family,
            self.input.width, self.input.height, self.device,
            (time.perf_counter() - started) * 1000, num_contexts,
        )

    def _open_gpu(self, device: int) -> tuple[str, tuple[int, int]]:
        """Initialise CUDA and retain the device's primary context; name and capability."""
        try:
            cuda.init()
            count = cuda.Device.count()
            if not 0 <= device < count:
                raise BackendUnavailableError(f"CUDA device {device} does not exist: found {count}")
            gpu = cuda.Device(device)
            name, (major, minor) = str(gpu.name()), gpu.compute_capability()
            self._cuda_context = gpu.retain_primary_context()
        except cuda.Error as exc:
            raise BackendUnavailableError(f"CUDA is not usable ({exc}); driver loaded?") from exc
        self.device = f"cuda:{device} ({name})"
        return name, (int(major), int(minor))

    def _describe(
        self, path: Path, family: str, metadata: dict[str, str],
        output_shapes: tuple[tuple[int, ...], ...],
    ) -> str:
        """Set `self.input` from the engine's input and return the postprocessing family."""
        layout = input_layout(self._input_shape)
        height, width = self._input_shape[1:3] if layout == "NHWC" else self._input_shape[2:4]
        dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._input_name))).name
        if dtype not in SPEC_DTYPES:
            raise ModelLoadError(str(path), f"input dtype {dtype} unsupported; want {SPEC_DTYPES}")
        family = choose_family(
            family, metadata, output_shapes=output_shapes, input_height=height,
            input_width=width, model_path=str(path),
        )
        spec = FAMILIES[family].input_spec(self._input_name, height, width, layout, dtype)
        self.input = spec
        return family

    # -- loading (runs with the primary context pushed) --------------------------------

    def _onnx_engine(  # noqa: PLR0917 -- private, called once with everything it needs
        self, path: Path, metadata: dict[str, str], precision: str, cache_dir: Path | None,
        workspace_mb: int, calibration: Path | None, gpu_name: str, capability: tuple[int, int],
    ) -> tuple[Any, str, tuple[int, ...], tuple[str, ...]]:
        """Parse the ONNX (cheap) to learn the input shape, then use the cache or build."""
        try:
            metadata.update(onnx_metadata(path))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(str(path), f"not a readable ONNX file ({exc})") from exc
        builder = trt.Builder(self._trt_logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._trt_logger)
        if not parser.parse_from_file(str(path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(str(path), f"TensorRT cannot parse it: {errors or 'no detail'}")
        if network.num_inputs != 1:
            raise ModelLoadError(str(path), f"expected one image input, found {network.num_inputs}")
        source = network.get_input(0)
        shape = concrete_shape(tuple(source.shape), metadata, path)
        output_names = tuple(network.get_output(i).name for i in range(network.num_outputs))
        fast_fp16 = _has_fast_fp16(builder, capability)
        resolved, calibration_bytes = resolve_precision(precision, fast_fp16, calibration)
        key = CacheKey(
            model_sha256=file_sha256(path),
            tensorrt_version=str(trt.__version__),
            gpu_name=gpu_name,
            compute_capability=f"{capability[0]}.{capability[1]}",
            precision=resolved,
            input_shape=shape,
            calibration_sha256=hashlib.sha256(calibration_bytes).hexdigest()
            if calibration_bytes else "",
        )
        cache = EngineCache(Path(cache_dir)) if cache_dir is not None else None
        cached = cache.read(key, path.stem) if cache is not None else None
        if cached is not None:
            self._trt_logger.last_error = ""
            engine = self._runtime.deserialize_cuda_engine(cached.payload)
            if engine is not None and set(self._io_names(engine)[1]) == set(cached.output_names):
                log.info("engine for %s loaded from %s", path.name, cache.path_for(key, path.stem))
                return engine, source.name, shape, cached.output_names
            log.warning(
                "engine cache %s does not load in TensorRT %s (%s); rebuilding",
                cache.path_for(key, path.stem), trt.__version__,
                self._trt_logger.last_error or "outputs differ",
            )

        log.warning(
            "building a TensorRT %s engine for %s on %s; this takes minutes on a Jetson",
            resolved, path.name, gpu_name,
        )
        started = time.perf_counter()
        serialized = builder.build_serialized_network(
            network, _build_config(builder, source, shape, resolved, fast_fp16,
                                   calibration_bytes, workspace_mb),
        )
        if serialized is None:
            raise ModelLoadError(
                str(path), f"TensorRT could not build an engine: {self._trt_logger.last_error}"
            )
        payload = bytes(serialized)
        log.info("engine built in %.1f s", time.perf_counter() - started)
        if cache is not None:
            cache.write(key, path.stem, CachedEngine(payload, output_names))
        engine = self._runtime.deserialize_cuda_engine(payload)
        if engine is None:
            raise ModelLoadError(str(path), "the freshly built engine does not deserialize")
        return engine, source.name, shape, output_names

    def _prebuilt_engine(
        self, path: Path, metadata: dict[str, str]
    ) -> tuple[Any, str, tuple[int, ...], tuple[str, ...]]:
        """A serialized engine, optionally behind Ultralytics' JSON header."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(str(path), f"cannot read it ({exc.strerror})") from exc
        header, payload = split_ultralytics_header(data)
        metadata.update(header)
        try:
            engine = self._runtime.deserialize_cuda_engine(payload)
        except (RuntimeError, TypeError) as exc:
            engine, self._trt_logger.last_error = None, str(exc)
        if engine is None:
            raise ModelLoadError(
                str(path),
                f"TensorRT {trt.__version__} cannot deserialize it: corrupt, or built with "
                f"another TensorRT version or GPU ({self._trt_logger.last_error or 'no detail'})",
            )
        inputs, outputs = self._io_names(engine)
        if len(inputs) != 1:
            raise ModelLoadError(str(path), f"expected one image input, found {len(inputs)}")
        dims = tuple(engine.get_tensor_shape(inputs[0]))
        shape = concrete_shape(dims, metadata, path)
        if any(dim < 0 for dim in dims):
            low, best, high = (tuple(s) for s in engine.get_tensor_profile_shape(inputs[0], 0))
            if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
                log.info("input %s outside the engine's profile; using its opt %s", shape, best)
                shape = tuple(int(d) for d in best)
        return engine, inputs[0], shape, tuple(outputs)

    @staticmethod
    def _io_names(engine: Any) -> tuple[list[str], list[str]]:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        return inputs, [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    # -- running --------------------------------------------------------------------------

    def _start_workers(self, count: int) -> tuple[tuple[int, ...], ...]:
        """Start the contexts; if one cannot, release the engine and say why."""
        try:
            self._pool = ContextPool(self._cuda_context, self._engine, self._input_name,
                                     self._input_shape, self._output_names, count)
        except Exception:
            self._release_engine()
            raise
        return self._pool.output_shapes

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        if tuple(tensor.shape) != self.input.shape:
            raise ValueError(f"expected an input shaped {self.input.shape}, got {tensor.shape}")
        if self._pool is None:
            raise EngineError("engine is closed")
        return self._pool.submit(tensor)  # blocks while every context is busy

    @property
    def parallelism(self) -> int:
        return self._pool.size if self._pool is not None else 0

    def close(self) -> None:
        """Queued jobs finish first; the engine is released once, by whoever stops the pool."""
        if self._pool is not None and self._pool.stop():
            self._release_engine()

    def _release_engine(self) -> None:
        """Drop the engine inside its context, then release our retain of the primary context."""
        self._cuda_context.push()
        try:
            self._engine = None
            self._runtime = None
        finally:
            cuda.Context.pop()
            self._cuda_context.detach()  # balances retain_primary_context() in _open_gpu

