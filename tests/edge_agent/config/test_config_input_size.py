"""`model.input_size`: auto, square or [height, width]; a bad value names file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.errors import ConfigError

TEMPLATE = """\
device_id: box-1
model:
  path: models/yolox.onnx
{line}mqtt:
  host: 127.0.0.1
cameras:
  - id: door
    type: usb
"""


def _load(tmp_path: Path, line: str) -> object:
    path = tmp_path / "agent.yaml"
    path.write_text(TEMPLATE.format(line=line))
    return load_config(path).model.input_size


@pytest.mark.parametrize(
    ("line", "expected"),
    [("", "auto"), ("  input_size: auto\n", "auto"), ("  input_size: square\n", "square"),
     ("  input_size: [384, 640]\n", (384, 640)), ("  input_size: [640, 384]\n", (640, 384))],
)
def test_valid_input_sizes(tmp_path: Path, line: str, expected: object) -> None:
    assert _load(tmp_path, line) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [("wide", "must be auto, square or [height, width], not 'wide'"),
     ("[300, 640]", "height 300 must be a multiple of 32 from 32 to 8192"),
     ("[384, 9000]", "width 9000 must be a multiple of 32 from 32 to 8192"),
     ("[384]", "must be auto, square or [height, width] in pixels, not [384]"),
     ("640", "must be auto, square or [height, width] in pixels, not 640"),
     ("[true, 640]", "must be auto, square or [height, width] in pixels, not [True, 640]"),
     ("[384.5, 640]", "in pixels, not [384.5, 640]")],
)
def test_bad_input_size_names_file_line_and_what_is_valid(
    tmp_path: Path, value: str, says: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"  input_size: {value}\n")
    message = str(caught.value)
    assert "agent.yaml:4: model.input_size: " in message, message
    assert says in message
