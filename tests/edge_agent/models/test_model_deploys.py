"""Model deploys against the real agent: real Mosquitto, real OpenVINO, real video, a real
HTTP server on 127.0.0.1. One agent run serves every deploy (bad ones rejected with their
reason, a good one swapped without a gap in frame numbers, a probation that rolls back,
rollback and list), then SIGKILLs in the middle of deploys and restarts."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import openvino as ov
import paho.mqtt.client as mqtt
import pytest

from tests.helpers import (
    REPO,
    Broker,
    Collector,
    first_frames,
    start_agent,
    start_broker,
    stop_agent,
    subscribed,
    write_config,
)
from tests.model_server import ModelServer, model_server, sha256_of
from tests.models import ir_tar, shaped_model

pytestmark = pytest.mark.slow

SCHEMAS = REPO / "docs" / "schemas"
RESULT_SCHEMA = json.loads((SCHEMAS / "model-result.schema.json").read_text())
INFO_SCHEMA = json.loads((SCHEMAS / "info.schema.json").read_text())
MANIFEST_SCHEMA = json.loads((SCHEMAS / "model-manifest.schema.json").read_text())


@dataclass
class Box:
    tmp: Path
    config: Path
    log: Path
    prefix: str
    broker: Broker
    server: ModelServer
    collector: Collector
    client: mqtt.Client
    agent: subprocess.Popen[str]
    files: dict[str, Path]

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/box1/{suffix}"

    def send(self, command: str, /, **args: object) -> str:
        request_id = uuid.uuid4().hex
        self.client.publish(self.topic(f"cmd/{command}"),
                            json.dumps({"request_id": request_id, **args}), qos=1)
        return request_id

    def results(self, name: str, request_id: str) -> list[dict]:
        return [r for r in self.collector.json_on(f"/cmd/{name}/result")
                if r.get("request_id") == request_id]

    def final(self, name: str, request_id: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [r for r in self.results(name, request_id) if r["outcome"] != "progress"]
            if done:
                if done[0]["result"]:
                    jsonschema.validate(done[0]["result"], RESULT_SCHEMA)
                return done[0]
            time.sleep(0.1)
        raise AssertionError(f"no result for {name} {request_id}:\n{self.log.read_text()}")

    def run(self, command: str, /, **args: object) -> dict:
        return self.final(command, self.send(command, **args))

    def info(self) -> dict:
        body = self.collector.json_on("/box1/info")[-1]
        jsonschema.validate(body, INFO_SCHEMA)
        return body["models"]

    def sequences(self) -> list[tuple[int, str]]:
        return [(m["sequence"], m["model"]["sha256"])
                for m in self.collector.json_on("/box1/cam/detections")]

    def manifest(self) -> dict:
        body = json.loads((self.tmp / "state" / "models" / "manifest.json").read_text())
        jsonschema.validate(body, MANIFEST_SCHEMA)
        return body

    def restart(self) -> None:
        """Start the agent again; back when it answers commands (it subscribes after
        publishing info, and a request sent before that is not delivered)."""
        self.agent = start_agent(self.config, self.log)
        deadline = time.monotonic() + 60
        while True:
            request = self.send("model/list")
            time.sleep(0.5)
            if self.results("model/list", request):
                return
            assert time.monotonic() < deadline, self.log.read_text()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> Iterator[Box]:
    tmp = tmp_path_factory.mktemp("deploys")
    onnx = samples / "models" / "yolox_nano.onnx"
    core = ov.Core()
    ov.save_model(core.read_model(str(onnx)), str(tmp / "good.xml"), compress_to_fp16=False)
    files = {
        "good": ir_tar(tmp / "good.xml"),
        "nan": ir_tar(shaped_model(tmp / "nan", [1, 3549, 85], fill=float("nan"))),
        "blind": ir_tar(shaped_model(tmp / "blind", [1, 3549, 85])),
        "onnx": onnx,
    }
    drop = tmp / "drop"
    drop.mkdir()
    (drop / "good.tar").write_bytes(files["good"].read_bytes())
    data = {f"/{name}{path.suffix}": path.read_bytes() for name, path in files.items()}
    data["/truncated.onnx"] = onnx.read_bytes()[:200_000]
    broker = start_broker(tmp)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    collector = subscribed(broker, f"{prefix}/#")
    client = collector.client
    clip = first_frames(samples, tmp / "clip.mp4", 40)
    config = write_config(tmp, samples, broker, prefix,
                          f"  - {{id: cam, type: file, path: {clip}, loop: true}}\n")
    config.write_text(config.read_text() + f"""
