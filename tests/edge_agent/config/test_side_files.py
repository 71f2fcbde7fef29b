"""Every file the agent reads by name must be a regular file: a FIFO as the config, a
labels file, a TLS file, the model or a video file blocked `open()` forever (check-config,
run and doctor hung); /dev/zero, a directory or a socket gave misleading errors. Each is
refused with a located "is not a regular file (a FIFO)" line, fast."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.capture.camera import open_capture
from edge_agent.config.loader import load_config
from edge_agent.config.model import FileCamera
from edge_agent.errors import ConfigError, SourceError
from engines.errors import LabelsFileError
from engines.model_info import read_labels
from engines.regular_file import NotRegularFileError, open_regular

HANG_S = 20.0
"""Far above the milliseconds a refusal takes; a hang fails the test at this bound."""


@pytest.fixture
def odd_files() -> Iterator[dict[str, Path]]:
    """One of each kind of non-regular file (in a short dir: socket paths are short)."""
    where = Path(tempfile.mkdtemp(prefix="ea-odd-"))
    fifo = where / "fifo"
    os.mkfifo(fifo)
    folder = where / "folder"
    folder.mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(where / "sock"))
    try:
        yield {
            "FIFO": fifo, "directory": folder, "character device": Path("/dev/null"),
            "zero": Path("/dev/zero"), "socket": where / "sock",
        }
    finally:
        sock.close()
        shutil.rmtree(where, ignore_errors=True)


KIND_WORDS = {"FIFO": "a FIFO", "directory": "a directory", "character device":
              "a character device", "zero": "a character device", "socket": "a socket"}


def within(seconds: float, call: Callable[[], object]) -> object:
    """`call()`'s result or exception, failing the test if it takes longer than `seconds`."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():  # a daemon thread: it cannot hold the test run
        pytest.fail(f"hung for more than {seconds} s")
    return outcome[0]


def _config(tmp_path: Path, samples: Path, **paths: Path) -> Path:
    """A valid config with TLS files and a file camera; `paths` replaces some of them."""
    regular = tmp_path / "pem"
    regular.write_text("-----BEGIN CERTIFICATE-----\n")
    files = {
        "model": samples / "models" / "yolox_nano.onnx",
        "labels": samples / "models" / "coco_labels.txt",
        "ca_file": regular, "cert_file": regular, "key_file": regular,
        "video": tmp_path / "clip.mp4", "spool": tmp_path / "spool.sqlite3",
    } | paths
    (tmp_path / "clip.mp4").write_bytes(b"\0")
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"device_id: box1\nstate_dir: {tmp_path / 'state'}\n"
        f"model:\n  path: {files['model']}\n  labels: {files['labels']}\n"
        "backend:\n  type: openvino\n  device: CPU\n"
        "mqtt:\n  host: 127.0.0.1\n  port: 1883\n  tls:\n"
        f"    ca_file: {files['ca_file']}\n    cert_file: {files['cert_file']}\n"
        f"    key_file: {files['key_file']}\n"
        f"  spool:\n    path: {files['spool']}\n"
        f"cameras:\n  - id: door\n    type: file\n    path: {files['video']}\n"
    )
    return config


# (field in _config, its key path and line in the file, what run would read it as)
FIELDS = [
    ("labels", "model.labels", 5, "labels file"),
    ("ca_file", "mqtt.tls.ca_file", 13, "TLS CA file"),
    ("cert_file", "mqtt.tls.cert_file", 14, "TLS client certificate"),
    ("key_file", "mqtt.tls.key_file", 15, "TLS client key"),
    ("model", "model.path", 4, "model file"),
    ("spool", "mqtt.spool.path", 17, "spool file"),
    ("video", "cameras[0].path", 21, "video file"),
]


def test_the_base_config_is_valid(tmp_path: Path, samples: Path) -> None:
    load_config(_config(tmp_path, samples))


# A model folder (Ultralytics *_openvino_model/) is a valid model path: not in the table.
CASES = [pytest.param(*fields, kind, id=f"{fields[0]}-{kind}")
         for fields in FIELDS for kind in KIND_WORDS
         if not (fields[0] == "model" and kind == "directory")]


