"""Malformed model metadata, loaded for real: a bad `metadata.yaml` beside the model or a
bad `names` in the ONNX metadata_props is a ModelLoadError naming the file (and the key),
in bounded time and memory, through both CPU backends.

Before the fix a 352-byte alias chain in metadata.yaml expanded to gigabytes (safe_load,
then repr), and `names: {0: person, a: car}` loaded, then crashed the camera's thread
with "'<' not supported between 'str' and 'int'".
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import pytest

from engines.errors import ModelLoadError
from engines.model_info import class_names_from_metadata, image_size_from_metadata
from engines.onnxruntime import OnnxRuntimeEngine
from engines.openvino import OpenVinoEngine
from tests.helpers import onnx_metadata_entry


def billion_laughs(levels: int = 9) -> str:
    lines = ["a: &a [x,x,x,x,x,x,x,x,x]"]
    for level in range(1, levels):
        prev, this = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{this}: &{this} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + f"\nnames: *{chr(ord('a') + levels - 1)}\n"


SIDECARS = [
    pytest.param(billion_laughs(), "anchors and aliases", id="billion-laughs"),
    pytest.param("base: &b {0: person}\nnames: *b\n", "anchors and aliases", id="one-alias"),
    pytest.param("names: &n {0: person}\n", "anchors and aliases", id="anchor-only"),
    pytest.param("names: {0: person}\npad: '" + "x" * 70_000 + "'\n", "larger than 64 KiB",
                 id="huge"),
    pytest.param("names: " + "[" * 50 + "]" * 50 + "\n", "nested more than", id="deep"),
    pytest.param("names: {0: person, a: car}\n", "key 'a' is not a class id", id="mixed-keys"),
    pytest.param("names: {0: person, true: car}\n", "key True is not a class id",
                 id="bool-key"),
    pytest.param("names: {0: person, 2: car}\n", "id 1 is missing", id="gap-in-ids"),
    pytest.param("names: {-1: person, 0: car}\n", "id -1 is negative", id="negative-id"),
    pytest.param("names: {0: person, 1: person}\n", "both named 'person'", id="duplicate"),
    pytest.param("names: {0: person, 1: 7}\n", "class 1 is 7", id="number-name"),
    pytest.param("names: [person, [car]]\n", "class 1 is ['car']", id="list-name"),
    pytest.param("names: {0: person, 1: ''}\n", "class 1 is ''", id="empty-name"),
    pytest.param("names: 42\n", "not a list or map", id="scalar"),
    pytest.param("names: {}\n", "holds no class names", id="empty-map"),
    pytest.param("[1, 2]\n", "expected a mapping", id="not-a-mapping"),
    pytest.param("names: {0: person\n", "not valid YAML", id="broken-yaml"),
    pytest.param("names: !!python/object:os.system x\n", "not valid YAML", id="python-tag"),
]


@pytest.fixture
def folder(tmp_path: Path, samples: Path) -> Path:
    shutil.copy(samples / "models" / "yolox_nano.onnx", tmp_path / "model.onnx")
    return tmp_path


@pytest.mark.parametrize("backend", [OpenVinoEngine, OnnxRuntimeEngine])
@pytest.mark.parametrize(("text", "said"), SIDECARS)
def test_malformed_sidecar_is_refused_naming_the_file(
    folder: Path, backend: type, text: str, said: str
) -> None:
    (folder / "metadata.yaml").write_text(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as caught:
        backend(folder / "model.onnx").close()
    assert time.monotonic() - started < 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB
    message = str(caught.value)
    assert str(folder / "metadata.yaml") in message or str(folder / "model.onnx") in message
    assert said in message


def test_the_billion_laughs_is_the_issues_size() -> None:
    assert len(billion_laughs()) < 400


def test_a_good_sidecar_still_names_the_classes(folder: Path) -> None:
    (folder / "metadata.yaml").write_text("imgsz: [416, 416]\nnames: {0: person, 1: car}\n")
    with OpenVinoEngine(folder / "model.onnx") as engine:
        assert engine.info.class_names[:2] == ("person", "car")


@pytest.mark.parametrize(
    ("names", "said"),
    [
        ("{0: 'person', 'a': 'car'}", "key 'a' is not a class id"),
        ("{0: 'person', 2: 'car'}", "id 1 is missing"),
        ("[" * 200 + "]" * 200, "nested more than"),
        ("{0: '" + "x" * 70_000 + "'}", "at most"),
        ("{0: 'person', 1: None}", "class 1 is None"),
        ("person car", "not a list or map"),
    ],
    ids=["mixed-keys", "gap", "deep", "huge", "none-name", "not-a-literal"],
)
def test_malformed_onnx_names_are_refused(
    folder: Path, names: str, said: str
) -> None:
    model = folder / "model.onnx"
    model.write_bytes(model.read_bytes() + onnx_metadata_entry(b"names", names.encode()))
    for backend in (OpenVinoEngine, OnnxRuntimeEngine):
        with pytest.raises(ModelLoadError, match=r"model\.onnx") as caught:
            backend(model).close()
        assert said in str(caught.value)


def test_the_checker_accepts_lists_and_ordered_maps() -> None:
    assert class_names_from_metadata({"names": "['a', 'b']"}) == ("a", "b")
    assert class_names_from_metadata({"names": "{1: 'b', 0: 'a'}"}) == ("a", "b")
    assert class_names_from_metadata({"labels": "a b"}) == ("a", "b")


@pytest.mark.parametrize("imgsz", ["[0, 0]", "1", "[640]", "'640'", "[True, 640]", "[640, 1e9]"])
def test_an_unusable_imgsz_is_refused(imgsz: str) -> None:
    with pytest.raises(ModelLoadError, match=r"m\.onnx: metadata 'imgsz'"):
        image_size_from_metadata({"imgsz": imgsz}, "m.onnx")
    assert image_size_from_metadata({"imgsz": "[320, 480]"}) == (320, 480)
