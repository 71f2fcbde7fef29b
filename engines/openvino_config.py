"""The OpenVINO backend as the agent sees it, without importing OpenVINO.

Its settings (the `type: openvino` config section), the engine options they become,
how to read and judge the runtime here, and its place in `auto`: Intel GPU, then NPU,
then CPU, after TensorRT. The engine is engines/openvino.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from engines.backend import (
    Backend,
    BackendSettings,
    RuntimeReading,
    RuntimeStatus,
    import_versions,
    judge_module,
)

VERSION_FLOOR = "2024.0"
"""pyproject.toml's openvino>=2024.0; keep in step."""


class BatchSettings(BackendSettings):
    """Frames of several cameras run as one inference (engines/batching.py)."""

    max_size: int = Field(4, ge=2, le=64, description="Most frames in one inference.")
    max_wait_ms: float = Field(
        5.0, ge=0, le=1000,
        description="Longest a frame waits for others to join its batch, in milliseconds.",
    )


class OpenVinoSettings(BackendSettings):
    type: Literal["openvino"] = Field("openvino", description="Intel CPU, iGPU or NPU.")
    device: str = Field("CPU", description="OpenVINO device: CPU, GPU, NPU, AUTO, GPU.1 ...")
    precision: Literal["auto", "bf16", "f16", "f32", "int8"] = Field(
        "auto", description="Inference precision hint; auto lets OpenVINO pick (bf16 on AMX CPUs); "
        "int8: an INT8 build of the model made on this box with NNCF, used only when the "
        "accuracy guard passes it (docs/int8.md).",
    )
    performance_hint: Literal["throughput", "latency"] = Field(
        "throughput", description="throughput: many cameras; latency: one camera, fastest frame."
    )
    num_requests: int = Field(0, ge=0, le=64, description="Infer requests in flight; 0: optimal.")
    input_conversion: Literal["model", "host"] = Field(
        "model",
        description="Where uint8 -> float, layout and colour conversion run: inside the "
        "compiled model (faster on CPU) or on the host.",
    )
    cache_dir: Path | None = Field(
        None, description="Compiled-model cache so restarts skip compilation; default: state dir."
    )
    batch: BatchSettings | None = Field(
        None,
        description="Batch frames across cameras into one inference; null (default): one "
        "frame per inference, cameras share the engine's parallel requests (faster on CPU, "
        "see docs/benchmark.md).",
    )
    int8_min_f1: float = Field(
        0.9, gt=0.0, le=1.0,
        description="precision int8: the least F1 of the INT8 model's detections against "
        "the FP model's on held-back frames; a build below it is refused and FP runs.",
    )
    int8_calibration_frames: int = Field(
        300, ge=1, le=10_000, description="precision int8: frames NNCF calibrates on."
    )
    int8_check_frames: int = Field(
        100, ge=1, le=10_000,
        description="precision int8: frames held back from calibration for the guard.",
    )
    int8_preset: Literal["performance", "mixed"] = Field(
        "performance",
        description="precision int8: NNCF preset; performance (all symmetric) runs faster, "
        "mixed (asymmetric activations) can keep more accuracy when a build is refused.",
    )


def openvino_options(settings: OpenVinoSettings, state_dir: Path) -> dict[str, Any]:
    """The keyword arguments of engines.openvino.OpenVinoEngine."""
    return {
        "device": settings.device,
        # int8 loads the FP model first (the guard's reference); edge_agent/int8_start.py
        # then swaps in the INT8 build when the guard passed it.
        "precision": "auto" if settings.precision == "int8" else settings.precision,
        "performance_hint": settings.performance_hint,
        "num_requests": settings.num_requests,
        "cache_dir": settings.cache_dir or state_dir / "cache" / "openvino",
        "host_convert": settings.input_conversion == "host",
        "max_batch": settings.batch.max_size if settings.batch else 1,
    }


def _version(label: str, module: Any) -> str:
    return str(getattr(module, "__version__", None) or module.get_version()).split("-")[0]


def read_runtime() -> RuntimeReading:
    """Import OpenVINO and list its devices; a failure is recorded, never raised."""
    reading = import_versions({"openvino": "openvino"}, _version)
    if reading.versions["openvino"] is None:
        return RuntimeReading(reading.versions, reading.errors, ())
    errors = dict(reading.errors)
    devices: tuple[str, ...] = ()
    try:
        import openvino

        devices = tuple(openvino.Core().available_devices)
    except RuntimeError as exc:
        errors["openvino_devices"] = str(exc).splitlines()[0] if str(exc) else "RuntimeError"
    return RuntimeReading(reading.versions, errors, devices)


def judge_runtime(
    versions: Mapping[str, str | None], errors: Mapping[str, str], devices: tuple[str, ...]
) -> RuntimeStatus:
    return judge_module(versions, errors, devices, module="openvino", title="OpenVINO",
                        floor=VERSION_FLOOR)


BACKEND = Backend(
    name="openvino",
    title="OpenVINO",
    config=OpenVinoSettings,
    options=openvino_options,
    modules=("openvino",),
    read_runtime=read_runtime,
    judge_runtime=judge_runtime,
    version_floor=VERSION_FLOOR,
    engine="engines.openvino:OpenVinoEngine",
    auto_rank=20,
    hardware=("intel-gpu", "intel-npu", "cpu"),
    install_hint="pip install openvino (a dependency of edge-agent)",
    required=True,
    takes_auto_device=True,
)
