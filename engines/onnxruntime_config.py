"""The ONNX Runtime backend as the agent sees it, without importing onnxruntime.

The runtime users bring on ARM boxes without OpenVINO or TensorRT (Raspberry Pi,
Rockchip) and on x86 boxes where OpenVINO is not wanted. An optional extra:
`pip install 'edge-agent[onnxruntime]'`. In `auto` it comes after OpenVINO, on CPU.
The engine is engines/onnxruntime.py.
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

VERSION_FLOOR = "1.16"
INSTALL = "install onnxruntime (pip install 'edge-agent[onnxruntime]')"


class OnnxRuntimeSettings(BackendSettings):
    type: Literal["onnxruntime"] = Field(
        description="ONNX Runtime: any CPU (ARM or x86), or the execution providers listed."
    )
    providers: tuple[str, ...] = Field(
        ("CPUExecutionProvider",), min_length=1, max_length=8,
        description="Execution providers in order of preference, as ONNX Runtime names them.",
    )
    sessions_in_flight: int = Field(
        2, ge=1, le=16, description="Frames in flight: runs overlapping on worker threads."
    )
    intra_op_threads: int = Field(
        0, ge=0, le=256, description="Threads one inference may use; 0: ONNX Runtime decides."
    )


def onnxruntime_options(settings: OnnxRuntimeSettings, state_dir: Path) -> dict[str, Any]:
    """The keyword arguments of engines.onnxruntime.OnnxRuntimeEngine."""
    return {
        "providers": tuple(settings.providers),
        "in_flight": settings.sessions_in_flight,
        "intra_op_threads": settings.intra_op_threads,
    }


def read_runtime() -> RuntimeReading:
    reading = import_versions({"onnxruntime": "onnxruntime"})
    devices: tuple[str, ...] = ()
    if reading.versions["onnxruntime"] is not None:
        import onnxruntime

        devices = tuple(onnxruntime.get_available_providers())
    return RuntimeReading(reading.versions, reading.errors, devices)


def judge_runtime(
    versions: Mapping[str, str | None], errors: Mapping[str, str], devices: tuple[str, ...]
) -> RuntimeStatus:
    return judge_module(versions, errors, devices, module="onnxruntime", title="onnxruntime",
                        floor=VERSION_FLOOR, missing_hint=f"; {INSTALL}")


BACKEND = Backend(
    name="onnxruntime",
    title="ONNX Runtime",
    config=OnnxRuntimeSettings,
    options=onnxruntime_options,
    modules=("onnxruntime",),
    read_runtime=read_runtime,
    judge_runtime=judge_runtime,
    version_floor=VERSION_FLOOR,
    engine="engines.onnxruntime:OnnxRuntimeEngine",
    auto_rank=30,
    hardware=("cpu",),
    install_hint=INSTALL,
)
