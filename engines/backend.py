"""What a backend declares about itself: the one description the registry keeps.

Each backend has a light `engines/<name>_config.py` (it never imports the runtime) with
its settings type, how those become engine keyword options, how to read and judge its
runtime on this box, and its place in `auto`. The engine class itself is named as
"module:Class" and imported only when the backend is chosen. A declaration that leaves
a field out, or gets one wrong, fails at import (see `Backend.__post_init__`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict

from engines.metadata import is_decimal

HARDWARE_KINDS = ("nvidia", "intel-gpu", "intel-npu", "cpu")
"""What a backend can want for `auto`; the selection policy knows how to find each."""


class BackendSettings(BaseModel):
    """Base of every backend's config section (the members of the `type:` union).

    The agent adds its own strict value rules on top (edge_agent.config.model).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class RuntimeReading:
    """What importing a backend's runtime modules found on this box, before any judging.

    `versions` maps module label -> version (None: it does not import), `errors` maps a
    label -> why not, `devices` is what the runtime lists (OpenVINO devices, ORT providers).
    """

    versions: Mapping[str, str | None]
    errors: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RuntimeStatus:
    """Whether a backend can run here: `summary` names what is there, `problem` why not."""

    usable: bool
    summary: str
    problem: str = ""
    devices: tuple[str, ...] = ()


Options = Callable[[Any, Path], dict[str, Any]]
"""(the backend's settings, the agent's state dir) -> keyword options of its engine."""
Judge = Callable[[Mapping[str, str | None], Mapping[str, str], tuple[str, ...]], RuntimeStatus]
"""(versions, errors, devices) -> status: pure, so recorded boxes can be judged in tests."""


@dataclass(frozen=True)
class Backend:
    """Everything the agent needs to know about one inference backend."""

    name: str
    """The registry key and the config's `type:` value."""
    title: str
    """How people write it in messages: "OpenVINO", "ONNX Runtime"."""
    config: type[BackendSettings]
    """Its config section; its `type` field is Literal[name]."""
    options: Options
    modules: tuple[str, ...]
    """Labels of the runtime modules it reads (the keys of RuntimeReading.versions)."""
    read_runtime: Callable[[], RuntimeReading]
    """Import its runtime modules now; never raises."""
    judge_runtime: Judge
    version_floor: str
    """The oldest runtime version the engine class works with."""
    engine: str
    """"module:Class" of its Engine, imported only when chosen."""
    auto_rank: int
    """Lower goes first under `backend: auto`."""
    hardware: tuple[str, ...]
    """What it runs on, in the order `auto` tries it (see HARDWARE_KINDS)."""
    install_hint: str
    """What to do when the runtime is missing, in one sentence."""
    required: bool = False
    """A hard dependency of the package: `auto` tries it on CPU even where the probe
    says it does not import, so the load error is what the boot reports."""
    takes_auto_device: bool = False
    """`backend: {type: auto, device: X}` means this backend on device X."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise TypeError(f"backend {self.name!r} is declared wrongly: " + "; ".join(problems))

    def runtime_status(self) -> RuntimeStatus:
        """Whether its runtime is present on this box now, and why not."""
        reading = self.read_runtime()
        return self.judge_runtime(reading.versions, reading.errors, reading.devices or ())

    def default_settings(self) -> BackendSettings:
        """The settings `auto` uses when it picks this backend."""
        return self.config.model_validate({"type": self.name})

    def engine_class(self) -> type:
        """Import the engine class; BackendUnavailableError where the runtime is missing."""
        module_name, _, class_name = self.engine.partition(":")
        module = importlib.import_module(module_name)
        found: type = getattr(module, class_name)
        return found


def _problems(backend: Backend) -> list[str]:
    """Each way a declaration can be incomplete or inconsistent, in words."""
    problems = []
    if not backend.name or not backend.name.isidentifier():
        problems.append("name must be an identifier")
    if not isinstance(backend.config, type) or not issubclass(backend.config, BackendSettings):
        problems.append("config must be a BackendSettings subclass")
    else:
        type_field = backend.config.model_fields.get("type")
        if type_field is None or get_args(type_field.annotation) != (backend.name,):
            problems.append(f"config.type must be Literal[{backend.name!r}]")
    for name in ("options", "read_runtime", "judge_runtime"):
        if not callable(getattr(backend, name)):
            problems.append(f"{name} must be callable")
    module_name, colon, class_name = backend.engine.partition(":")
    if not (colon and module_name and class_name.isidentifier()):
        problems.append(f"engine must be 'module:Class', not {backend.engine!r}")
    if not backend.modules:
        problems.append("modules must name the runtime modules it reads")
    if not backend.version_floor:
        problems.append("version_floor is empty")
    if not backend.hardware or any(kind not in HARDWARE_KINDS for kind in backend.hardware):
        problems.append(f"hardware must be some of {', '.join(HARDWARE_KINDS)}")
    if not backend.install_hint or not backend.title:
        problems.append("title and install_hint must say something")
    return problems


def import_versions(
    modules: Mapping[str, str], version: Callable[[str, Any], str] | None = None
) -> RuntimeReading:
    """Import each `label -> module` now; a failure is recorded with its message."""
    versions: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for label, module_name in modules.items():
        try:
            module = importlib.import_module(module_name)
        except (ImportError, OSError) as exc:  # OSError: a shared library is missing
            versions[label] = None
            errors[label] = str(exc) or type(exc).__name__
            continue
        versions[label] = (version or _plain_version)(label, module)
    return RuntimeReading(versions, errors)


def _plain_version(label: str, module: Any) -> str:
    return str(getattr(module, "__version__", "unknown"))


def version_tuple(text: str) -> tuple[int, ...] | None:
    """"2024.6.0" -> (2024, 6, 0); None where the leading part is not a number."""
    parts = []
    for part in text.split("."):
        digits = ""
        for char in part:
            if not is_decimal(char):
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


def below_floor(version: str | None, floor: str) -> bool:
    """True only when the version is readable and older than the floor."""
    have, want = version_tuple(version or ""), version_tuple(floor)
    return have is not None and want is not None and have < want


def judge_module(
    versions: Mapping[str, str | None], errors: Mapping[str, str], devices: tuple[str, ...],
    *, module: str, title: str, floor: str, missing_hint: str = "",
) -> RuntimeStatus:
    """The status of a backend whose runtime is one Python module with a version floor."""
    version = versions.get(module)
    if version is None:
        why = errors.get(module, "not installed")
        return RuntimeStatus(False, "", f"{title} does not import: {why}{missing_hint}", devices)
    if below_floor(version, floor):
        return RuntimeStatus(False, f"{module} {version}", f"{title} {version} is older than "
                             f"{floor}; pip install '{module}>={floor}'", devices)
    return RuntimeStatus(True, f"{module} {version}", "", devices)


def judge_modules(
    versions: Mapping[str, str | None], errors: Mapping[str, str], labels: tuple[str, ...],
    *, floor_label: str, floor: str, too_old: str,
) -> tuple[str, str]:
    """(summary, problem) for a backend that needs every module in `labels`.

    `too_old` is the sentence (with {version}) for a `floor_label` module below `floor`.
    """
    missing = [f"{label} does not import: {errors.get(label, 'not installed')}"
               for label in labels if versions.get(label) is None]
    if below_floor(versions.get(floor_label), floor):
        missing.insert(0, too_old.format(version=versions.get(floor_label)))
    summary = " and ".join(f"{label} {versions[label]}" for label in labels
                           if versions.get(label) is not None)
    return summary, "; ".join(missing)
