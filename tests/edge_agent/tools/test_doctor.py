"""`edge-agent doctor` against a good setup and against each broken part, all real:
a real Mosquitto (with a password file where needed), the sample model on OpenVINO, a
file camera on the sample video, RTSP URLs with nothing (or something mute) behind them."""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge_agent.errors import ConfigError
from edge_agent.tools.doctor import FAIL, OK, Check, CheckTask, run_tasks
from tests.helpers import REPO, Broker, free_port, wait_for_port
from tests.rtsp import RtspServer


def write_config(tmp_path: Path, samples: Path, broker: Broker, **parts: str) -> Path:
    """A good config; `model`, `camera` or `mqtt_extra` replace that part."""
    video = samples / "media" / "vtest.mp4"
    camera = parts.get("camera", f"  - id: street\n    type: file\n    path: {video}\n")
    config = tmp_path / "agent.yaml"
    config.write_text(f"""
device_id: box1
state_dir: {tmp_path / "state"}
model:
  path: {parts.get("model", samples / "models" / "yolox_nano.onnx")}
  labels: {samples / "models" / "coco_labels.txt"}
backend:
  type: openvino
  device: CPU
mqtt:
  host: 127.0.0.1
  port: {parts.get("port", broker.port)}
  topic_prefix: doctor-test
{parts.get("mqtt_extra", "")}cameras:
{camera}""")
    return config


def doctor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "doctor", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )


