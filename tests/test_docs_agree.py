"""Docs quote what the program really does: config.md's error examples are the loader's
output for the files they describe, the README's demo wording matches what the demo
prints, and the README's bench line runs as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.errors import ConfigError
from tests.conftest import REPO

PAD = "# -\n"


def _lines(*numbered: tuple[int, str]) -> str:
    """A file with each text on its line number, comment lines between."""
    out: list[str] = []
    for number, text in numbered:
        out += [PAD.strip()] * (number - 1 - len(out))
        out.append(text)
    return "\n".join(out) + "\n"


# The config each example in docs/config.md's "Examples (from the test suite)" describes.
EXAMPLE_FILES = {
    "agent.yaml:4: model.scor_threshold": _lines(
        (1, "model:"), (2, "  path: m.onnx"), (4, "  scor_threshold: 0.5"),
        (5, "cameras: [{id: a, type: usb}]")),
    "agent.yaml:7: mqtt.port": _lines(
        (1, "model: {path: m.onnx}"), (2, "cameras: [{id: a, type: usb}]"), (5, "mqtt:"),
        (6, "  host: h"), (7, "  port: 70000")),
    "agent.yaml:13: cameras[1].type": _lines(
        (1, "model: {path: m.onnx}"), (5, "cameras:"), (6, "  - id: a"), (7, "    type: usb"),
        (12, "  - id: b"), (13, "    type: ip")),
    "agent.yaml:9: cameras[0].url": _lines(
        (1, "model: {path: m.onnx}"), (8, "cameras:"), (9, "  - id: a"), (10, "    type: rtsp")),
    "agent.yaml:8: mqtt.host": _lines(
        (1, "model: {path: m.onnx}"), (2, "cameras: [{id: a, type: usb}]"), (5, "mqtt:"),
        (6, "  host: a"), (7, "  port: 1883"), (8, "  host: b")),
    "agent.yaml:1: device_id": _lines(
        (1, "device_id: 0042"), (2, "model: {path: m.onnx}"), (3, "cameras: [{id: a, type: usb}]")),
}


def _doc_examples() -> list[str]:
    text = (REPO / "docs" / "config.md").read_text()
    block = text.split("Examples (from the test suite):", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if line.startswith("agent.yaml:")]


def test_every_example_has_its_file() -> None:
    examples = _doc_examples()
    assert len(examples) == len(EXAMPLE_FILES)
    for line in examples:
        assert any(line.startswith(start + ":") for start in EXAMPLE_FILES), line


@pytest.mark.parametrize("start", list(EXAMPLE_FILES))
def test_config_md_error_examples_are_the_real_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    """The kind: an example error in the docs drifted from the program (`allowed: file,
    rtsp, usb, gstreamer` without `csi`). Each one is compared with a real run."""
    quoted = next(line for line in _doc_examples() if line.startswith(start + ":"))
    monkeypatch.chdir(tmp_path)
    Path("agent.yaml").write_text(EXAMPLE_FILES[start])
    with pytest.raises(ConfigError) as caught:
        load_config("agent.yaml")
    assert quoted in caught.value.problems, caught.value.problems


def _demo_watcher() -> types.FunctionType:
    """The `show` callback scripts/demo runs to print messages (without --raw)."""
    script = (REPO / "scripts" / "demo").read_text()
    source = script.split("cat <<'PYTHON'\n", 1)[1].split("\nPYTHON\n", 1)[0]
    source = source.split("\nclient = mqtt.Client", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(source, "scripts/demo", "exec"), namespace)  # noqa: S102 (our own script)
    return namespace["show"]  # type: ignore[return-value]


def test_readme_describes_what_the_demo_prints(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text()
    example = re.search(r"such as `([^`]+ #\d+: [^`]+)`", readme)
    assert example, "the README shows one summary line"
    topic, _, rest = example.group(1).partition(" #")
    sequence, _, found = rest.partition(": ")
    detections = []
    for part in found.split(", "):
        count, label = part.split(" ", 1)
        detections += [{"label": label}] * int(count)
    payload = f'{{"sequence": {sequence}, "detections": {detections!r}}}'.replace("'", '"')
    message = types.SimpleNamespace(topic=topic, payload=payload.encode())
    _demo_watcher()(None, None, message)
    assert capsys.readouterr().out.strip() == example.group(1)
    assert "scripts/demo --raw" in readme  # the mosquitto_sub form is the --raw one
    assert "--raw" in (REPO / "scripts" / "demo").read_text()


def test_readme_bench_line_runs_as_written(samples: Path) -> None:
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("edge-agent bench "))
    args = shlex.split(line.split("#", 1)[0])[1:]
    assert "configs/demo.yaml" in args
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args, "--seconds", "1"],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no video" not in done.stderr


def test_bench_help_states_the_seconds_default() -> None:
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "bench", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "(default: 10.0 s)" in " ".join(done.stdout.split())