commands:
  enabled: true
  allow: [model/deploy, model/rollback]
  allowed_paths: [{drop}]
models:
  probation_s: 2
  download_retries: 1
  validation_frames: 3
""")
    log = tmp / "agent.log"
    with model_server(data) as server:
        agent = start_agent(config, log)
        box = Box(tmp, config, log, prefix, broker, server, collector, client, agent, files)
        try:
            collector.wait_for("/box1/cam/detections", 20, timeout=90)  # the ring has 4
            yield box
        finally:
            if box.agent.poll() is None:
                stop_agent(box.agent, log)
            client.loop_stop()
            client.disconnect()
            broker.stop()


def bad_models_are_rejected_with_their_reason_and_frames_go_on(box: Box) -> None:
    good = sha256_of(box.files["good"])
    cases = [
        ({"url": box.server.url("/truncated.onnx"), "sha256": sha256_of(box.files["onnx"])},
         "bad_arguments", "sha256 mismatch: expected"),
        ({"path": str(box.tmp / "drop" / "good.tar"), "sha256": "0" * 64},
         "bad_arguments", "sha256 mismatch"),
        ({"path": str(box.files["good"]), "sha256": good},
         "path_not_allowed", "outside the allowed folders"),
        ({"url": box.server.url("/nan.tar"), "sha256": sha256_of(box.files["nan"])},
         "bad_arguments", "NaN"),
        ({"url": box.server.url("/blind.tar"), "sha256": sha256_of(box.files["blind"])},
         "bad_arguments", "the new model detects 0 objects"),
    ]
    before = box.sequences()[-1][0]
    for args, code, reason in cases:
        result = box.run("model/deploy", **args)
        assert (result["outcome"], result["code"]) == ("rejected", code), result
        assert reason in result["reason"], result
    assert box.info()["active"]["ref"] == "config"
    versions = {v["sha256"]: v for v in box.manifest()["versions"]}
    assert versions[sha256_of(box.files["nan"])]["outcome"] == "rejected"
    assert "not finite" in versions[sha256_of(box.files["nan"])]["reason"] or "NaN" in (
        versions[sha256_of(box.files["nan"])]["reason"])
    assert box.info()["last_outcome"]["outcome"] == "rejected"
    assert box.sequences()[-1][0] > before  # frames went on throughout
    assert not (box.tmp / "state" / "models" / sha256_of(box.files["blind"])).exists()


def a_good_deploy_swaps_between_frames(box: Box) -> None:
    good = sha256_of(box.files["good"])
    request = box.send("model/deploy", url=box.server.url("/good.tar"), sha256=good,
                       name="yolox-ir", version="2")
    result = box.final("model/deploy", request)
    assert result["outcome"] == "ok", result
    steps = [r["step"] for r in box.results("model/deploy", request) if r["outcome"] == "progress"]
    assert steps[0] == "fetching"
    for step in ("verifying", "fetched", "loading", "validating", "validated", "swapped"):
        assert step in steps
    assert result["result"]["model"]["outcome"] == "ok"
    models = box.info()
    assert (models["active"]["sha256"], models["active"]["version"]) == (good, "2")
    assert models["previous"]["ref"] == "config"
    sequences = box.sequences()
    models_seen = [sha for _, sha in sequences]
    assert len(set(models_seen)) == 2  # the config's model, then the deployed IR
    switch = next(i for i, sha in enumerate(models_seen) if sha != models_seen[0])
    assert all(a == models_seen[0] for a in models_seen[:switch])
    assert all(b == models_seen[switch] for b in models_seen[switch:])
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sequences)]
    assert max(gaps) <= 2, gaps  # at most one frame missing at the swap, none elsewhere
    assert min(gaps) >= 1
    listed = box.run("model/list")["result"]
    assert listed["versions"][0]["sha256"] == good
    assert listed["versions"][0]["kept"] is True


def probation_rolls_back_a_model_that_stops_detecting(box: Box) -> None:
    """With validation made lenient by a reload, the blind model goes live and probation
    sees its detections collapse against the previous model's: rolled back."""
    good = sha256_of(box.files["good"])
    box.config.write_text(box.config.read_text().replace(
        "  probation_s: 2\n", "  probation_s: 2\n  min_detection_ratio: 0\n"))
    box.agent.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while not box.collector.json_on("/box1/info")[-1]["config"]["last_reload"]:
        assert time.monotonic() < deadline, box.log.read_text()
        time.sleep(0.05)
    assert box.info()["active"]["sha256"] == good  # the model itself did not change
    result = box.run("model/deploy", url=box.server.url("/blind.tar"),
                     sha256=sha256_of(box.files["blind"]))
    assert (result["outcome"], result["code"]) == ("failed", "error"), result
    assert "rolled back: camera cam: detections collapsed" in result["reason"]
    assert result["result"]["model"]["outcome"] == "rolled_back"
    models = box.info()
    assert models["active"]["sha256"] == good
    assert models["last_outcome"]["outcome"] == "rolled_back"
    back = box.run("model/rollback")
    assert back["outcome"] == "ok", back
    assert (back["result"]["left"], back["result"]["active"]["ref"]) == (good, "config")
    assert box.info()["active"]["ref"] == "config"
    assert box.info()["previous"] is None  # the version left was rolled back: no target
    missing = box.run("model/rollback", to="f" * 64)
    assert (missing["outcome"], missing["code"]) == ("rejected", "not_found")


