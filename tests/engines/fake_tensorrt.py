"""A narrow fake of exactly the tensorrt and pycuda.driver calls engines/tensorrt*.py make.

Only for machines without an NVIDIA GPU. The computation is real: a "built engine"
records the ONNX file, and executing it runs that ONNX with OpenVINO on the CPU,
reading the input from and writing the outputs to fake device memory at the
addresses the engine set. Like the real APIs, CUDA calls fail on a thread with no
current context, a dynamic input without a profile does not build, a shape outside
the profile is refused, and an engine from another TensorRT version does not load.
The fake engine lists its I/O tensors in a different order from the ONNX (outputs
reversed, input last), so the backend must map outputs by name.
"""

from __future__ import annotations

import enum
import importlib
import itertools
import json
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

PLAN_MAGIC = b"FAKEPLAN"


@dataclass
class FakeGpu:
    """The machine the fake pretends to be, and what the tests read back from it."""

    name: str = "Fake Orin"
    capability: tuple[int, int] = (8, 7)
    fast_fp16: bool | None = True  # None: TensorRT without platform_has_fast_fp16
    trt_version: str = "10.3.0"
    device_count: int = 1
    driver_ok: bool = True
    dynamic_input: bool = False  # the parser reports H and W as -1, like a dynamic export
    extra_outputs: tuple[str, ...] = ()  # ONNX tensors exposed as further outputs
    builds: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )
    input_shapes_set: list[tuple[int, ...]] = field(default_factory=list)
    memory: dict[int, bytearray] = field(default_factory=dict)
    pushes: int = 0
    pops: int = 0
    retains: int = 0
    detaches: int = 0
    executions: int = 0


STATE = FakeGpu()
_local = threading.local()
_addresses = itertools.count(0x7F0000000000, 0x100000)


class CudaError(Exception):
    """pycuda.driver.Error."""


def _require_context(what: str) -> None:
    if not getattr(_local, "stack", None):
        raise CudaError(f"{what} failed: invalid device context (no context current)")


# --- pycuda.driver -----------------------------------------------------------------------


class FakeContext:
    """The device's primary context: retained once by the backend, detached once."""

    def __init__(self) -> None:
        self.retained = True
        STATE.retains += 1

    def detach(self) -> None:
        """Like cuDevicePrimaryCtxRelease: a second release of one retain is an error."""
        if not self.retained:
            raise CudaError("cuDevicePrimaryCtxRelease failed: invalid device context")
        if self in getattr(_local, "stack", []):
            raise CudaError("detach while the context is still pushed on this thread")
        self.retained = False
        STATE.detaches += 1

    def push(self) -> None:
        if not self.retained:
            raise CudaError("cuCtxPushCurrent failed: the primary context was released")
        _local.stack = [*getattr(_local, "stack", []), self]
        STATE.pushes += 1

    @staticmethod
    def pop() -> None:
        stack = getattr(_local, "stack", [])
        if not stack:
            raise CudaError("cuCtxPopCurrent failed: no context on this thread")
        stack.pop()
        STATE.pops += 1


class FakeDevice:
    def __init__(self, ordinal: int) -> None:
        if not 0 <= ordinal < STATE.device_count:
            raise CudaError("cuDeviceGet failed: invalid device ordinal")

    @staticmethod
    def count() -> int:
        return STATE.device_count

    def name(self) -> str:
        return STATE.name

    def compute_capability(self) -> tuple[int, int]:
        return STATE.capability

    def retain_primary_context(self) -> FakeContext:
        return FakeContext()


class FakeAllocation:
    def __init__(self, size: int) -> None:
        _require_context("cuMemAlloc")
        self.address = next(_addresses)
        STATE.memory[self.address] = bytearray(size)

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        _require_context("cuMemFree")
        del STATE.memory[self.address]


class FakeStream:
    _handles = itertools.count(1)

    def __init__(self) -> None:
        _require_context("cuStreamCreate")
        self.handle = next(self._handles)

    def synchronize(self) -> None:
        _require_context("cuStreamSynchronize")


