"""Error examples quoted in docs/ are what the program prints now (real runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, free_port

DOCS = REPO / "docs"
SENT_TO_THE_AGENT = {"command-request.schema.json"}
"""Written by operators, not the agent: versioned by the result they get back."""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO, check=False)


def quoted(doc: str, start: str) -> str:
    """The line of `doc` starting with `start` (inside a code block)."""
    text = (DOCS / doc).read_text()
    return next(line for line in text.splitlines() if line.startswith(start))


def test_every_payload_schema_is_named_and_versioned() -> None:
    section = (DOCS / "mqtt.md").read_text().split("## Schema versions", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert "Both JSON payloads" not in section
    for schema in sorted((DOCS / "schemas").glob("*.schema.json")):
        assert f"`{schema.name}`" in section, schema.name
        if schema.name in SENT_TO_THE_AGENT:
            continue
        assert "schema_version" in json.loads(schema.read_text())["required"], schema.name


def test_snapshot_errors_in_tools_md_are_real(tmp_path: Path, samples: Path) -> None:
    port = free_port()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    config = tmp_path / "agent.yaml"
    config.write_text(f"""
state_dir: {tmp_path / "state"}
model:
  path: {samples / "models" / "yolox_nano.onnx"}
cameras:
  - id: street
    type: file
    path: {empty}
  - id: yard
    type: rtsp
    url: rtsp://127.0.0.1:{port}/live
""")
    cases = {
        "gate": ("edge-agent: /etc/edge-agent/agent.yaml: no camera",
                 {"/etc/edge-agent/agent.yaml": str(config)}),
        "yard": ("edge-agent: camera yard: nothing listens",
                 {"127.0.0.1:8554": f"127.0.0.1:{port}"}),
        "street": ("edge-agent: camera street: cannot open video file",
                   {"/srv/clips/empty.mp4": str(empty)}),
    }
    for camera, (start, replace) in cases.items():
        expected = quoted("tools.md", start)
        for old, new in replace.items():
            expected = expected.replace(old, new)
        done = cli("snapshot", camera, "--config", str(config), "-o", str(tmp_path / "x.jpg"))
        assert done.returncode == 1
        assert done.stderr.strip() == expected


def test_doctor_model_example_in_tools_md_is_real(tmp_path: Path, samples: Path) -> None:
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes((samples / "models" / "yolox_nano.onnx").read_bytes()[:100_000])
    config = tmp_path / "agent.yaml"
    config.write_text(f"""
state_dir: {tmp_path / "state"}
model:
  path: {truncated}
backend:
  type: openvino
  device: CPU
mqtt:
  port: {free_port()}
cameras:
  - id: street
    type: file
    path: {samples / "media" / "vtest.mp4"}
""")
    done = cli("doctor", "--config", str(config))
    lines = done.stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("[FAIL] model: "))
    in_doc = "/tmp/tools/trunc.onnx"  # noqa: S108 (the path the docs' example shows)
    shown = [line.replace(str(truncated), in_doc) for line in lines[index:index + 3]]
    assert shown[0] == quoted("tools.md", "[FAIL] model: ")
    assert shown[1] == quoted("tools.md", f"       model from: the config's model.path {in_doc}")
    assert shown[2] == quoted("tools.md", f"       fix: {in_doc}")
