"""The operator tools load the model the box runs, not the config's `model.path`, and say
which one and why: every tool against every state the model store can be in.

The state dir is set up by the real store and manifest code (acquire, save_manifest) with
a real deployed version: the sample YOLOX as an OpenVINO IR, deployed with its own class
names (`deployed_person` ...), so a tool that draws or reports with the config's model
shows it in its labels, its model name and its file. Tools run as the real CLI, on real
OpenVINO; none of them may change the manifest.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
import pytest

from edge_agent.config.loader import load_config
from edge_agent.models.acquire import DeployRequest, acquire
from edge_agent.models.manifest import (
    CONFIG_MODEL,
    Manifest,
    ModelVersion,
    Outcome,
    save_manifest,
)
from edge_agent.models.startup import config_model
from edge_agent.models.store import ModelStore
from edge_agent.publish.payload import iso_utc
from edge_agent.service.state_files import PID_FILE
from engines.model_info import file_sha256
from tests.helpers import REPO, snapshot_config, spawn
from tests.models import ir_tar as make_ir_tar

NAME, VERSION = "yolox-ir", "2"
DEPLOYED, CONFIG = "deployed", "config"


@dataclass(frozen=True)
class State:
    """One state of the box's model store, and which model the tools must then load."""

    name: str
    expect: str
    """DEPLOYED or CONFIG."""
    says: str
    """Words the tool's model line (or its note) must hold."""
    warns: bool = False
    """The doctor warns: the manifest could not be followed."""


STATES = [
    State("no-manifest", CONFIG, "no model deployed on this box"),
    State("deployed", DEPLOYED, "the manifest's active model (no agent runs now)"),
    State("probation", CONFIG, "was in probation when the agent stopped: going back to config"),
    State("probation-live", DEPLOYED, "in probation"),
    State("files-missing", CONFIG, "files are not in", warns=True),
    State("corrupt", CONFIG, "is damaged", warns=True),
]


@pytest.fixture(scope="module")
def ir_tar(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample as an IR in one .tar, the way model/deploy takes one."""
    folder = tmp_path_factory.mktemp("ir")
    xml = folder / "model.xml"
    ov.save_model(ov.Core().read_model(str(samples / "models" / "yolox_nano.onnx")), str(xml),
                  compress_to_fp16=False)
    return make_ir_tar(xml, folder / "yolox-ir.tar")


@dataclass
class Box:
    config: Path
    state_dir: Path
    manifest: Path
    sha256: str | None

    def manifest_bytes(self) -> bytes | None:
        return self.manifest.read_bytes() if self.manifest.exists() else None


def deploy(config_path: Path, tar: Path, samples: Path, outcome: Outcome) -> tuple[Path, str]:
    """Install `tar` in the store with the real deploy code and make it the active version."""
    config = load_config(config_path)
    store = ModelStore(config.state_dir)
    store.prepare()
    sha256 = file_sha256(tar)
    labels = tuple(f"deployed_{name}" for name in
                   (samples / "models" / "coco_labels.txt").read_text().split("\n") if name)
    request = DeployRequest(sha256, path=tar, name=NAME, version=VERSION, labels=labels)
    file = acquire(store, request, ".tar", config.models, step=lambda *_, **__: None,
                   stopping=threading.Event())
    now = iso_utc(time.time())
    version = ModelVersion(sha256, NAME, VERSION, str(tar), file, list(labels), now, now,
                           outcome, None, CONFIG_MODEL)
    save_manifest(store.manifest_path, Manifest(
        active=sha256, previous=CONFIG_MODEL, config_model=config_model(config),
        versions=[version]))
    return store.manifest_path, sha256


@contextlib.contextmanager
def box_in(state: State, tmp_path: Path, samples: Path, tar: Path) -> Iterator[Box]:
    """A config with one file camera and a state dir in `state`; for probation-live, a
    process named edge-agent in the agent's pid file for as long as the test runs."""
    video = samples / "media" / "vtest.mp4"
    config = snapshot_config(tmp_path, samples, f"  - {{id: street, type: file, path: {video}}}")
    state_dir = tmp_path / "state"
    manifest, sha256 = state_dir / "models" / "manifest.json", None
    if state.name != "no-manifest":
        outcome = Outcome.PROBATION if state.name.startswith("probation") else Outcome.OK
        manifest, sha256 = deploy(config, tar, samples, outcome)
    if state.name == "files-missing":
        ModelStore(state_dir).remove_folder(sha256 or "")
    if state.name == "corrupt":
        manifest.write_text('{"schema_version": 1, "active": ')  # cut short by a power cut
    live = None
    if state.name == "probation-live":
        live = spawn(sys.executable, "-c", "import time; time.sleep(600)", "edge-agent")
        (state_dir / PID_FILE).write_text(f"{live.pid}\n")
    try:
        yield Box(config, state_dir, manifest, sha256)
    finally:
        if live is not None:
            live.kill()
            live.wait()


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, check=False)