def _init() -> None:
    if not STATE.driver_ok:
        raise CudaError("cuInit failed: no CUDA-capable device is detected")


def _pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
    _require_context("cuMemHostAlloc")
    return np.empty(shape, dtype)


def _memcpy_htod_async(dest: FakeAllocation, src: np.ndarray, stream: FakeStream) -> None:
    _require_context("cuMemcpyHtoDAsync")
    data = np.ascontiguousarray(src).tobytes()
    STATE.memory[int(dest)][: len(data)] = data


def _memcpy_dtoh_async(dest: np.ndarray, src: FakeAllocation, stream: FakeStream) -> None:
    _require_context("cuMemcpyDtoHAsync")
    raw = STATE.memory[int(src)][: dest.nbytes]
    dest[...] = np.frombuffer(bytes(raw), dest.dtype).reshape(dest.shape)


# --- tensorrt ----------------------------------------------------------------------------


class DataType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT32 = np.int32
    INT64 = np.int64
    UINT8 = np.uint8


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1


_OV_TYPES = {"f32": DataType.FLOAT, "f16": DataType.HALF, "i32": DataType.INT32,
             "i64": DataType.INT64, "u8": DataType.UINT8}


def nptype(dtype: DataType) -> type:
    return dtype.value


class ILogger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self) -> None:
        pass


class IInt8EntropyCalibrator2:
    def __init__(self) -> None:
        pass


@dataclass
class FakeTensor:
    name: str
    shape: tuple[int, ...]


class FakeNetwork:
    def __init__(self) -> None:
        self.onnx = ""
        self.inputs: list[FakeTensor] = []
        self.outputs: list[FakeTensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> FakeTensor:
        return self.inputs[index]

    def get_output(self, index: int) -> FakeTensor:
        return self.outputs[index]


class OnnxParser:
    def __init__(self, network: FakeNetwork, logger: ILogger) -> None:
        self.network, self.errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse_from_file(self, path: str) -> bool:
        try:
            model = _read_model(path, STATE.extra_outputs)
        except RuntimeError as exc:
            self.errors.append(f"ModelImporter: failed to parse {path}: {str(exc)[:80]}")
            return False
        port = model.inputs[0]
        dims = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
        if STATE.dynamic_input:
            dims[2] = dims[3] = -1
        self.network.onnx = path
        self.network.inputs = [FakeTensor(port.get_any_name(), tuple(dims))]
        self.network.outputs = [FakeTensor(out.get_any_name(), ()) for out in model.outputs]
        return True


class FakeProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, low: Any, best: Any, high: Any) -> None:
        self.shapes[name] = (tuple(low), tuple(best), tuple(high))
        STATE.profiles.append((name, tuple(low), tuple(best), tuple(high)))


class FakeConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[FakeProfile] = []
        self.int8_calibrator: Any = None
        self.calibration_profile: FakeProfile | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pools[pool] = size

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: FakeProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: FakeProfile) -> bool:
        self.calibration_profile = profile
        return True


