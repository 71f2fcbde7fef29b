"""The TensorRT backend as the agent sees it, without importing TensorRT or pycuda.

Its settings (the `type: tensorrt` config section), the engine options they become,
how to read and judge the runtime here (TensorRT >= 10 and pycuda), and its place in
`auto`: first, where there is NVIDIA hardware. The engine is engines/tensorrt.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from engines.backend import Backend, BackendSettings, RuntimeReading, RuntimeStatus, import_versions
from engines.backend import judge_modules as _judge_modules

VERSION_FLOOR = "10"
"""engines/tensorrt_runtime.py refuses older TensorRT (MIN_TENSORRT_MAJOR); keep in step."""


class TensorRtSettings(BackendSettings):
    type: Literal["tensorrt"] = Field(description="NVIDIA GPU: Jetson or a discrete card.")
    device: int = Field(0, ge=0, le=63, description="CUDA device index.")
    precision: Literal["auto", "fp16", "fp32", "int8"] = Field(
        "auto", description="auto: fp16 where the GPU has fast fp16, else fp32; int8 needs "
        "int8_calibration_cache.",
    )
    int8_calibration_cache: Path | None = Field(
        None, validate_default=True,
        description="Calibration cache for precision int8 (required with it).",
    )
    workspace_mb: int = Field(
        1024, ge=16, le=65536, description="Scratch memory the engine builder may use, MiB."
    )
    num_contexts: int = Field(
        2, ge=1, le=16, description="Execution contexts, i.e. frames in flight on the GPU."
    )
    cache_dir: Path | None = Field(
        None, description="Built-engine cache so restarts skip the build; default: state dir."
    )

    @field_validator("int8_calibration_cache")
    @classmethod
    def _calibration_for_int8(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # validate_default runs this when the key is absent too: int8 without it is an error.
        if value is None and info.data.get("precision") == "int8":
            raise PydanticCustomError(
                "int8_needs_calibration",
                "required when precision is int8: the calibration cache TensorRT reads "
                "(see docs/tensorrt.md); or use precision fp16",
            )
        return value


def tensorrt_options(settings: TensorRtSettings, state_dir: Path) -> dict[str, Any]:
    """The keyword arguments of engines.tensorrt.TensorRtEngine."""
    return {
        "device": settings.device,
        "precision": settings.precision,
        "cache_dir": settings.cache_dir or state_dir / "cache" / "tensorrt",
        "workspace_mb": settings.workspace_mb,
        "int8_calibration_cache": settings.int8_calibration_cache,
        "num_contexts": settings.num_contexts,
    }


def _version(label: str, module: Any) -> str:
    if label == "pycuda":
        import pycuda

        return str(getattr(pycuda, "VERSION_TEXT", "unknown"))
    return str(getattr(module, "__version__", "unknown"))


def read_runtime() -> RuntimeReading:
    return import_versions({"tensorrt": "tensorrt", "pycuda": "pycuda.driver"}, _version)


TOO_OLD = (
    "tensorrt {version} is too old (the backend needs TensorRT >= " + VERSION_FLOOR
    + ", JetPack 6.1 or later on Orin; older boards such as the Jetson Nano and TX2 run "
    "on OpenVINO, see docs/tensorrt.md)"
)


def judge_runtime(
    versions: Mapping[str, str | None], errors: Mapping[str, str], devices: tuple[str, ...]
) -> RuntimeStatus:
    summary, problem = _judge_modules(versions, errors, ("tensorrt", "pycuda"),
                                      floor_label="tensorrt", floor=VERSION_FLOOR,
                                      too_old=TOO_OLD)
    return RuntimeStatus(not problem, summary, problem, devices)


BACKEND = Backend(
    name="tensorrt",
    title="TensorRT",
    config=TensorRtSettings,
    options=tensorrt_options,
    modules=("tensorrt", "pycuda"),
    read_runtime=read_runtime,
    judge_runtime=judge_runtime,
    version_floor=VERSION_FLOOR,
    engine="engines.tensorrt:TensorRtEngine",
    auto_rank=10,
    hardware=("nvidia",),
    install_hint="install TensorRT and pycuda (docs/tensorrt.md)",
)
