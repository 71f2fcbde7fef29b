"""ONNX Runtime backend: an ONNX model on the CPU (or the execution providers configured).

For boxes without OpenVINO or TensorRT (Raspberry Pi, Rockchip and other ARM CPUs) and
x86 boxes where OpenVINO is not wanted. The same ONNX models, the same preprocessing on
the host (engines/preprocess.py) and the same postprocessing as the other backends;
metadata (class names, imgsz) is read from the ONNX file as OpenVINO reads it.
`submit` runs `InferenceSession.run` on a small pool of threads, `in_flight` deep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engines.base import Engine, InferResult, ModelInfo
from engines.errors import BackendUnavailableError, EngineError, ModelLoadError
from engines.model_info import (
    class_names_from_metadata,
    describe_input,
    file_sha256,
    model_files,
    sidecar_metadata,
)
from engines.onnxruntime_config import INSTALL
from engines.postprocess import FAMILIES, choose_family

try:
    import onnxruntime as ort
except ImportError as exc:
    raise BackendUnavailableError(f"onnxruntime does not import ({exc}); {INSTALL}") from exc

log = logging.getLogger(__name__)

DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


def _dims(shape: Sequence[object]) -> list[int]:
    """ONNX Runtime writes a dynamic dim as a name or None; -1 here, as elsewhere."""
    return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape]


class OnnxRuntimeEngine(Engine):
    """One InferenceSession; `in_flight` runs may overlap on worker threads."""

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: Path,
        *,
        family: str = "auto",
        class_names: Sequence[str] | None = None,
        name: str | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        in_flight: int = 2,
        intra_op_threads: int = 0,
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, not {in_flight}")
        files = model_files(Path(model_path))
        path = files[0]
        if path.suffix.lower() != ".onnx":
            raise ModelLoadError(str(path), "ONNX Runtime runs .onnx files; an OpenVINO IR "
                                 "needs backend openvino")
        available = ort.get_available_providers()
        missing = [provider for provider in providers if provider not in available]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime {ort.__version__} has no {', '.join(missing)}; this build "
                f"offers {', '.join(available)} (providers come with the onnxruntime package "
                "you install, e.g. onnxruntime-gpu)"
            )
        started = time.perf_counter()
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3  # errors only: warnings are about graph fusions
        try:
            session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as exc:  # ONNX Runtime raises its own pybind classes
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                str(path), f"not a readable ONNX model, truncated or corrupt? ({detail})"
            ) from exc
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(str(path), f"expected one image input, found {len(inputs)}")
        source = inputs[0]
        metadata = {**sidecar_metadata(path),
                    **session.get_modelmeta().custom_metadata_map}
        layout, height, width = describe_input(_dims(source.shape), metadata, str(path))
        dtype = DTYPES.get(source.type)
        if dtype is None:
            raise ModelLoadError(str(path), f"input type {source.type} unsupported; want "
                                 f"{', '.join(DTYPES)}")
        self._input_name = source.name
        shape = (1, 3, height, width) if layout == "NCHW" else (1, height, width, 3)
        output_shapes = tuple(
            tuple(int(d) for d in out.shape)
            for out in session.run(None, {source.name: np.zeros(shape, dtype)})
        )  # one run: dynamic output dims become the real ones
        family = choose_family(family, metadata, output_shapes=output_shapes,
                               input_height=height, input_width=width, model_path=str(path))
        self.input = FAMILIES[family].input_spec(source.name, height, width, layout, dtype)
        self.info = ModelInfo(
            path=str(path),
            name=name or path.stem,
            sha256=file_sha256(*files),
            family=family,
            class_names=tuple(class_names or class_names_from_metadata(metadata, str(path))),
            output_shapes=output_shapes,
            metadata=metadata,
        )
        self.device = ",".join(p.removesuffix("ExecutionProvider")
                               for p in session.get_providers())
        self._session: ort.InferenceSession | None = session
        self._in_flight = in_flight
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix="onnxruntime")
        self._lock = threading.Lock()
        self._closed = False
        log.info(
            "model %s (%s, %dx%d) loaded by onnxruntime %s on %s in %.0f ms, %d in flight",
            path.name, family, width, height, ort.__version__, self.device,
            (time.perf_counter() - started) * 1000, in_flight,
        )

    def _run(self, tensor: np.ndarray) -> InferResult:
        session = self._session
        if session is None:
            raise EngineError("engine is closed")
        started = time.perf_counter()
        outputs = session.run(None, {self._input_name: tensor})
        return InferResult(outputs, (time.perf_counter() - started) * 1000)

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        """Queue one input; blocks while `in_flight` runs are already going."""
        if tuple(tensor.shape) != self.input.shape:
            raise ValueError(f"expected an input shaped {self.input.shape}, got {tensor.shape}")
        self._slots.acquire()
        with self._lock:
            if self._closed:
                self._slots.release()
                raise EngineError("engine is closed")
            future = self._pool.submit(self._run, tensor)
        # The slot is freed when the future completes in any way, cancelled before it
        # ran included (the pool then never calls _run, so a release there would leak).
        future.add_done_callback(lambda _f: self._slots.release())
        return future

    @property
    def parallelism(self) -> int:
        return self._in_flight

    def close(self) -> None:
        """Runs in flight finish; later submits are refused."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=True)
        # Free the session now, not at garbage collection: its native thread pool goes
        # with it, so a closed engine leaves no threads behind (signals, reloads).
        self._session = None
