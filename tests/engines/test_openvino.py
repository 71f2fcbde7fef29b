"""OpenVINO engine: bad model files give errors naming the file; metadata is read from it."""

from __future__ import annotations

from pathlib import Path

import openvino as ov
import pytest

from engines import registry
from engines.errors import BackendUnavailableError, ModelLoadError
from engines.openvino import OpenVinoEngine
from tests.helpers import onnx_metadata_entry


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nowhere\.onnx: file not found"):
        OpenVinoEngine(tmp_path / "nowhere.onnx")


def test_truncated_file(tmp_path: Path, samples: Path) -> None:
    broken = tmp_path / "cut.onnx"
    broken.write_bytes((samples / "models" / "yolox_nano.onnx").read_bytes()[:100_000])
    with pytest.raises(ModelLoadError) as caught:
        OpenVinoEngine(broken)
    assert str(broken) in str(caught.value)
    assert "truncated or corrupt" in str(caught.value)


def test_ir_without_weights(tmp_path: Path) -> None:
    xml = tmp_path / "model.xml"
    xml.write_text("<net/>")
    with pytest.raises(ModelLoadError, match=r"model\.bin is missing"):
        OpenVinoEngine(xml)


def test_unknown_device_is_a_clear_error(samples: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not compile on NOSUCH"):
        OpenVinoEngine(samples / "models" / "yolox_nano.onnx", device="NOSUCH")


def test_class_names_from_onnx_metadata(tmp_path: Path, samples: Path) -> None:
    """Ultralytics writes `names` into the ONNX metadata; no labels file is needed."""
    model = tmp_path / "named.onnx"
    names = "{" + ", ".join(f"{i}: 'thing{i}'" for i in range(80)) + "}"
    model.write_bytes(
        (samples / "models" / "yolox_nano.onnx").read_bytes()
        + onnx_metadata_entry(b"names", names.encode())
    )
    with OpenVinoEngine(model) as engine:
        assert engine.info.class_names[:2] == ("thing0", "thing1")
        assert len(engine.info.class_names) == 80
        assert engine.info.metadata["names"] == names


def test_registry_rejects_unknown_backend() -> None:
    with pytest.raises(BackendUnavailableError, match="known backends: openvino"):
        registry.backend_class("nosuch")


def test_ir_folder_stands_for_its_xml(tmp_path: Path, samples: Path) -> None:
    """Ultralytics users often point at the *_openvino_model folder itself."""


    folder = tmp_path / "yolox_openvino_model"
    folder.mkdir()
    model = ov.Core().read_model(str(samples / "models" / "yolox_nano.onnx"))
    ov.save_model(model, str(folder / "yolox.xml"))
    with OpenVinoEngine(folder) as engine:
        assert engine.info.path == str(folder / "yolox.xml")
        assert engine.info.family == "yolox"
    (folder / "other.xml").write_text("<net/>")
    with pytest.raises(ModelLoadError, match=r"2 \.xml files"):
        OpenVinoEngine(folder)
