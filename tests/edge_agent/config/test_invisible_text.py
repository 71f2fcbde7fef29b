"""Unicode format (Cf) and control (Cc) characters are refused in every text field, as
ASCII controls are: a U+202E in `topic_prefix` was accepted and printed raw (it reverses
what a terminal or the journal shows) while the same character in an id was refused."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.config.rules import printable, text_problem
from edge_agent.errors import ConfigError

BASE = """\
device_id: {device_id}
model:
  path: {model}
  name: {name}
  classes: [person, {klass}]
mqtt:
  host: 127.0.0.1
  port: 1883
  topic_prefix: {topic_prefix}
  client_id: {client_id}
  username: {username}
  password: {password}
cameras:
  - id: {camera}
    type: rtsp
    url: {url}
"""
CLEAN = {
    "device_id": "box1", "model": "models/yolox.onnx", "topic_prefix": "site/a",
    "client_id": "box1-agent", "username": "agent", "password": "hunter22",
    "camera": "door", "name": "Front door", "klass": "car", "url": "rtsp://10.0.0.5/stream",
}
# (placeholder, key path in the error, line)
FIELDS = [
    ("device_id", "device_id", 1), ("model", "model.path", 3), ("name", "model.name", 4),
    ("klass", "model.classes[1]", 5),
    ("topic_prefix", "mqtt.topic_prefix", 9), ("client_id", "mqtt.client_id", 10),
    ("username", "mqtt.username", 11), ("password", "mqtt.password", 12),
    ("camera", "cameras[0].id", 14), ("url", "cameras[0].url", 16),
]
CHARACTERS = [
    "\u202e", "\u202d", "\u202a", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",
    "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u061c", "\u00ad", "\u2060",
    "\U000e0001",
]


def _write(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE.format(**(CLEAN | values)), encoding="utf-8")
    return path


def test_the_clean_config_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path))
    assert config.model.name == "Front door"


@pytest.mark.parametrize("char", CHARACTERS, ids=[f"U+{ord(c):04X}" for c in CHARACTERS])
@pytest.mark.parametrize(("field", "key", "line"), FIELDS, ids=[f[0] for f in FIELDS])
def test_every_text_field_refuses_format_characters(
    tmp_path: Path, field: str, key: str, line: int, char: str
) -> None:
    clean = CLEAN[field]
    value = clean[:2] + char + clean[2:]
    path = _write(tmp_path, **{field: value})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert char not in text  # never printed raw
    assert caught.value.problems == [
        f"{path}:{line}: {key}: contains an invisible format character "
        f"(U+{ord(char):04X} {unicodedata.name(char)}) at position 3; "
        "only printable text is allowed"
    ], text


@pytest.mark.parametrize("char", ["\u0080", "\u009b", "\u0085"])
def test_c1_controls_are_named_as_controls(char: str) -> None:
    problem = text_problem(f"ab{char}c", "topic_prefix")
    assert problem is not None
    assert problem.startswith(f"contains a control character (U+{ord(char):04X}")


@pytest.mark.parametrize("value", ["Front door", "Haustür", "カメラ 1", "caméra/entrée", "ü" * 50])
def test_ordinary_unicode_text_stays_allowed(value: str) -> None:
    assert text_problem(value, "name") is None
    assert printable(value) == value


def test_printable_escapes_what_it_does_not_show() -> None:
    assert printable("a\u202eb\x00c\u200b") == "a\\u202eb\\x00c\\u200b"


def test_check_config_refuses_the_reviewers_example(tmp_path: Path) -> None:
    path = _write(tmp_path, topic_prefix="site/\u202eevil")
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "\u202e" not in done.stdout + done.stderr
    assert (f"{path}:9: mqtt.topic_prefix: contains an invisible format character "
            "(U+202E RIGHT-TO-LEFT OVERRIDE) at position 6") in done.stderr


@pytest.mark.parametrize("char", CHARACTERS[:6], ids=[f"U+{ord(c):04X}" for c in CHARACTERS[:6]])
def test_error_lines_never_carry_the_raw_character(tmp_path: Path, char: str) -> None:
    """An unknown key or a wrong-typed value quoted back in the error is escaped."""
    path = tmp_path / "agent.yaml"
    text = BASE.format(**CLEAN).replace("  port: 1883\n", f"  po{char}rt: 1883\n")
    path.write_text(text.replace("device_id: box1", f"device_id: [bo{char}x]"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert char not in str(caught.value)
    assert f"\\u{ord(char):04x}" in str(caught.value)
