"""The registry is the only list of backends, and a declaration cannot be half-written.

Kind: every field a backend must declare is checked at import (a Backend built without
one, or with a wrong one, raises); the example: a new backend whose options the loader
would have filled with OpenVINO's now gets only its own, checked against its engine.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Literal

import pytest

from engines import registry
from engines.backend import Backend, BackendSettings, RuntimeReading, RuntimeStatus
from engines.errors import BackendUnavailableError
from tests.engines import fake_tensorrt

ENGINES = Path(registry.__file__).parent


class ToySettings(BackendSettings):
    type: Literal["toy"] = "toy"


def toy_fields() -> dict[str, Any]:
    """A complete, valid declaration, as keyword arguments."""
    return {
        "name": "toy",
        "title": "Toy",
        "config": ToySettings,
        "options": lambda settings, state_dir: {},
        "modules": ("toy",),
        "read_runtime": lambda: RuntimeReading({"toy": "1.0"}),
        "judge_runtime": lambda versions, errors, devices: RuntimeStatus(True, "toy 1.0"),
        "version_floor": "1.0",
        "engine": "toy_engine:ToyEngine",
        "auto_rank": 99,
        "hardware": ("cpu",),
        "install_hint": "pip install toy",
    }


def test_a_complete_declaration_is_accepted() -> None:
    assert Backend(**toy_fields()).name == "toy"


REQUIRED = [f.name for f in dataclasses.fields(Backend)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


@pytest.mark.parametrize("missing", REQUIRED)
def test_leaving_out_any_required_field_fails(missing: str) -> None:
    fields = toy_fields()
    del fields[missing]
    with pytest.raises(TypeError, match=missing):
        Backend(**fields)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "two words", "name must be an identifier"),
        ("config", dict, "config must be a BackendSettings subclass"),
        ("name", "other", "config.type must be Literal['other']"),
        ("options", None, "options must be callable"),
        ("read_runtime", "openvino", "read_runtime must be callable"),
        ("judge_runtime", 3, "judge_runtime must be callable"),
        ("engine", "engines.toy.ToyEngine", "engine must be 'module:Class'"),
        ("engine", "engines.toy:", "engine must be 'module:Class'"),
        ("version_floor", "", "version_floor is empty"),
        ("hardware", (), "hardware must be some of"),
        ("hardware", ("tpu",), "hardware must be some of"),
        ("modules", (), "modules must name the runtime modules"),
        ("install_hint", "", "install_hint must say something"),
    ],
)
def test_a_wrong_field_fails_with_what_is_wrong(field: str, value: object, message: str) -> None:
    fields = {**toy_fields(), field: value}
    with pytest.raises(TypeError, match="backend .* is declared wrongly: .*" + _escape(message)):
        Backend(**fields)


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "[]().*'" else c for c in text)


def test_clashing_declarations_are_refused() -> None:
    toy = Backend(**toy_fields())
    with pytest.raises(TypeError, match="two backends share the name toy"):
        registry.check([toy, toy])
    other = Backend(**{**toy_fields(), "name": "other", "engine": "x:Y",
                       "config": _settings("other")})
    with pytest.raises(TypeError, match="two backends share the auto_rank 99"):
        registry.check([toy, other])


def _settings(name: str) -> type[BackendSettings]:
    return type(f"{name}Settings", (BackendSettings,), {
        "__annotations__": {"type": Literal[name]}, "type": name,  # type: ignore[valid-type]
    })


def test_a_declaration_module_without_backend_fails_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("engines.half_written_config")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(registry, "DECLARATIONS", (*registry.DECLARATIONS, module.__name__))
    registry.declared.cache_clear()
    try:
        with pytest.raises(TypeError, match="half_written_config does not declare BACKEND"):
            registry.declared()
    finally:
        monkeypatch.undo()
        registry.declared.cache_clear()


def test_the_registry_lists_each_backend_once_in_auto_order() -> None:
    names = [backend.name for backend in registry.backends()]
    assert names == ["tensorrt", "openvino", "onnxruntime"]  # ONNX Runtime after OpenVINO
    assert tuple(names) == registry.AUTO_ORDER
    assert set(registry.BACKENDS) == set(names)
    assert [b.name for b in registry.declared()] == ["openvino", "tensorrt", "onnxruntime"]


def test_declarations_never_import_a_runtime() -> None:
    """The registry is read at config load: that must not load OpenVINO & co."""
    runtimes = sorted({m for b in registry.declared() for m in b.modules})
    code = ("import sys, engines.registry as r, edge_agent.config.model; r.declared(); "
            f"print([m for m in {runtimes!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def engine_parameters(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    if backend.name == "tensorrt":
        fake_tensorrt.install(monkeypatch)  # no TensorRT here: its engine against the fakes
    module_name, _, class_name = backend.engine.partition(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    parameters = inspect.signature(engine_class.__init__).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("backend", registry.declared(), ids=lambda b: b.name)
def test_each_backends_options_are_its_own_engines_keywords(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kind behind "a new backend silently receives OpenVINO's options"."""
    options = backend.options(backend.default_settings(), Path("/var/lib/edge-agent"))
    accepted = engine_parameters(backend, monkeypatch)
    assert set(options) <= accepted, set(options) - accepted
    assert {"family", "class_names", "name"} <= accepted  # what loading adds for the model


@pytest.mark.parametrize("backend", registry.declared(), ids=lambda b: b.name)
def test_a_missing_runtime_is_named_with_what_to_do(backend: Backend) -> None:
    versions = dict.fromkeys(backend.modules)
    errors = dict.fromkeys(backend.modules, "No module named 'x'")
    status = backend.judge_runtime(versions, errors, ())
    assert not status.usable
    assert "does not import: No module named 'x'" in status.problem


@pytest.mark.parametrize("backend", registry.declared(), ids=lambda b: b.name)
def test_a_runtime_below_the_floor_is_not_usable(backend: Backend) -> None:
    floor_major = int(backend.version_floor.split(".")[0])
    versions = dict.fromkeys(backend.modules, "1.0.0")
    versions[backend.modules[0]] = f"{floor_major - 1}.0"
    status = backend.judge_runtime(versions, {}, ())
    assert not status.usable, status
    at_floor = {**versions, backend.modules[0]: backend.version_floor}
    assert backend.judge_runtime(at_floor, {}, ()).usable


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(BackendUnavailableError,
                       match="unknown backend 'nosuch'; known backends: openvino, tensorrt, "
                             "onnxruntime"):
        registry.backend_class("nosuch")


def test_no_module_in_engines_imports_edge_agent() -> None:
    """engines/ knows models and tensors, never the daemon (house rule)."""
    for path in ENGINES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "edge_agent" for n in names), path.name