# -- what each tool says --------------------------------------------------------------
# Each returns (model source as the tool reports it, text to look for the state's words
# in, whether the model's own outputs came from the deployed version).


def run_snapshot(box: Box, tmp_path: Path) -> tuple[dict, str, bool]:
    out = tmp_path / "aim.jpg"
    done = cli("snapshot", "street", "--config", str(box.config), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    labels = {item["label"] for item in body["detections"]}
    assert labels, "the street frame always has detections"
    deployed_labels = all(label.startswith("deployed_") for label in labels)
    assert deployed_labels == (body["model"]["name"] == NAME)
    text = cli("snapshot", "street", "--config", str(box.config), "-o", str(out))
    assert text.returncode == 0, text.stderr
    return body.get("model_source", {}), text.stdout, deployed_labels


def run_doctor(box: Box, _tmp_path: Path) -> tuple[dict, str, bool]:
    done = cli("doctor", "--config", str(box.config), "--json")
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    model = checks["model"]
    assert model["status"] in ("OK", "WARN"), model
    detail = model["detail"]
    source = {"deployed": "\nmodel from: deployed version" in detail,
              "status": model["status"], "fix": model["fix"]}
    return source, detail, detail.startswith("model.xml ")


def run_bench(box: Box, _tmp_path: Path) -> tuple[dict, str, bool]:
    done = cli("bench", "--config", str(box.config), "--seconds", "0.3", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    source = report.get("model_source", {"source": "", "notes": []})
    return source, " ".join([source["source"], *source["notes"]]), report["model"] == NAME


def run_quantize(box: Box, tmp_path: Path) -> tuple[dict, str, bool]:
    """No NNCF build: an empty image folder stops it right after the model is loaded."""
    empty = tmp_path / "no-images"
    empty.mkdir()
    done = cli("quantize", "--config", str(box.config), "--images", str(empty))
    assert done.returncode == 1
    assert "no readable image" in done.stderr
    # Nothing else it prints before a build tells the models apart: its model line.
    deployed = "\n  model from: deployed version" in done.stdout
    return {"deployed": deployed}, done.stdout, deployed


def run_check_config(box: Box, _tmp_path: Path) -> tuple[dict, str, bool]:
    done = cli("check-config", str(box.config))
    assert done.returncode == 0, done.stderr
    runs = [line for line in done.stdout.splitlines() if line.startswith("  runs:")]
    deployed = bool(runs) and "deployed version" in runs[0]
    return {"deployed": deployed}, done.stdout, deployed


TOOLS: dict[str, Callable[[Box, Path], tuple[dict, str, bool]]] = {
    "snapshot": run_snapshot, "doctor": run_doctor, "bench": run_bench,
    "quantize": run_quantize, "check-config": run_check_config,
}
QUIET_WHEN_CONFIG = {"check-config"}
"""Tools that print no model line when the config's model runs with nothing to note."""


@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
@pytest.mark.parametrize("tool", list(TOOLS))
def test_each_tool_uses_the_model_the_box_runs(
    tool: str, state: State, tmp_path: Path, samples: Path, ir_tar: Path,
) -> None:
    with box_in(state, tmp_path, samples, ir_tar) as box:
        before = box.manifest_bytes()
        source, text, outputs_deployed = TOOLS[tool](box, tmp_path)
        assert box.manifest_bytes() == before, "a tool changed the manifest"
        assert not list(box.manifest.parent.glob("manifest.json.corrupt-*")) if \
            box.manifest.parent.exists() else True, "a tool set the manifest aside"
    wanted = state.expect == DEPLOYED
    assert outputs_deployed is wanted, text  # labels, model name or file, not only words
    assert source.get("deployed") is wanted, text
    if wanted:
        assert f"deployed version {NAME} {VERSION} ({(box.sha256 or '')[:12]})" in text
    if not (tool in QUIET_WHEN_CONFIG and state.name == "no-manifest"):
        assert state.says in text, text
    if tool == "doctor":
        assert (source["status"] == "WARN") is state.warns, text
        assert source["fix"] if state.warns else True


@pytest.mark.parametrize("tool", ["snapshot", "doctor", "bench"])
def test_config_model_flag_loads_the_configs_model(
    tool: str, tmp_path: Path, samples: Path, ir_tar: Path,
) -> None:
    """--config-model: the config's model.path, even with a deployed version active."""
    state = next(s for s in STATES if s.name == "deployed")
    with box_in(state, tmp_path, samples, ir_tar) as box:
        video = samples / "media" / "vtest.mp4"
        args = {"snapshot": ["snapshot", "street", "-o", str(tmp_path / "a.jpg")],
                "doctor": ["doctor"], "bench": ["bench", "--seconds", "0.3",
                                                "--video", str(video)]}[tool]
        done = cli(*args, "--config", str(box.config), "--config-model")
    assert "model from: the config's model.path" in done.stdout, done.stdout + done.stderr
    assert "asked for with --config-model" in done.stdout
    assert "deployed_" not in done.stdout
    assert "model.xml" not in done.stdout


def test_a_deployed_version_that_does_not_load_is_named(
    tmp_path: Path, samples: Path, ir_tar: Path,
) -> None:
    """Files there but damaged: the tools fail on that version, name it and say how to
    get past it, instead of quietly checking the config's model."""
    state = next(s for s in STATES if s.name == "deployed")
    with box_in(state, tmp_path, samples, ir_tar) as box:
        weights = box.state_dir / "models" / str(box.sha256) / "model.bin"
        weights.write_bytes(weights.read_bytes()[:1000])
        shot = cli("snapshot", "street", "--config", str(box.config), "-o",
                   str(tmp_path / "a.jpg"))
        doctor = cli("doctor", "--config", str(box.config), "--json")
    assert shot.returncode == 1
    assert f"the model is deployed version {NAME} {VERSION}" in shot.stderr
    assert "--config-model uses the config's model.path instead" in shot.stderr
    assert "Traceback" not in shot.stderr
    model = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "model")
    assert model["status"] == "FAIL"
    assert f"model from: deployed version {NAME} {VERSION}" in model["detail"]
    assert "deploy it again or model/rollback" in model["fix"]


@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
def test_running_model_per_state(
    state: State, tmp_path: Path, samples: Path, ir_tar: Path,
) -> None:
    """The one answer behind every tool, without a subprocess: the config it returns
    points at the version's file in the store, or at model.path."""
    from edge_agent.models.running import running_model  # here: the tool tests above

    # run against code from before it existed, to show that they fail there
    with box_in(state, tmp_path, samples, ir_tar) as box:
        config = load_config(box.config)
        running = running_model(config)
        assert running_model(config, use_config=True).config.model.path == config.model.path
    if state.expect == DEPLOYED:
        assert running.ref == box.sha256
        assert running.config.model.path == box.state_dir / "models" / str(box.sha256) / \
            "model.xml"
        assert running.config.model.labels == running.config.model.path.parent / "labels.txt"
        assert running.config.model.score_threshold == config.model.score_threshold
    else:
        assert running.ref == CONFIG_MODEL
        assert running.config == config
    assert state.says in " ".join([running.source(), *running.notes])
    assert (running.fix is not None) is state.warns