def sigkill_mid_deploy_leaves_a_model_that_loads(box: Box) -> None:
    """Killed while downloading: the old model, the download resumes later. Killed in
    probation: the next start goes back to the version before. Never no model."""
    onnx = sha256_of(box.files["onnx"])
    box.server.faults["/onnx.onnx"] = ["slow:400000"]
    request = box.send("model/deploy", url=box.server.url("/onnx.onnx"), sha256=onnx)
    deadline = time.monotonic() + 30
    while not any(r.get("step") == "downloading" for r in box.results("model/deploy", request)):
        assert time.monotonic() < deadline, box.log.read_text()
        time.sleep(0.05)
    box.agent.send_signal(signal.SIGKILL)
    box.agent.wait(10)
    assert box.manifest()["active"] == "config"  # never named the half download
    box.config.write_text(box.config.read_text().replace("probation_s: 2", "probation_s: 30"))
    box.restart()
    assert box.info()["active"]["ref"] == "config"
    versions = {v["sha256"]: v for v in box.manifest()["versions"]}
    assert versions[onnx]["outcome"] == "rejected"
    assert "interrupted" in versions[onnx]["reason"]
    partial = box.tmp / "state" / "models" / "partial" / f"{onnx}.part"
    assert 0 < partial.stat().st_size < box.files["onnx"].stat().st_size

    # The model running before the next deploy is the config's, though a version that
    # ran well (`ok`, the newest rollback target) is kept: the operator changed
    # model.path after it ran. A probation cut by a crash goes back to the config's.
    good = sha256_of(box.files["good"])
    assert box.run("model/rollback", to=good)["outcome"] == "ok"
    original = box.config.read_text()
    moved = box.tmp / "config-model.onnx"
    moved.write_bytes(box.files["onnx"].read_bytes())
    reload_until_active(box, original.replace(str(box.files["onnx"]), str(moved)),
                        "ref", "config")
    assert box.info()["previous"]["sha256"] == good
    deadline = time.monotonic() + 60

    blind = sha256_of(box.files["blind"])  # passes validation here (min_detection_ratio 0)
    request = box.send("model/deploy", url=box.server.url("/blind.tar"), sha256=blind)
    while not any(r.get("step") == "swapped" for r in box.results("model/deploy", request)):
        assert time.monotonic() < deadline + 30, box.log.read_text()
        time.sleep(0.05)
    manifest = box.manifest()
    assert manifest["active"] == blind
    assert manifest["previous"] == "config"  # in probation: the model it replaced
    assert {v["sha256"]: v for v in manifest["versions"]}[blind]["replaced"] == "config"
    box.agent.send_signal(signal.SIGKILL)
    box.agent.wait(10)
    box.restart()
    assert box.info()["active"]["ref"] == "config"
    manifest = box.manifest()
    assert manifest["active"] == "config"
    versions = {v["sha256"]: v for v in manifest["versions"]}
    assert versions[blind]["outcome"] == "rolled_back"
    assert "before its probation ended" in versions[blind]["reason"]
    assert versions[good]["outcome"] == "ok"  # kept, not run
    assert "going back to config" in box.log.read_text()
    frames = len(box.collector.on_topic("/box1/cam/detections"))
    box.collector.wait_for("/box1/cam/detections", frames + 5, timeout=30)
    # The next step starts from the sample's model.path.
    reload_until_active(box, original, "path", str(box.files["onnx"]))


