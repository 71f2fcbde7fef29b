"""Running a loaded TensorRT engine: execution contexts, their worker threads and CUDA buffers.

engines/tensorrt.py loads or builds the engine; this module runs it. It is also where
TensorRT and pycuda are first imported, so a missing runtime is reported here, once,
with what to install.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from engines.base import InferResult, settle
from engines.errors import BackendUnavailableError, EngineError

try:
    import pycuda.driver as cuda
    import tensorrt as trt
except (ImportError, OSError) as exc:
    raise BackendUnavailableError(
        f"TensorRT or pycuda does not import ({exc}); on a Jetson install JetPack "
        "('sudo apt install nvidia-jetpack', which brings python3-libnvinfer) and "
        "'pip install pycuda' with CUDA on PATH; on x86 'pip install tensorrt pycuda'. "
        "See docs/tensorrt.md"
    ) from exc

MIN_TENSORRT_MAJOR = 10
"""The name-based tensor API (set_tensor_address, execute_async_v3) this backend uses."""


def _major(version: str) -> int | None:
    try:
        return int(version.split(".", maxsplit=1)[0])
    except ValueError:
        return None  # an odd build string: let the calls themselves decide


_trt_major = _major(str(getattr(trt, "__version__", "")))
if _trt_major is not None and _trt_major < MIN_TENSORRT_MAJOR:
    raise BackendUnavailableError(
        f"TensorRT {trt.__version__} found; this backend needs TensorRT >= "
        f"{MIN_TENSORRT_MAJOR} (JetPack 6.1 or later on Orin); older boards (Jetson Nano, "
        "TX2) use OpenVINO, see docs/tensorrt.md"
    )

log = logging.getLogger(__name__)

OutputShapes = tuple[tuple[int, ...], ...]


class ContextPool:
    """`count` execution contexts of one engine, each on its own worker thread.

    pycuda binds a CUDA context to the thread that made it current, so each worker
    pushes the device's *primary* context (the one TensorRT's runtime API uses too, so
    both see the same memory), owns its execution context, stream and buffers, and pops
    the context when it stops. submit() only queues work.
    """

    def __init__(  # noqa: PLR0917 -- one call site, all of it needed
        self, cuda_context: Any, engine: Any, input_name: str, input_shape: tuple[int, ...],
        output_names: Sequence[str], count: int,
    ) -> None:
        self._cuda_context = cuda_context
        self._lock = threading.Lock()
        self._stopped = False
        self._workers: list[threading.Thread] = []
        self._jobs: queue.Queue[tuple[np.ndarray, Future[InferResult]] | None] = queue.Queue()
        self._free_slots = threading.BoundedSemaphore(count)
        self.output_shapes = self._start(engine, input_name, input_shape, output_names, count)

    @property
    def size(self) -> int:
        return len(self._workers)

    def _start(
        self, engine: Any, input_name: str, input_shape: tuple[int, ...],
        output_names: Sequence[str], count: int,
    ) -> OutputShapes:
        """Start one thread per execution context; their setup errors surface here."""
        ready: list[Future[OutputShapes]] = []
        for index in range(count):
            started: Future[OutputShapes] = Future()
            worker = threading.Thread(
                target=self._serve,
                args=(started, engine, input_name, input_shape, output_names),
                name=f"tensorrt-{index}", daemon=True,
            )
            worker.start()
            self._workers.append(worker)
            ready.append(started)
        try:
            shapes = [future.result() for future in ready]
        except Exception:
            self.stop()
            raise
        return shapes[0]

    def _serve(
        self, ready: Future[OutputShapes], engine: Any, input_name: str,
        input_shape: tuple[int, ...], output_names: Sequence[str],
    ) -> None:
        """A worker: push the primary context, own one slot, run jobs until None."""
        self._cuda_context.push()
        try:
            try:
                slot = _Slot(engine, input_name, input_shape, output_names)
            except Exception as exc:  # reported to the constructor, not lost
                ready.set_exception(exc)
                return
            ready.set_result(slot.output_shapes)
            while (job := self._jobs.get()) is not None:
                tensor, future = job
                try:
                    if not future.done():  # a cancelled request is skipped
                        settle(future, slot.run(tensor))
                except Exception as exc:  # surfaced to the waiter
                    settle(future, error=exc)
                finally:
                    self._free_slots.release()
            slot.free()
        finally:
            cuda.Context.pop()

    def submit(self, tensor: np.ndarray) -> Future[InferResult]:
        """Queue one run; blocks while every context is busy."""
        future: Future[InferResult] = Future()
        with self._lock:
            if self._stopped:
                raise EngineError("engine is closed")
        self._free_slots.acquire()  # blocks while every context is busy
        with self._lock:
            if self._stopped:
                self._free_slots.release()
                raise EngineError("engine is closed")
            self._jobs.put((tensor, future))  # bounded by the semaphore, never grows
        return future

    def stop(self) -> bool:
        """Jobs already queued finish first: the None markers queue behind them.

        False when the pool was already stopped, so its owner releases things once.
        """
        with self._lock:
            if self._stopped:
                return False
            self._stopped = True
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join()
        return True


class _Slot:
    """One execution context with its stream, page-locked host and device buffers."""

    def __init__(
        self, engine: Any, input_name: str, input_shape: tuple[int, ...],
        output_names: Sequence[str],
    ) -> None:
        self.input_device: Any = None
        self.outputs: list[tuple[np.ndarray, Any]] = []
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError("TensorRT could not create an execution context (GPU memory?)")
        try:
            self._allocate(engine, input_name, input_shape, output_names)
        except BaseException:
            self.free()  # a half-made slot must not leak device memory on every retry
            raise
        self.output_shapes = tuple(host.shape for host, _ in self.outputs)

    def _allocate(
        self, engine: Any, input_name: str, input_shape: tuple[int, ...],
        output_names: Sequence[str],
    ) -> None:
        """Stream and buffers; each is recorded as soon as it exists, so free() finds it."""
        if not self.context.set_input_shape(input_name, input_shape):
            raise EngineError(f"the engine does not accept input shape {input_shape}")
        self.stream = cuda.Stream()
        dtype = trt.nptype(engine.get_tensor_dtype(input_name))
        self.input_host = cuda.pagelocked_empty(input_shape, dtype)
        self.input_device = cuda.mem_alloc(self.input_host.nbytes)
        self.context.set_tensor_address(input_name, int(self.input_device))
        for name in output_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise EngineError(f"output {name} has a data-dependent shape {shape}")
            host = cuda.pagelocked_empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
            device = cuda.mem_alloc(max(host.nbytes, 1))
            self.outputs.append((host, device))
            self.context.set_tensor_address(name, int(device))

    def run(self, tensor: np.ndarray) -> InferResult:
        started = time.perf_counter()
        np.copyto(self.input_host, tensor, casting="same_kind")
        cuda.memcpy_htod_async(self.input_device, self.input_host, self.stream)
        if not self.context.execute_async_v3(self.stream.handle):
            raise EngineError("TensorRT execution failed; see the TensorRT errors in the log")
        for host, device in self.outputs:
            cuda.memcpy_dtoh_async(host, device, self.stream)
        self.stream.synchronize()
        outputs = [host.copy() for host, _ in self.outputs]  # the buffers are reused
        return InferResult(outputs, (time.perf_counter() - started) * 1000)

    def free(self) -> None:
        """Release whatever exists; safe on a slot whose setup stopped part-way."""
        for _, device in self.outputs:
            device.free()
        self.outputs = []
        if self.input_device is not None:
            self.input_device.free()
            self.input_device = None
        self.context = None
