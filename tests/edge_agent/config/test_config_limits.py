"""Issue 9 section 5, example by example: every file that once crashed, hung or passed
while unusable now fails with one located line (and `check-config` exits 2)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel

from edge_agent.config.loader import load_config
from edge_agent.config.model import (
    AgentConfig,
    AutoBackend,
    CsiCamera,
    DriftConfig,
    FileCamera,
    GstreamerCamera,
    HealthConfig,
    ModelConfig,
    MqttConfig,
    OpenVinoBackend,
    RtspCamera,
    SpoolConfig,
    TensorRtBackend,
    TlsConfig,
    UsbCamera,
)
from edge_agent.config.yaml_loader import MAX_NODES
from edge_agent.errors import ConfigError

BASE = """\
device_id: box-1
model:
  path: models/yolox.onnx
mqtt:
  host: 127.0.0.1
  port: 1883
cameras:
  - id: door
    type: usb
"""

LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)
ALIAS_BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + LAUGHS


def _mqtt(extra: str) -> str:
    return BASE.replace("  port: 1883\n", f"  port: 1883\n{extra}")


# (id, file text, line, fragments of the one message)
EXAMPLES = [
    ("tag-int", BASE.replace("1883", "!!int x"), 6, ["6:9: YAML error",
                                                     "cannot read 'x' as a whole number"]),
    ("tag-float", BASE.replace("1883", "!!float ''"), 6, ["cannot read '' as a number"]),
    ("tag-timestamp", BASE.replace("1883", "!!timestamp 2026-13-45"), 6,
     ["the tag !!timestamp is not allowed"]),
    ("tag-binary", BASE.replace("1883", "!!binary aGVsbG8="), 6, ["tag !!binary is not allowed"]),
    ("tag-python", BASE.replace("1883", "!!python/object:os.system x"), 6,
     ["is not allowed"]),
    ("4301-digits", BASE.replace("1883", "1" * 4301), 6, ["a number with 4301 digits"]),
    ("500-deep-brackets", BASE + "extra: " + "[" * 500 + "]" * 500 + "\n", 10,
     ["nested more than 32 levels deep"]),
    ("500-deep-maps", BASE + "extra: " + "{a: " * 500 + "1" + "}" * 500 + "\n", 10,
     ["nested more than 32 levels deep"]),
    ("256-char-model-path", BASE.replace("yolox.onnx", "y" * 256 + ".onnx"), 3,
     ["model.path: file path too long for Linux", "255 per name"]),
    ("alias-bomb", ALIAS_BOMB + BASE, 4, [f"aliases expand this to more than {MAX_NODES} values"]),
    ("alias-cycle", "x: &x [1, *x]\n" + BASE, 1, ["an alias refers to the section that holds it"]),
    ("password-without-username", _mqtt("  password: s3cret\n"), 7,
     ["mqtt.password: password is set but username is not"]),
    ("missing-ca-file", _mqtt("  tls:\n    ca_file: /nonexistent/ca.pem\n"), 8,
     ["mqtt.tls.ca_file: TLS CA file /nonexistent/ca.pem not found"]),
    ("key-without-certificate", _mqtt("  tls:\n    key_file: client.key\n"), 8,
     ["mqtt.tls.key_file: key_file is set but cert_file is not"]),
    ("nul-in-prefix", _mqtt('  topic_prefix: "site\\0"\n'), 7,
     ["mqtt.topic_prefix: contains a control character ('\\x00') at position 5"]),
    ("newline-in-client-id", _mqtt('  client_id: "a\\nb"\n'), 7,
     ["mqtt.client_id: contains a control character ('\\n')"]),
    ("escape-in-username", _mqtt('  username: "ad\\emin"\n  password: x\n'), 7,
     ["mqtt.username: contains a control character ('\\x1b')"]),
    ("70000-char-prefix", _mqtt(f"  topic_prefix: {'p' * 70000}\n"), 7,
     ["mqtt.topic_prefix: is 70000 bytes long; allowed: at most 256 bytes"]),
    ("dollar-prefix", _mqtt("  topic_prefix: $SYS/edge\n"), 7,
     ["mqtt.topic_prefix: must not start with '$'"]),
    ("plus-in-prefix", _mqtt("  topic_prefix: site/+/x\n"), 7, ["must not contain MQTT wildcards"]),
    ("hash-in-prefix", _mqtt("  topic_prefix: 'site/#'\n"), 7, ["must not contain MQTT wildcards"]),
    ("slash-in-client-id", _mqtt("  client_id: a/b\n"), 7, ["must not contain '/', '+' or '#'"]),
    ("host-with-port", BASE.replace("127.0.0.1", "broker:1883/x"), 5,
     ["mqtt.host: is not a host name or address"]),
    ("no-as-class", BASE.replace("yolox.onnx\n", "yolox.onnx\n  classes: [person, no]\n"), 4,
     ["model.classes[1]: should be text or a whole number (got no)",
      "write 'no' in quotes if you mean the text"]),
    ("on-as-port", BASE.replace("1883", "on"), 6,
     ["mqtt.port: should be a whole number (got on)",
      "YAML 1.1 reads on as true, not a number; allowed: 1 to 65535"]),
    ("no-as-usb-device", BASE.replace("type: usb", "type: usb\n    device: no"), 10,
     ["cameras[0].device: should be a whole number or text (got no)"]),
    ("yes-as-prefix", _mqtt("  topic_prefix: yes\n"), 7, ["mqtt.topic_prefix: should be text"]),
    ("off-as-threshold", BASE.replace("yolox.onnx\n", "yolox.onnx\n  score_threshold: off\n"), 4,
     ["model.score_threshold: should be a number (got off)"]),
    ("off-as-camera-type", BASE.replace("type: usb", "type: off"), 9,
     ["cameras[0].type: unknown type (got off)", "write 'off' in quotes"]),
    ("y-as-qos", _mqtt("  qos: y\n"), 7, ["mqtt.qos: not an allowed value (got 'y')"]),
    ("infinite-threshold", BASE.replace("yolox.onnx\n", "yolox.onnx\n  max_detections: .inf\n"),
     4, ["model.max_detections"]),
    ("nan-spool-size", _mqtt("  spool:\n    max_mb: .nan\n"), 8, ["mqtt.spool.max_mb"]),
    ("space-in-metrics-host", BASE + "health:\n  metrics_address: 'a b:9108'\n", 11,
     ["health.metrics_address: should be HOST:PORT"]),
    ("nul-in-path", BASE.replace("models/yolox.onnx", '"models/y\\0.onnx"'), 3,
     ["model.path: contains a control character ('\\x00')"]),
]


@pytest.mark.parametrize(("text", "line", "fragments"), [e[1:] for e in EXAMPLES],
                         ids=[e[0] for e in EXAMPLES])
def test_each_example_is_one_located_line(
    tmp_path: Path, text: str, line: int, fragments: list[str]
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.perf_counter() - started < 5.0
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}:"), problems[0]
    assert "\n" not in problems[0]
    for fragment in fragments:
        assert fragment in problems[0], problems[0]


def test_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    """The 544-byte bomb once took 20 s and 2 GB: now well under a second and 20 MB."""
    path = tmp_path / "agent.yaml"
    path.write_text(ALIAS_BOMB + BASE)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match="alias bomb"):
            load_config(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 20 * 1024 * 1024


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + "# " + "x" * 300_000 + "\n")
    with pytest.raises(ConfigError, match="larger than 128 KiB"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"not a regular file \(a character device\)"):
        load_config("/dev/zero")  # endless: refused before any read


@pytest.mark.parametrize("hostname", ["lab/box", "box#1", "box+2", "my box", "x" * 70])
def test_a_host_name_unfit_for_topics_is_refused_not_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hostname: str
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    path = tmp_path / "agent.yaml"
    path.write_text(BASE.replace("device_id: box-1\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.problems[0]
    assert f"{path}:1: device_id: is not set, and this machine's host name" in message
    assert "set device_id:" in message


def test_a_plain_host_name_is_the_default_device_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box-7.lab")
    path = tmp_path / "agent.yaml"
    path.write_text(BASE.replace("device_id: box-1\n", ""))
    assert load_config(path).device_id == "box-7.lab"


ALLOWED = """\
device_id: box-1
model:
  path: models/yolox.onnx
  name: 2026-11-30
  classes: [person, 'no', 0x10]
