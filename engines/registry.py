"""Backend name -> import path; a backend is imported only when it is chosen.

A backend whose runtime is missing raises BackendUnavailableError saying what to
install: it never disappears silently from the choice.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from engines.base import Engine
from engines.errors import BackendUnavailableError

BACKENDS: dict[str, str] = {
    "openvino": "engines.openvino:OpenVinoEngine",
    "tensorrt": "engines.tensorrt:TensorRtEngine",
}
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "openvino")
"""`backend: auto` tries these in order (see docs/backends.md)."""


def backend_class(name: str) -> type[Engine]:
    """Import and return one backend's Engine class."""
    if name not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}"
        )
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(f"backend {name!r} cannot be imported: {exc}") from exc
    engine_class: type[Engine] = getattr(module, class_name)
    return engine_class


def open_engine(backend: str, model_path: Path, **options: Any) -> Engine:
    """Load `model_path` on `backend` with that backend's own options."""
    return backend_class(backend)(model_path, **options)