def entry(output: str, name: str) -> tuple[str, str]:
    """(the checklist line of check `name`, its fix line or ''); the detail's own further
    lines (the model check's `model from:`) come between the two."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line[7:].startswith(f"{name}: "):
            follow = [more.strip() for more in lines[index + 1:]]
            under = follow[:next((i for i, text in enumerate(follow)
                                  if not lines[index + 1 + i].startswith("       ")),
                                 len(follow))]
            return line, next((text for text in under if text.startswith("fix: ")), "")
    raise AssertionError(f"no check {name!r} in:\n{output}")


def failed_names(output: str) -> list[str]:
    return [line[7:].split(":")[0] for line in output.splitlines() if line.startswith("[FAIL]")]


def test_good_setup_passes(tmp_path: Path, samples: Path, broker: Broker) -> None:
    done = doctor(write_config(tmp_path, samples, broker))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert failed_names(out) == []
    for name in ("config", "model", "camera street", "broker", "disk"):
        assert entry(out, name)[0].startswith("[ OK ]"), out
    assert "on openvino/CPU" in entry(out, "model")[0]
    assert "input 416x416" in entry(out, "model")[0]
    assert "768x576" in entry(out, "camera street")[0]
    assert "a test message came back" in entry(out, "broker")[0]
    for name in ("clock", "devices", "service"):  # present whatever this machine is
        entry(out, name)
    assert "all checks passed" in out


def restart_with_password(broker: Broker, tmp_path: Path) -> int:
    """The test broker gains a listener that wants user `agent`, password `s3cret`."""
    password_file = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(password_file), "agent", "s3cret"],
                   check=True)
    auth_port = free_port()
    broker.stop()
    broker.conf.write_text(
        "user root\nper_listener_settings true\npersistence false\n"
        f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n"
        f"listener {auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {password_file}\n"
    )
    broker.start()
    wait_for_port(auth_port)
    return auth_port


def test_wrong_broker_password(tmp_path: Path, samples: Path, broker: Broker) -> None:
    port = restart_with_password(broker, tmp_path)
    right = "  username: agent\n  password: s3cret\n"
    done = doctor(write_config(tmp_path, samples, broker, port=str(port), mqtt_extra=right))
    assert done.returncode == 0, done.stdout
    assert "connected as agent" in entry(done.stdout, "broker")[0]

    wrong = "  username: agent\n  password: not-it\n"
    done = doctor(write_config(tmp_path, samples, broker, port=str(port), mqtt_extra=wrong),
                  "--json")
    assert done.returncode == 1
    body = json.loads(done.stdout)
    assert body["ok"] is False
    failed = [check for check in body["checks"] if check["status"] == FAIL]
    assert [check["name"] for check in failed] == ["broker"]
    assert failed[0]["detail"] == f"127.0.0.1:{port}: broker refused: not authorized"
    assert "check mqtt.username/password" in failed[0]["fix"]
    assert "not-it" not in done.stdout


@pytest.mark.parametrize("kind", ["missing video file", "rtsp with nothing listening"])
def test_missing_camera(tmp_path: Path, samples: Path, broker: Broker, kind: str) -> None:
    port = free_port()
    camera = {
        "missing video file": f"  - id: gate\n    type: file\n    path: {tmp_path / 'no.mp4'}\n",
        "rtsp with nothing listening":
            f"  - id: gate\n    type: rtsp\n    url: rtsp://u:pw@127.0.0.1:{port}/live\n",
    }[kind]
    video = samples / "media" / "vtest.mp4"
    camera += f"  - id: street\n    type: file\n    path: {video}\n"
    done = doctor(write_config(tmp_path, samples, broker, camera=camera))
    assert done.returncode == 1
    assert failed_names(done.stdout) == ["camera gate"]
    line, fix = entry(done.stdout, "camera gate")
    assert line.startswith("[FAIL]")
    if kind == "missing video file":
        missing = tmp_path / "no.mp4"
        assert line == f"[FAIL] camera gate: video file {missing} not found"
        assert fix == f"fix: put the video file at {missing} or correct cameras[0].path"
    else:
        assert f"nothing listens on 127.0.0.1:{port}" in line
        assert "pw@" not in done.stdout
        assert "cameras[0].url" in fix
    assert entry(done.stdout, "camera street")[0].startswith("[ OK ]")


def test_unreadable_model(tmp_path: Path, samples: Path, broker: Broker) -> None:
    broken = tmp_path / "yolox_nano.onnx"
    data = (samples / "models" / "yolox_nano.onnx").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    done = doctor(write_config(tmp_path, samples, broker, model=str(broken)))
    assert done.returncode == 1
    assert failed_names(done.stdout) == ["model"]
    line, fix = entry(done.stdout, "model")
    assert f"cannot load model {broken}" in line
    assert fix.startswith(f"fix: {broken} is missing or damaged: copy it to the box again")
    assert "model.path" in fix


def test_invalid_config_names_file_and_line(tmp_path: Path, samples: Path,
                                            broker: Broker) -> None:
    config = write_config(tmp_path, samples, broker)
    config.write_text(config.read_text().replace("  device: CPU\n", "  devise: CPU\n"))
    done = doctor(config)
    assert done.returncode == 1
    line, _ = entry(done.stdout, "config")
    assert line.startswith("[FAIL]")
    assert f"{config}:9: backend.devise: unknown key (did you mean 'device'?)" in done.stdout
    assert "[SKIP] model, cameras, broker, disk" in done.stdout


def test_a_mute_camera_cannot_hang_the_doctor(tmp_path: Path, samples: Path,
                                              broker: Broker) -> None:
    """A host that accepts the TCP connection and never says a word (a wedged camera)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
        camera = (f"  - id: gate\n    type: rtsp\n    url: rtsp://127.0.0.1:{port}/live\n"
                  "    stall_timeout_s: 1\n")
        started = time.monotonic()
        done = doctor(write_config(tmp_path, samples, broker, camera=camera))
        elapsed = time.monotonic() - started
        for connection in accepted:
            connection.close()
    assert done.returncode == 1
    assert failed_names(done.stdout) == ["camera gate"]
    assert "its host answers on that port" in entry(done.stdout, "camera gate")[0]
    assert elapsed < 30, f"the doctor took {elapsed:.0f} s"