class Builder:
    def __init__(self, logger: ILogger) -> None:
        _require_context("Builder")  # TensorRT's builder needs a CUDA context too
        self.logger = logger

    def __getattr__(self, name: str) -> Any:
        if name == "platform_has_fast_fp16" and STATE.fast_fp16 is not None:
            return STATE.fast_fp16
        raise AttributeError(name)

    def create_network(self, flags: int) -> FakeNetwork:
        return FakeNetwork()

    def create_builder_config(self) -> FakeConfig:
        return FakeConfig()

    def create_optimization_profile(self) -> FakeProfile:
        return FakeProfile()

    def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> bytes | None:
        _require_context("build")
        source = network.inputs[0]
        profile = None
        if any(d < 0 for d in source.shape):
            if not config.profiles or source.name not in config.profiles[0].shapes:
                self.logger.log(ILogger.ERROR, "Network has dynamic or shape inputs, but no "
                                "optimization profile has been defined.")
                return None
            profile = config.profiles[0].shapes[source.name]
        calibration = None
        if BuilderFlag.INT8 in config.flags:
            cache = config.int8_calibrator.read_calibration_cache() if config.int8_calibrator \
                else None
            if not cache:
                self.logger.log(ILogger.ERROR, "Calibration failure occurred with no scaling "
                                "factors detected.")
                return None
            calibration = bytes(cache).hex()
        flags = sorted(flag.name for flag in config.flags)
        STATE.builds.append({"flags": flags, "workspace": config.pools.get(
            MemoryPoolType.WORKSPACE), "calibration": calibration, "profile": profile})
        return plan_bytes(network.onnx, dims=source.shape, profile=profile, flags=flags,
                          outputs=[o.name for o in network.outputs])


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        _require_context("deserialize")
        raw = bytes(data)
        try:
            if not raw.startswith(PLAN_MAGIC):
                raise ValueError("magic tag does not match")
            plan = json.loads(raw[len(PLAN_MAGIC):])
        except ValueError as exc:
            self.logger.log(ILogger.ERROR, f"IRuntime::deserializeCudaEngine: {exc}")
            return None
        if plan["version"] != STATE.trt_version:
            self.logger.log(ILogger.ERROR, f"serialized with TensorRT {plan['version']}, "
                            f"this is {STATE.trt_version}")
            return None
        return FakeEngine(plan)


def _read_model(path: str, extra_outputs: tuple[str, ...]) -> ov.Model:
    model = ov.Core().read_model(path)
    if extra_outputs:
        model.add_outputs(list(extra_outputs))
    return model


def plan_bytes(onnx: str | Path, *, dims: tuple[int, ...] | None = None,
               profile: Any = None, flags: Any = (), outputs: Any = None,
               version: str | None = None) -> bytes:
    """A fake serialized engine for `onnx`, as the fake builder makes (for prebuilt tests)."""
    if dims is None or outputs is None:
        model = _read_model(str(onnx), STATE.extra_outputs)
        dims = dims or tuple(model.inputs[0].get_partial_shape().to_shape())
        outputs = outputs or [out.get_any_name() for out in model.outputs]
    plan = {"onnx": str(onnx), "dims": list(dims), "profile": profile, "flags": list(flags),
            "outputs": list(outputs), "version": version or STATE.trt_version,
            "extra_outputs": list(STATE.extra_outputs)}
    return PLAN_MAGIC + json.dumps(plan).encode()