mqtt:
  port: 01883
cameras:
  - &door {type: usb, enabled: yes, id: door, device: 'no'}
  - {<<: *door, id: desk, enabled: off}
"""


def test_what_stays_allowed(tmp_path: Path) -> None:
    """Booleans where true/false is meant, quoted words, YAML 1.2 numbers, small aliases."""
    path = tmp_path / "agent.yaml"
    path.write_text(ALLOWED)
    config = load_config(path)
    assert config.model.name == "2026-11-30"  # a date is text, not a timestamp
    assert config.model.classes == ["person", "no", 16]
    assert config.mqtt.port == 1883  # a leading zero is decimal, not octal
    door, desk = config.cameras
    assert isinstance(door, UsbCamera)
    assert isinstance(desk, UsbCamera)
    assert door.device == desk.device == "no"
    assert door.enabled is True
    assert desk.enabled is False


@pytest.mark.parametrize("name", ["tag-int", "4301-digits", "500-deep-brackets", "alias-bomb",
                                  "256-char-model-path", "70000-char-prefix", "no-as-class"])
def test_check_config_exits_2_with_the_line_and_no_traceback(tmp_path: Path, name: str) -> None:
    text = {e[0]: e[1] for e in EXAMPLES}[name]
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0].startswith(f"{path}:")
    assert done.stderr.splitlines()[-1] == f"{path}: 1 problem"


SECTIONS: list[tuple[tuple[str | int, ...], type[BaseModel], dict[str, object]]] = [
    ((), AgentConfig, {}),
    (("model",), ModelConfig, {}),
    (("backend",), OpenVinoBackend, {"type": "openvino"}),
    (("backend",), TensorRtBackend, {"type": "tensorrt"}),
    (("backend",), AutoBackend, {"type": "auto"}),
    (("mqtt",), MqttConfig, {}),
    (("mqtt", "spool"), SpoolConfig, {}),
    (("mqtt", "tls"), TlsConfig, {}),
    (("health",), HealthConfig, {}),
    (("health", "drift"), DriftConfig, {}),
    (("cameras", 0), FileCamera, {"id": "a", "type": "file", "path": "a.mp4"}),
    (("cameras", 0), RtspCamera, {"id": "a", "type": "rtsp", "url": "rtsp://h/s"}),
    (("cameras", 0), UsbCamera, {"id": "a", "type": "usb"}),
    (("cameras", 0), CsiCamera, {"id": "a", "type": "csi"}),
    (("cameras", 0), GstreamerCamera, {"id": "a", "type": "gstreamer", "pipeline": "x"}),
]


def _not_boolean_fields() -> list[tuple[tuple[str | int, ...], dict[str, object], str]]:
    """Every field of every section that holds text, numbers, names or paths."""
    found = []
    for where, section, required in SECTIONS:
        for name, info in section.model_fields.items():
            annotation = info.annotation
            sections = [arg for arg in (annotation, *get_args(annotation))
                        if isinstance(arg, type) and issubclass(arg, BaseModel)]
            if name == "type" or "bool" in str(annotation) or sections or name == "cameras":
                continue
            found.append((where, required, name))
    return found


@pytest.mark.parametrize(("where", "required", "name"), _not_boolean_fields(),
                         ids=lambda value: value if isinstance(value, str) else None)
@pytest.mark.parametrize("word", ["no", "on"])
def test_no_text_or_number_field_takes_a_yaml_boolean(
    tmp_path: Path, where: tuple[str | int, ...], required: dict[str, object], name: str,
    word: str,
) -> None:
    """The kind behind `classes: [person, no]`, `port: on`, `device: no`: every field of
    every section that is not true/false refuses the YAML 1.1 booleans, at its line."""
    data: dict[str, object] = {"device_id": "b", "model": {"path": "m.onnx"},
                               "cameras": [{"id": "c", "type": "usb"}]}
    section: dict[str, object] = dict(required)
    section[name] = ["person", "BOOL"] if name == "classes" else "BOOL"
    if not where:
        data.update(section)
    elif where[0] == "cameras":
        data["cameras"] = [section]
    else:
        parent = data
        for part in where[:-1]:
            parent = parent.setdefault(str(part), {})  # type: ignore[assignment]
        parent[str(where[-1])] = {**parent.get(str(where[-1]), {}), **section}  # type: ignore[union-attr,dict-item]
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False).replace("BOOL", word))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    index = "[1]" if name == "classes" else ""
    key = ".".join(str(p) for p in where if not isinstance(p, int)) if where else ""
    key = key.replace("cameras", "cameras[0]")
    expected = f"{key}.{name}{index}:" if key else f"{name}{index}:"
    matching = [p for p in caught.value.problems if f" {expected} " in p]
    assert matching, caught.value.problems
    # Quotes help where text is allowed; where only a number is, they cannot. A password
    # is never quoted back, not even as a word.
    shown = "it" if name == "password" else word
    quoted = "it" if name == "password" else f"'{word}'"
    assert (f"write {quoted} in quotes if you mean the text" in matching[0]
            or (f"YAML 1.1 reads {shown} as " in matching[0] and ", not a number" in matching[0]))


def test_a_flood_of_problems_shows_the_first_50_and_counts_all(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + "".join(f"unknown_{number}: 1\n" for number in range(60)))
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 2
    assert len(lines) == 52, lines
    assert lines[50] == f"{path}: ... and 10 more problems"
    assert lines[51] == f"{path}: 60 problems"