def reload_until_active(box: Box, config_text: str, key: str, value: str) -> None:
    """Write the config, reload (SIGHUP), wait until info's active model has key: value."""
    box.config.write_text(config_text)
    box.agent.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while box.info()["active"][key] != value:
        assert time.monotonic() < deadline, box.log.read_text()
        time.sleep(0.1)


def a_changed_model_path_wins_over_a_deployed_model(box: Box) -> None:
    """The operator's file is the last word: a reload with a new model.path replaces the
    deployed version, which stays kept for model/rollback."""
    good = sha256_of(box.files["good"])
    assert box.run("model/rollback", to=good)["outcome"] == "ok"
    assert box.info()["active"]["sha256"] == good
    reloads = len([m for m in box.collector.json_on("/box1/info")
                   if m["config"]["last_reload"]])
    box.config.write_text(box.config.read_text().replace(
        str(box.files["onnx"]), str(box.tmp / "good.xml")))
    box.agent.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while box.info()["active"]["ref"] != "config":
        assert time.monotonic() < deadline, box.log.read_text()
        time.sleep(0.1)
    models = box.info()
    assert models["active"]["path"] == str(box.tmp / "good.xml")
    assert models["previous"]["sha256"] == good
    assert reloads < len([m for m in box.collector.json_on("/box1/info")
                          if m["config"]["last_reload"]])
    assert box.manifest()["config_model"]["path"] == str(box.tmp / "good.xml")


def test_deploys_rollbacks_and_restarts_in_order(box: Box) -> None:
    """One agent through every step in order: each step starts from the state the one
    before left (a version deployed, rolled back, the agent killed). One test, not five:
    as separate tests, pytest-xdist could run a later step on another worker, against an
    agent where the earlier steps never happened (CI: a probation with no deploy)."""
    bad_models_are_rejected_with_their_reason_and_frames_go_on(box)
    a_good_deploy_swaps_between_frames(box)
    probation_rolls_back_a_model_that_stops_detecting(box)
    sigkill_mid_deploy_leaves_a_model_that_loads(box)
    a_changed_model_path_wins_over_a_deployed_model(box)