class FakeEngine:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.model = _read_model(plan["onnx"], tuple(plan["extra_outputs"]))
        self.input_name = self.model.inputs[0].get_any_name()
        self.ov_outputs = [out.get_any_name() for out in self.model.outputs]
        self.names = [*reversed(plan["outputs"]), self.input_name]
        self.compiled: dict[tuple[int, ...], ov.CompiledModel] = {}
        self.lock = threading.Lock()

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        if name == self.input_name:
            return TensorIOMode.INPUT
        return TensorIOMode.OUTPUT if name in self.names else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        if name == self.input_name:
            port = self.model.inputs[0]
        else:
            port = self.model.outputs[self.ov_outputs.index(name)]
        return _OV_TYPES[port.get_element_type().get_type_name()]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        dims = tuple(self.plan["dims"])
        if name == self.input_name:
            return dims
        if any(d < 0 for d in dims):
            return tuple(-1 for _ in self.output_shape(name, (1, 3, 32, 32)))
        return self.output_shape(name, dims)

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, ...], ...]:
        if name != self.input_name or self.plan["profile"] is None or index != 0:
            raise RuntimeError(f"no profile {index} for {name}")
        return tuple(tuple(s) for s in self.plan["profile"])

    def compiled_for(self, shape: tuple[int, ...]) -> ov.CompiledModel:
        with self.lock:
            if shape not in self.compiled:
                model = _read_model(self.plan["onnx"], tuple(self.plan["extra_outputs"]))
                model.reshape({0: list(shape)})
                self.compiled[shape] = ov.Core().compile_model(
                    model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
                )
            return self.compiled[shape]

    def output_shape(self, name: str, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        compiled = self.compiled_for(input_shape)
        return tuple(compiled.outputs[self.ov_outputs.index(name)].get_shape())

    def create_execution_context(self) -> FakeExecutionContext:
        _require_context("createExecutionContext")
        return FakeExecutionContext(self)


class FakeExecutionContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.input_shape = tuple(engine.plan["dims"])
        self.addresses: dict[str, int] = {}
        self.request: ov.InferRequest | None = None

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape, dims = tuple(int(d) for d in shape), self.engine.plan["dims"]
        if name != self.engine.input_name or len(shape) != len(dims):
            return False
        profile = self.engine.plan["profile"]
        if profile is None:
            ok = shape == tuple(dims)
        else:
            ok = all(lo <= s <= hi for lo, s, hi in zip(profile[0], shape, profile[2], strict=True))
        if ok:
            self.input_shape = shape
            STATE.input_shapes_set.append(shape)
        return ok

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name == self.engine.input_name:
            return self.input_shape
        if any(d < 0 for d in self.input_shape):
            return self.engine.get_tensor_shape(name)
        return self.engine.output_shape(name, self.input_shape)

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.names:
            raise RuntimeError(f"unknown tensor {name}")
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        _require_context("enqueueV3")
        engine = self.engine
        missing = [n for n in engine.names if n not in self.addresses]
        if missing or any(d < 0 for d in self.input_shape) or not stream_handle:
            raise RuntimeError(f"not ready: addresses missing {missing}, shape {self.input_shape}")
        compiled = engine.compiled_for(self.input_shape)
        dtype = nptype(engine.get_tensor_dtype(engine.input_name))
        size = int(np.prod(self.input_shape)) * np.dtype(dtype).itemsize
        raw = STATE.memory[self.addresses[engine.input_name]]
        assert len(raw) >= size, "input device buffer too small"
        tensor = np.frombuffer(bytes(raw[:size]), dtype).reshape(self.input_shape)
        if self.request is None or self.request.get_compiled_model() is not compiled:
            self.request = compiled.create_infer_request()
        self.request.infer({0: tensor})
        for index, name in enumerate(engine.ov_outputs):
            data = np.ascontiguousarray(self.request.get_output_tensor(index).data).tobytes()
            target = STATE.memory[self.addresses[name]]
            assert len(target) >= len(data), f"output buffer {name} too small"
            target[: len(data)] = data
        STATE.executions += 1
        return True


def _modules() -> dict[str, types.ModuleType]:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = STATE.trt_version
    for item in (DataType, TensorIOMode, MemoryPoolType, BuilderFlag, ILogger,
                 IInt8EntropyCalibrator2, OnnxParser, Builder, Runtime):
        setattr(trt, item.__name__, item)
    trt.nptype = nptype
    driver = types.ModuleType("pycuda.driver")
    driver.Error = CudaError
    driver.Device = FakeDevice
    driver.Context = FakeContext
    driver.Stream = FakeStream
    driver.init = _init
    driver.mem_alloc = FakeAllocation
    driver.pagelocked_empty = _pagelocked_empty
    driver.memcpy_htod_async = _memcpy_htod_async
    driver.memcpy_dtoh_async = _memcpy_dtoh_async
    package = types.ModuleType("pycuda")
    package.driver = driver
    return {"tensorrt": trt, "pycuda": package, "pycuda.driver": driver}


def install(monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu | None = None) -> types.ModuleType:
    """Put the fakes in sys.modules and import engines.tensorrt against them."""
    global STATE  # noqa: PLW0603 -- the fake modules read the machine they pretend to be
    STATE = gpu or FakeGpu()
    for name, module in _modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    return fresh_import(monkeypatch)


def fresh_import(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Import engines.tensorrt anew; the test's end forgets it (and its fakes) again.

    engines.tensorrt_runtime is where tensorrt and pycuda are imported, so it is
    imported anew too: a copy from an earlier test would hold that test's fakes.
    """
    for name in ("engines.tensorrt", "engines.tensorrt_runtime"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType("placeholder"))
        del sys.modules[name]
    return importlib.import_module("engines.tensorrt")
