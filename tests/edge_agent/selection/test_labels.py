"""Labels files: read as the config is read (BOM, encodings, clear errors), and refused
when they do not name every class of the model (real OpenVINO on the sample model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config.loader import check_config, load_config
from edge_agent.selection.loading import model_class_count, select_engine
from edge_agent.selection.probe import probe
from engines.errors import LabelsFileError
from engines.model_info import read_labels

NAMES = ["person", "bicycle", "car"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\n".join(NAMES).encode(), NAMES),
        (b"\xef\xbb\xbf" + "\n".join(NAMES).encode(), NAMES),  # UTF-8 with a BOM
        ("\r\n".join(NAMES).encode() + b"\r\n", NAMES),  # Windows line ends
        ("\n\n".join(NAMES).encode() + b"\n\n  \n", NAMES),  # blank lines
        (b"traffic light\nstop sign\n", ["traffic light", "stop sign"]),
        ("personne\nvélo\n".encode(), ["personne", "vélo"]),
    ],
    ids=["plain", "bom", "crlf", "blank-lines", "spaces-in-names", "utf8-accents"],
)
def test_labels_read_as_utf8_with_or_without_bom(
    tmp_path: Path, raw: bytes, expected: list[str]
) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(raw)
    assert list(read_labels(path)) == expected


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ("person\nvélo\n".encode("latin-1"), ["line 2: not UTF-8 text (byte 0xe9)", "save it"]),
        ("person\n".encode("utf-16"), ["line 1: not UTF-8 text (byte 0xff)"]),
        (b"a\n" * 10 + b"\x80\n", ["line 11: not UTF-8 text (byte 0x80)"]),
    ],
    ids=["latin-1", "utf-16", "stray-byte"],
)
def test_labels_in_another_encoding_are_refused_naming_line_and_byte(
    tmp_path: Path, raw: bytes, fragments: list[str]
) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(raw)
    with pytest.raises(LabelsFileError) as caught:
        read_labels(path)
    message = str(caught.value)
    assert message.startswith(f"labels file {path} "), message
    for fragment in fragments:
        assert fragment in message, message
    assert "cannot load model" not in message


def test_a_missing_labels_file_is_named_as_a_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "coco.names"
    with pytest.raises(LabelsFileError) as caught:
        read_labels(path)
    assert str(caught.value).startswith(f"labels file {path} not found (one class name per line")
    with pytest.raises(LabelsFileError, match=r"cannot be read: not a regular file \(a dir"):
        read_labels(tmp_path)


@pytest.mark.parametrize(
    ("family", "shapes", "count"),
    [
        ("yolox", ((1, 8400, 85),), 80),
        ("yolov5", ((1, 25200, 8),), 3),
        ("ultralytics", ((1, 84, 8400),), 80),
        ("ultralytics", ((1, 5, 8400),), 1),
        ("end2end", ((1, 300, 6),), None),  # a class id column: no count to check
        ("ssd", ((1, 1, 100, 7),), None),
        ("ssd", ((1, 100, 4), (1, 100, 91)), None),  # counts a background class
        ("yolox", (), None),
    ],
)
def test_class_count_per_family(
    family: str, shapes: tuple[tuple[int, ...], ...], count: int | None
) -> None:
    assert model_class_count(family, shapes) == count


def _config(tmp_path: Path, samples: Path, labels: Path) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: box1\nstate_dir: {tmp_path / 'state'}\n"
        f"model:\n  path: {samples / 'models' / 'yolox_nano.onnx'}\n  labels: {labels}\n"
        "backend:\n  type: openvino\n  device: CPU\n"
        "cameras:\n  - id: cam\n    type: usb\n"
    )
    return config


def test_three_labels_for_an_80_class_model_are_refused(tmp_path: Path, samples: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    config = load_config(_config(tmp_path, samples, labels))
    with pytest.raises(LabelsFileError) as caught:
        select_engine(config, probe())
    message = str(caught.value)
    assert f"labels file {labels} has 3 names but the model has 80 classes" in message, message

    full = (samples / "models" / "coco_labels.txt").read_bytes()
    labels.write_bytes(b"\xef\xbb\xbf" + full)  # all 80, with a BOM: accepted, BOM gone
    selection = select_engine(config, probe())
    try:
        names = selection.engine.info.class_names
        assert len(names) == 80
        assert names[0] == "person"
    finally:
        selection.engine.close()


def test_check_config_refuses_a_labels_file_that_is_not_utf8(
    tmp_path: Path, samples: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes("person\nvélo\n".encode("latin-1"))
    config = _config(tmp_path, samples, labels)
    result = check_config(config)
    assert not result.ok
    assert f"{config}:5: model.labels: labels file {labels} line 2: not UTF-8" in result.text


def test_agent_with_a_missing_labels_file_names_it(tmp_path: Path, samples: Path) -> None:
    """End to end: the real agent exits non-zero with one line naming the labels file."""
    labels = tmp_path / "missing-labels.txt"
    config = _config(tmp_path, samples, labels)
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0, done.stderr
    assert f"labels file {labels} not found (one class name per line" in done.stderr
    assert "cannot load model" not in done.stderr
    assert "Traceback" not in done.stderr