def test_each_check_has_a_time_limit() -> None:
    def hangs() -> Check:
        time.sleep(30)
        return Check("stuck", OK, "never")

    started = time.monotonic()
    results = list(run_tasks([
        CheckTask("stuck", hangs, 0.5, "unplug it"),
        CheckTask("quick", lambda: Check("quick", OK, "fine"), 5.0),
    ]))
    assert time.monotonic() - started < 3
    assert results[0] == Check("stuck", FAIL, "no answer within 0.5 s", "unplug it")
    assert results[1] == Check("quick", OK, "fine")


def test_live_rtsp_camera_reports_resolution_and_measured_fps(
    tmp_path: Path, samples: Path, broker: Broker
) -> None:
    with RtspServer(samples / "media" / "vtest.mp4") as server:
        camera = f"  - id: gate\n    type: rtsp\n    url: {server.url}\n"
        done = doctor(write_config(tmp_path, samples, broker, camera=camera))
    assert done.returncode == 0, done.stdout + done.stderr
    line, _ = entry(done.stdout, "camera gate")
    assert line.startswith("[ OK ] camera gate: RTSP rtsp://127.0.0.1:")
    assert "768x576" in line
    nominal = float(line.split(", ")[1].split(" fps")[0])
    measured = float(line.split("(measured ")[1].split(")")[0])
    assert measured == pytest.approx(nominal, rel=0.3), line


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def nobody_cannot_import(module: str, cwd: Path) -> str | None:
    """Why `nobody` cannot run this interpreter and import `module` from `cwd`, or None.

    The checkout (or a folder above it, or the venv) may be unreadable to nobody in many
    ways: no search permission (exec fails: "Permission denied"), no read permission
    (the import finds nothing: "No module named ..."), an unreadable pyvenv.cfg (a fatal
    start-up error). Whatever the way, root can import it and nobody cannot; a failure
    that root has too is a real error and is not excused here.
    """
    command = [sys.executable, "-c", f"import {module}"]
    as_nobody = subprocess.run([*AS_NOBODY, *command], capture_output=True, text=True,
                               timeout=60, cwd=cwd, check=False)
    if as_nobody.returncode == 0:
        return None
    as_root = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd,
                             check=False)
    assert as_root.returncode == 0, as_root.stderr  # broken for everyone: not a permission
    lines = (as_nobody.stderr or as_nobody.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {as_nobody.returncode}"


@pytest.mark.parametrize(("parent_mode", "readable"), [
    (0o755, True),
    (0o711, True),   # can pass through, cannot list: the project itself is still readable
    (0o700, False),  # "No module named ...": the old check looked only for "Permission denied"
    (0o744, False),  # can list, cannot pass through
    (0o300, False),
])
def test_the_nobody_probe_sees_every_way_a_parent_hides_the_project(
    tmp_path_factory: pytest.TempPathFactory, parent_mode: int, readable: bool
) -> None:
    if shutil.which("setpriv") is None or os.getuid() != 0:
        pytest.skip("needs root and setpriv to act as nobody")
    top = Path(tempfile.mkdtemp(prefix="nobody-probe-"))
    try:
        top.chmod(0o755)
        parent = top / "parent"
        package = parent / "project" / "probe_package"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        for folder in (package, package.parent):
            folder.chmod(0o755)
        (package / "__init__.py").chmod(0o644)
        parent.chmod(parent_mode)
        problem = nobody_cannot_import("probe_package", package.parent)
    finally:
        parent.chmod(0o755)
        shutil.rmtree(top)
    assert (problem is None) is readable, problem


def test_device_permissions_name_the_group_to_join(tmp_path_factory) -> None:
    """A /dev tree (files standing in for device nodes) checked by an unprivileged user:
    root may open anything, so the check runs as `nobody` through setpriv."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop to an unprivileged user")
    if os.getuid() != 0:
        pytest.skip("needs root to hand the files to group video and drop privileges")
    problem = nobody_cannot_import("edge_agent.tools.doctor_host", REPO)
    if problem:
        pytest.skip(f"nobody cannot run this checkout here: {problem}")
    root = Path(tempfile.mkdtemp(prefix="doctor-dev-"))
    try:
        root.chmod(0o755)
        video_gid = grp.getgrnam("video").gr_gid
        for name in ("dev/video0", "dev/dri/renderD128"):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o755)
            path.touch(mode=0o660)
            os.chown(path, 0, video_gid)
        script = textwrap.dedent(f"""
            import json
            from pathlib import Path
            from edge_agent.config.model import AgentConfig
            from edge_agent.tools.doctor_host import check_devices
            for camera in ({{"id": "door", "type": "usb", "device": 0}},
                           {{"id": "door", "type": "rtsp", "url": "rtsp://cam/live"}}):
                config = AgentConfig.model_validate(
                    {{"model": {{"path": "m.onnx"}}, "cameras": [camera]}})
                print(json.dumps(check_devices(config, Path({str(root)!r})).__dict__))
        """)
        done = subprocess.run(
            [*AS_NOBODY, sys.executable, "-c", script],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        )
    finally:
        shutil.rmtree(root)
    assert done.returncode == 0, done.stderr
    usb, rtsp = (json.loads(line) for line in done.stdout.splitlines())
    assert usb["status"] == FAIL  # the config's own camera: the agent cannot work
    assert usb["detail"] == (
        "nobody cannot open /dev/dri/renderD128 (group video), /dev/video0 (group video)"
    )
    assert usb["fix"].startswith("sudo usermod -aG video nobody")
    assert rtsp["status"] == "WARN"  # not used by this config: worth knowing, not fatal


@pytest.mark.parametrize(("case", "about_labels"), [
    ("labels file missing", True),
    ("labels path is a folder", True),
    ("model file missing", False),
    ("model file truncated", False),
])
def test_the_model_fix_names_the_file_that_is_wrong(
    tmp_path: Path, samples: Path, broker: Broker, case: str, about_labels: bool
) -> None:
    """A missing labels file once got the fix for a damaged ONNX model."""
    from edge_agent.config.loader import load_config
    from edge_agent.tools.doctor import check_model

    model, labels = samples / "models" / "yolox_nano.onnx", samples / "models" / "coco_labels.txt"
    if case == "labels file missing":
        labels = tmp_path / "coco_labels.txt"
    elif case == "labels path is a folder":
        labels = tmp_path / "labels"
        labels.mkdir()
    elif case == "model file missing":
        model = tmp_path / "missing.onnx"
    else:
        model = tmp_path / "cut.onnx"
        model.write_bytes((samples / "models" / "yolox_nano.onnx").read_bytes()[:100_000])
    config = write_config(tmp_path, samples, broker, model=str(model))
    config.write_text(config.read_text().replace(
        f"labels: {samples / 'models' / 'coco_labels.txt'}", f"labels: {labels}"))
    if case == "labels path is a folder":  # a labels path that exists is read at load
        with pytest.raises(ConfigError, match=r"model\.labels: labels file .* is not a regular"):
            load_config(config)
        return
    check = check_model(load_config(config))
    assert check.status == FAIL, check
    assert check.fix is not None
    if about_labels:
        assert str(labels) in check.fix, check.fix
        assert "model.labels" in check.fix, check.fix
        assert "ONNX" not in check.fix
    else:
        assert check.fix.startswith(f"{model} is missing or damaged"), check.fix
        assert "model.labels" not in check.fix


def test_the_sample_models_files_missing_where_models_fetch_puts_them(
    tmp_path: Path, samples: Path, broker: Broker
) -> None:
    """The reference config names the sample model and labels where `models fetch` puts
    them: before the fetch the doctor named only the labels file and told the technician
    to write class names by hand. It names the model first and the command that gets it."""
    from edge_agent.config.loader import load_config
    from edge_agent.tools.doctor import check_model

    folder = tmp_path / "models"
    config = write_config(tmp_path, samples, broker, model=str(folder / "yolox_nano.onnx"))
    config.write_text(config.read_text().replace(
        f"labels: {samples / 'models' / 'coco_labels.txt'}",
        f"labels: {folder / 'coco_labels.txt'}"))
    check = check_model(load_config(config))
    assert check.status == FAIL, check
    assert str(folder / "yolox_nano.onnx") in check.detail
    assert check.fix is not None
    assert check.fix.startswith(f"get it with: edge-agent models fetch yolox-nano --dir {folder}")


def test_doctor_on_the_reference_config_dials_no_camera() -> None:
    """The reference config once shipped an enabled camera at a LAN address, and the
    doctor dialled it. Its example cameras are now disabled or commented out."""
    done = doctor(REPO / "configs" / "agent.yaml", "--json")
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    assert "camera dock-door" not in checks
    assert [name for name in checks if name.startswith("camera ")] == ["camera bench"]
    assert checks["config"]["status"] == OK
    assert "192.0.2" not in done.stdout
# -- the broker delivers the agent's own detections (what MQTT 3.1.1 cannot report) ------


def broker_check_with(tmp_path: Path, samples: Path, broker: Broker, broker_conf: str,
                      mqtt_extra: str = "") -> Check:
    """Restart the test broker with `broker_conf` added; run the doctor's broker check."""
    from edge_agent.config.loader import load_config
    from edge_agent.tools.doctor_broker import check_broker

    broker.stop()
    broker.conf.write_text(f"user root\npersistence false\nlistener {broker.port} 127.0.0.1\n"
                           f"allow_anonymous true\n{broker_conf}")
    broker.start()
    config = load_config(write_config(tmp_path, samples, broker, mqtt_extra=mqtt_extra))
    return check_broker(config, timeout=6.0)


def test_the_test_message_goes_to_the_agents_own_detection_topic(
    tmp_path: Path, samples: Path, broker: Broker,
) -> None:
    seen: list[tuple[str, int]] = []
    import paho.mqtt.client as mqtt

    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda _c, _u, m: seen.append((m.topic, len(m.payload)))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("#", qos=1)
    watcher.loop_start()
    try:
        time.sleep(0.5)
        check = broker_check_with(tmp_path, samples, broker, "")
    finally:
        watcher.loop_stop()
    assert check.status == OK, check
    assert "doctor-test/box1/street/detections" in check.detail
    assert "65536 bytes" in check.detail


def test_an_acl_that_denies_the_detection_topic_is_named(
    tmp_path: Path, samples: Path, broker: Broker,
) -> None:
    """The broker acknowledges the agent's detections and delivers none (3.1.1 is silent)."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite doctor-test/box1/status\ntopic read doctor-test/#\n")
    check = broker_check_with(tmp_path, samples, broker, f"acl_file {acl}\n")
    assert check.status == FAIL
    assert "doctor-test/box1/street/detections" in check.detail
    assert "delivers none" in check.detail
    assert "ACL must let anonymous clients publish and subscribe" in check.fix


def test_a_broker_size_limit_below_the_message_size_is_named(
    tmp_path: Path, samples: Path, broker: Broker,
) -> None:
    check = broker_check_with(tmp_path, samples, broker, "message_size_limit 20000\n")
    assert check.status == FAIL
    assert "a 65536-byte test detection message" in check.detail
    assert "message_size_limit" in check.detail
    assert "mqtt.max_message_bytes" in check.fix
    # Told the broker's limit, the agent passes.
    check = broker_check_with(tmp_path, samples, broker, "message_size_limit 20000\n",
                              mqtt_extra="  max_message_bytes: 19000\n")
    assert check.status == OK, check


def test_a_reserved_dollar_prefix_is_named(tmp_path: Path, samples: Path,
                                           broker: Broker) -> None:
    from edge_agent.config.loader import load_config
    from edge_agent.tools.doctor_broker import check_broker

    # check-config refuses a '$' prefix (test_config_limits); the doctor's own check is a
    # second line for a config built another way, so build one past the validator.
    config = load_config(write_config(tmp_path, samples, broker))
    mqtt_config = config.mqtt.model_copy(update={"topic_prefix": "$edge"})
    check = check_broker(config.model_copy(update={"mqtt": mqtt_config}), timeout=6.0)
    assert check.status == FAIL
    assert "reserve" in check.fix
