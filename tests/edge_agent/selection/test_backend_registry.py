"""Selection reads the registry: ONNX Runtime joins `auto` after OpenVINO, gets its own
options, and every backend's config section follows the agent's value rules.

The policy is pure (recorded hardware trees, injected Runtimes); the loads are real.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.config.loader import check_config, load_config
from edge_agent.config.model import BACKEND_SECTIONS, AgentConfig, AutoBackend, BackendConfig
from edge_agent.errors import ConfigError
from edge_agent.selection import loading
from edge_agent.selection.loading import select_engine
from edge_agent.selection.policy import Candidate, candidates, passed_over
from edge_agent.selection.probe import HardwareReport, Runtimes, probe
from engines import openvino, registry
from engines.errors import EngineError

TREES = Path(__file__).resolve().parents[2] / "hardware"
MISSING = {"tensorrt": "No module named 'tensorrt'", "pycuda": "No module named 'pycuda'"}
WITH_ORT = Runtimes(openvino="2024.6.0", openvino_devices=("CPU",), onnxruntime="1.20.1",
                    onnxruntime_devices=("CPUExecutionProvider",), errors=MISSING)
WITHOUT_ORT = Runtimes(openvino="2024.6.0", openvino_devices=("CPU",),
                       errors={**MISSING, "onnxruntime": "No module named 'onnxruntime'"})
OLD_ORT = Runtimes(openvino="2024.6.0", openvino_devices=("CPU",), onnxruntime="1.12.0")


def on(tree: str, runtimes: Runtimes) -> HardwareReport:
    return probe(TREES / tree, runtimes)


def order(backend: BackendConfig, report: HardwareReport) -> list[str]:
    return [c.label for c in candidates(backend, report)]


@pytest.mark.parametrize("tree", ["vm", "intel_nuc", "jetson_orin", "xeon_dgpu", "jetson_nano"])
def test_onnxruntime_comes_after_openvino_where_it_imports(tree: str) -> None:
    with_ort, without = order(AutoBackend(), on(tree, WITH_ORT)), order(
        AutoBackend(), on(tree, WITHOUT_ORT))
    assert with_ort == [*without, "onnxruntime"]
    assert without[-1] == "openvino/CPU"
    assert candidates(AutoBackend(), on(tree, WITH_ORT))[-1].reason == (
        "auto: ONNX Runtime on CPU (onnxruntime 1.20.1)")


def test_an_onnxruntime_below_its_floor_is_not_tried() -> None:
    assert order(AutoBackend(), on("vm", OLD_ORT)) == ["openvino/CPU"]
    assert Runtimes(onnxruntime="1.12.0").status("onnxruntime").problem.startswith(
        "onnxruntime 1.12.0 is older than 1.16")


def test_a_cpu_only_backend_passes_nothing_over() -> None:
    """No accelerator wants ONNX Runtime, so its absence never makes a boot degraded."""
    assert passed_over(AutoBackend(), on("vm", WITHOUT_ORT)) == []


def test_forced_onnxruntime_is_the_only_candidate() -> None:
    section = BACKEND_SECTIONS["onnxruntime"].model_validate({"type": "onnxruntime"})
    assert candidates(section, on("xeon_dgpu", WITH_ORT)) == [
        Candidate("onnxruntime", None, "backend: onnxruntime set in the config")
    ]


@pytest.mark.parametrize("name", [b.name for b in registry.declared()])
def test_each_candidate_gets_its_own_backends_options(name: str) -> None:
    """The example: under `auto`, a backend other than OpenVINO used to get OpenVINO's
    options. Now every candidate's options come from its own declaration."""
    backend = registry.get(name)
    device = "CPU" if "device" in backend.config.model_fields and name != "tensorrt" else None
    got = loading._options(AutoBackend(), Candidate(name, device, "test"), Path("/state"))
    settings = backend.default_settings()
    if device is not None:
        settings = backend.config.model_validate({**settings.model_dump(), "device": device})
    assert got == backend.options(settings, Path("/state"))


@pytest.mark.parametrize("name", [b.name for b in registry.declared()])
def test_every_backend_section_follows_the_value_rules(name: str) -> None:
    """YAML's yes/no must not become 1 or "True" in any backend's section."""
    section = BACKEND_SECTIONS[name]
    for field, info in section.model_fields.items():
        if field == "type" or info.annotation is bool:
            continue
        with pytest.raises(ValidationError):
            section.model_validate({"type": name, field: True})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        section.model_validate({"type": name, "no_such_key": 1})


def write_config(tmp_path: Path, samples: Path, backend: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(f"model:\n  path: {samples / 'models' / 'yolox_nano.onnx'}\n"
                    f"state_dir: {tmp_path / 'state'}\n"
                    "cameras:\n  - id: a\n    type: usb\n" + backend)
    return path


def test_the_onnxruntime_section_loads_and_runs(tmp_path: Path, samples: Path) -> None:
    config = load_config(write_config(
        tmp_path, samples, "backend:\n  type: onnxruntime\n  sessions_in_flight: 3\n"))
    selection = select_engine(config, on("vm", WITH_ORT))
    try:
        assert (selection.engine.backend, selection.engine.device) == ("onnxruntime", "CPU")
        assert selection.engine.parallelism == 3
        assert selection.reason == "backend: onnxruntime set in the config"
    finally:
        selection.engine.close()


def test_an_unknown_provider_is_named_in_the_config_error(tmp_path: Path, samples: Path) -> None:
    config = load_config(write_config(
        tmp_path, samples, "backend:\n  type: onnxruntime\n  providers: [NoSuchProvider]\n"))
    with pytest.raises(EngineError, match=r"^onnxruntime is set in the config and cannot load "
                                          r"the model: onnxruntime [\d.]+ has no NoSuchProvider"):
        select_engine(config, on("vm", WITH_ORT))


def test_onnxruntime_section_rejects_a_bad_value(tmp_path: Path, samples: Path) -> None:
    path = write_config(tmp_path, samples, "backend:\n  type: onnxruntime\n"
                        "  sessions_in_flight: 0\n")
    with pytest.raises(ConfigError, match=r"agent.yaml:9: backend.sessions_in_flight: out of "
                                          r"range \(got 0\); allowed: 1 to 16"):
        load_config(path)


def test_auto_falls_back_from_openvino_to_onnxruntime(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When OpenVINO cannot load the model, `auto` runs it on ONNX Runtime, degraded."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise EngineError("OpenVINO refused it for this test")

    monkeypatch.setattr(openvino.OpenVinoEngine, "__init__", refuse)
    config = AgentConfig(model={"path": samples / "models" / "yolox_nano.onnx"},
                         cameras=[{"id": "cam", "type": "usb"}], state_dir=tmp_path / "state")
    with caplog.at_level(logging.WARNING, logger="edge_agent.selection.loading"):
        selection = select_engine(config, on("vm", WITH_ORT))
    try:
        assert selection.engine.backend == "onnxruntime"
        assert selection.fallbacks == ("openvino/CPU: OpenVINO refused it for this test",)
        assert selection.reason == "auto: ONNX Runtime on CPU (onnxruntime 1.20.1)"
    finally:
        selection.engine.close()


@pytest.mark.parametrize("name", [b.name for b in registry.declared()])
def test_check_config_describes_every_backend_type(
    tmp_path: Path, samples: Path, name: str
) -> None:
    """check-config crashed on a backend section without a `device` (onnxruntime)."""
    result = check_config(write_config(tmp_path, samples, f"backend:\n  type: {name}\n"))
    assert result.ok, result
    assert f"  backend: {name}" in result.text
