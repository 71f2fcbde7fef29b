"""The one list of backends; each is imported only when it is chosen.

`DECLARATIONS` names each backend's light declaration module (engines/<name>_config.py,
which never imports the runtime); its `BACKEND` says everything else (engines.backend).
The config's `type:` union, the `auto` order, the selection policy, the probe and the
loader all read this list. A backend whose runtime is missing raises
BackendUnavailableError saying what to install: it never disappears silently.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engines.backend import Backend
from engines.base import Engine
from engines.errors import BackendUnavailableError

DECLARATIONS: tuple[str, ...] = (
    "engines.openvino_config",
    "engines.tensorrt_config",
    "engines.onnxruntime_config",
)
"""Adding a backend adds one line here (docs/backends.md, "How to add a backend"). This is
the order the config's `type:` values are listed in; `auto` goes by each `auto_rank`."""


def check(declared: Iterable[Backend]) -> tuple[Backend, ...]:
    """The backends as declared, or a TypeError naming what clashes between them."""
    found = tuple(declared)
    problems = []
    for kind, values in (("name", [b.name for b in found]), ("auto_rank",
                                                             [b.auto_rank for b in found])):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            problems.append(f"two backends share the {kind} {', '.join(twice)}")
    if [b.takes_auto_device for b in found].count(True) > 1:
        problems.append("only one backend may take `auto`'s device")
    if problems:
        raise TypeError("; ".join(problems))
    return found


@functools.cache
def declared() -> tuple[Backend, ...]:
    """Every backend, in the order of DECLARATIONS."""
    found = []
    for module_name in DECLARATIONS:
        backend = getattr(importlib.import_module(module_name), "BACKEND", None)
        if not isinstance(backend, Backend):
            raise TypeError(f"{module_name} does not declare BACKEND = Backend(...)")
        found.append(backend)
    return check(found)


def backends() -> tuple[Backend, ...]:
    """Every backend in `auto` order (lowest auto_rank first)."""
    return tuple(sorted(declared(), key=lambda backend: backend.auto_rank))


def get(name: str) -> Backend:
    """One backend's declaration, or BackendUnavailableError listing the known ones."""
    for backend in backends():
        if backend.name == name:
            return backend
    known = ", ".join(b.name for b in declared())
    raise BackendUnavailableError(f"unknown backend {name!r}; known backends: {known}")


BACKENDS: dict[str, str] = {backend.name: backend.engine for backend in backends()}
"""name -> "module:Class" of its engine."""
AUTO_ORDER: tuple[str, ...] = tuple(backend.name for backend in backends())
"""`backend: auto` considers these in order (see docs/backends.md)."""


def backend_class(name: str) -> type[Engine]:
    """Import and return one backend's Engine class."""
    backend = get(name)
    try:
        engine_class: type[Engine] = backend.engine_class()
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} cannot be imported: {exc}; {backend.install_hint}"
        ) from exc
    return engine_class


def open_engine(backend: str, model_path: Path, **options: Any) -> Engine:
    """Load `model_path` on `backend` with that backend's own options."""
    return backend_class(backend)(model_path, **options)