@pytest.mark.parametrize(("field", "key", "line", "what", "kind"), CASES)
def test_each_side_file_that_is_not_regular_is_one_located_line(
    tmp_path: Path, samples: Path, odd_files: dict[str, Path],
    field: str, key: str, line: int, what: str, kind: str,
) -> None:
    odd = odd_files[kind]
    config = _config(tmp_path, samples, **{field: odd})
    outcome = within(HANG_S, lambda: load_config(config))
    assert isinstance(outcome, ConfigError), outcome
    assert outcome.problems == [
        f"{config}:{line}: {key}: {what} {odd} is not a regular file ({KIND_WORDS[kind]})"
    ]


@pytest.mark.parametrize("kind", list(KIND_WORDS))
def test_the_config_file_itself_must_be_regular(odd_files: dict[str, Path], kind: str) -> None:
    outcome = within(HANG_S, lambda: load_config(odd_files[kind]))
    assert isinstance(outcome, ConfigError), outcome
    assert str(outcome) == (f"{odd_files[kind]}: cannot read the config file: "
                            f"not a regular file ({KIND_WORDS[kind]})")


@pytest.mark.parametrize("kind", list(KIND_WORDS))
def test_labels_and_open_regular_refuse_every_kind(odd_files: dict[str, Path], kind: str) -> None:
    outcome = within(HANG_S, lambda: read_labels(odd_files[kind]))
    assert isinstance(outcome, LabelsFileError), outcome
    assert f"not a regular file ({KIND_WORDS[kind]})" in str(outcome)
    outcome = within(HANG_S, lambda: open_regular(odd_files[kind]))
    assert isinstance(outcome, NotRegularFileError), outcome


def test_open_regular_reads_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    with open_regular(tmp_path / "f") as handle:
        assert handle.read() == b"abc"
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize("command", [["check-config"], ["run", "--config"]])
def test_the_reviewers_examples_exit_2_at_once(
    tmp_path: Path, samples: Path, odd_files: dict[str, Path], command: list[str],
) -> None:
    """`mkfifo f; edge-agent check-config f` hung, and so did `model.labels: <fifo>`."""
    fifo = odd_files["FIFO"]
    done = _cli(*command, str(fifo))
    assert done.returncode == 2, done.stderr
    assert f"{fifo}: cannot read the config file: not a regular file (a FIFO)" in done.stderr
    config = _config(tmp_path, samples, labels=fifo)
    done = _cli(*command, str(config))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{config}:5: model.labels: labels file {fifo} is not a regular file (a FIFO)" \
        in done.stderr


def test_doctor_on_a_fifo_config_does_not_hang(odd_files: dict[str, Path]) -> None:
    done = _cli("doctor", "--config", str(odd_files["FIFO"]))
    assert "not a regular file (a FIFO)" in done.stdout + done.stderr
    assert done.returncode != 0


@pytest.mark.parametrize("kind", list(KIND_WORDS))
def test_a_file_camera_on_a_non_regular_path_says_what_it_is(
    odd_files: dict[str, Path], kind: str,
) -> None:
    """A video file replaced after check-config (`path: /tmp`, `/dev/null`): the camera's
    error says what is there, not "not found"."""
    camera = FileCamera(id="door", type="file", path=odd_files[kind])
    outcome = within(HANG_S, lambda: open_capture(camera))
    assert isinstance(outcome, SourceError), outcome
    assert str(outcome) == (f"camera door: video file {odd_files[kind]} is not a regular file "
                            f"({KIND_WORDS[kind]})")


@pytest.mark.parametrize("kind", list(KIND_WORDS))
def test_the_tensorrt_calibration_cache_must_be_regular(
    tmp_path: Path, samples: Path, odd_files: dict[str, Path], kind: str,
) -> None:
    config = _config(tmp_path, samples)
    text = config.read_text().replace(
        "  type: openvino\n  device: CPU\n",
        f"  type: tensorrt\n  precision: int8\n  int8_calibration_cache: {odd_files[kind]}\n")
    config.write_text(text)
    outcome = within(HANG_S, lambda: load_config(config))
    assert isinstance(outcome, ConfigError), outcome
    assert outcome.problems == [
        f"{config}:9: backend.int8_calibration_cache: calibration cache {odd_files[kind]} "
        f"is not a regular file ({KIND_WORDS[kind]})"
    ]
