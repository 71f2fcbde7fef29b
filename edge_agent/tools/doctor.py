"""`edge-agent doctor`: check every part the agent needs and say how to fix what fails.

A technician on site runs it once: config, model on the chosen backend, each camera,
the broker (with the configured auth/TLS), disk, clock, device permissions and the
systemd unit. Every check runs in its own thread with a time limit, so a dead camera
cannot hang the doctor; the output is a checklist with a fix under each failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.config.model import (
    AgentConfig,
    CameraConfig,
    FileCamera,
    RtspCamera,
    UsbCamera,
)
from edge_agent.errors import ConfigError
from edge_agent.redact import redact
from edge_agent.tools.doctor_broker import check_broker
from edge_agent.tools.doctor_host import (
    FAIL,
    INFO,
    OK,
    SKIP,
    WARN,
    Check,
    check_clock,
    check_devices,
    check_disk,
    check_service,
)
from edge_agent.tools.options import add_model_option, source_lines

if TYPE_CHECKING:
    from engines.errors import ModelLoadError

log = logging.getLogger(__name__)

MARKS = {OK: "[ OK ]", FAIL: "[FAIL]", WARN: "[WARN]", INFO: "[INFO]", SKIP: "[SKIP]"}
DEFAULT_CONFIG = Path("/etc/edge-agent/agent.yaml")


@dataclass(frozen=True)
class CheckTask:
    """A check to run with its time limit, and the fix to show if it hangs."""

    name: str
    run: Callable[[], Check]
    limit_s: float
    hang_fix: str = "run the doctor again; if it hangs again, the part above is stuck"


def run_tasks(tasks: list[CheckTask]) -> Iterator[Check]:
    """Start every task at once, then yield results in order, each within its limit."""
    started = [(task, *_start(task)) for task in tasks]
    for task, thread, box, began in started:
        thread.join(max(0.0, began + task.limit_s - time.monotonic()))
        if box:
            yield box[0]
        else:
            yield Check(task.name, FAIL, f"no answer within {task.limit_s:g} s",
                        task.hang_fix)


def _start(task: CheckTask) -> tuple[threading.Thread, list[Check], float]:
    box: list[Check] = []

    def work() -> None:
        try:
            box.append(task.run())
        except Exception as exc:  # a check's own bug must not hide the other checks
            log.debug("check %s failed", task.name, exc_info=True)
            box.append(Check(task.name, FAIL, f"unexpected error: {exc!r}",
                             "report this with the output of edge-agent doctor --json"))

    thread = threading.Thread(target=work, name=f"doctor-{task.name}", daemon=True)
    thread.start()
    return thread, box, time.monotonic()


# -- config and model -------------------------------------------------------------------


def check_config_file(path: Path) -> tuple[Check, AgentConfig | None]:
    from edge_agent.config.loader import check_config, load_config

    result = check_config(path)
    if not result.ok:
        return Check("config", FAIL, result.text,
                     f"edit {path} as each line says; edge-agent check-config {path} "
                     "lists the same problems"), None
    config = load_config(path)
    cameras = [cam.id for cam in config.cameras if cam.enabled]
    return Check("config", OK, f"{path}: device {config.device_id}, {len(cameras)} camera(s) "
                 f"enabled ({', '.join(cameras)})"), config


def _model_load_error(exc: BaseException) -> Any:
    """The ModelLoadError behind a selection failure, if that is what it was."""
    from engines.errors import ModelLoadError

    while exc is not None and not isinstance(exc, ModelLoadError):
        exc = exc.__cause__ or exc.__context__
    return exc


def _load_fix(config: AgentConfig, deployed: bool, exc: Exception) -> str:
    """What a technician can do about a model that does not load, by what failed."""
    from edge_agent.tools.models import fetch_hint
    from engines.errors import LabelsFileError, ModelFileError

    damaged = _model_load_error(exc)
    missing = damaged.path if isinstance(damaged, ModelFileError) else (
        exc.path if isinstance(exc, LabelsFileError) else None)
    hint = fetch_hint(Path(missing)) if missing and not Path(missing).exists() else None
    fix = _cause_fix(config, deployed, exc, damaged)
    if hint is not None:  # the sample model's default place: one command gets it
        return f"get it with: {hint} (--mirror DIR on an offline box; docs/models.md); or {fix}"
    return fix


def _cause_fix(config: AgentConfig, deployed: bool, exc: Exception,
               damaged: ModelLoadError | None) -> str:
    from engines.errors import LabelsFileError, ModelFileError

    if isinstance(exc, LabelsFileError):  # the model is fine; its class names are not
        return (f"put the class names in {exc.path}, one per line in class-id order, as "
                "UTF-8 text, or remove model.labels to use the model's own names")
    if damaged is not None and damaged.any_backend and not isinstance(damaged, ModelFileError):
        return ("re-export the model as the message says (docs/postprocess.md), or set "
                "model.family if it was guessed wrong")  # its metadata or outputs
    if deployed and (damaged is not None or "cannot load model" in str(exc)):
        return (f"the deployed version in {config.model.path.parent} does not load: "
                "deploy it again or model/rollback (the agent's next start rolls it "
                "back by itself); --config-model checks the config's model.path")
    if damaged is not None or "cannot load model" in str(exc):
        path = damaged.path if damaged is not None else config.model.path
        return (f"{path} is missing or damaged: copy it to the box again (compare its "
                "sha256 with the original) or point model.path at a valid ONNX or "
                "OpenVINO IR (.xml + .bin) file")
    if isinstance(exc, OSError):
        return (f"state_dir {config.state_dir} must be writable by the agent's user; run "
                "the doctor as that user (sudo -u edge-agent edge-agent doctor ...)")
    return ("install the runtime it names, or set backend.type/device to one this box "
            "has (edge-agent probe; docs/backends.md)")


def check_model(config: AgentConfig, use_config_model: bool = False) -> Check:
    """The model the box runs (a deployed version when there is one, edge_agent.models.
    running), loaded as the agent loads it; the detail says which model and why."""
    from edge_agent.models.running import running_model

    running = running_model(config, use_config=use_config_model)
    check = _check_loaded(running.config, running.deployed)
    source = "\n".join(source_lines(running.to_json(), indent=""))
    check = replace(check, detail=f"{check.detail}\n{source}")
    if running.fix and check.status == OK:  # it works, but not on the model deployed
        return replace(check, status=WARN, fix=running.fix)
    return check


def _check_loaded(config: AgentConfig, deployed: bool) -> Check:
    import numpy as np

    from edge_agent.selection.loading import detection_filter
    from edge_agent.tools.snapshot import detect, open_engine
    from engines.errors import EngineError, ModelFileError

    model_path = Path(config.model.path)
    try:
        if not model_path.exists():  # named before its labels file: the first thing to get
            raise ModelFileError(str(model_path), "file not found")
        selection = open_engine(config)
    except (EngineError, OSError) as exc:
        damaged = _model_load_error(exc)
        return Check("model", FAIL, str(damaged or exc), _load_fix(config, deployed, exc))
    engine = selection.engine
    try:
        try:
            detection_filter(config.model, engine.info.class_names)
        except ConfigError as exc:
            return Check("model", FAIL, str(exc), "fix model.classes in the config")
        blank = np.full((engine.input.height, engine.input.width, 3), 114, np.uint8)
        try:
            _, infer_ms = detect(engine, config, blank)
        except EngineError as exc:
            return Check("model", FAIL, f"test inference: {exc}",
                         "re-export the model, or run it at full precision (docs/backends.md)")
        info = engine.info
        detail = (f"{Path(info.path).name} ({info.family}, {len(info.class_names)} classes, "
                  f"input {engine.input.width}x{engine.input.height}) on {engine.backend}/"
                  f"{engine.device}, test inference {infer_ms:.1f} ms; {selection.reason}")
    finally:
        engine.close()
    if selection.fallbacks:
        return Check("model", WARN, f"{detail}; degraded, passed over: "
                     + "; ".join(selection.fallbacks),
                     "see why the preferred backend failed (edge-agent probe, docs/backends.md)")
    return Check("model", OK, detail)


# -- cameras ----------------------------------------------------------------------------


def _camera_source(camera: CameraConfig) -> str:
    from edge_agent.capture.gstreamer import redact_url as _redact

    if isinstance(camera, FileCamera):
        return f"video file {camera.path}"
    if isinstance(camera, RtspCamera):
        return f"RTSP {_redact(camera.url)}"
    if isinstance(camera, UsbCamera):
        return f"USB camera {camera.device}"
    return "GStreamer pipeline"


def _camera_fix(camera: CameraConfig, index: int) -> str:
    key = f"cameras[{index}]"
    if isinstance(camera, FileCamera):
        return f"put the video file at {camera.path} or correct {key}.path"
    if isinstance(camera, RtspCamera):
        return (f"check that the camera is powered and reachable from this box, and the host, "
                f"port, path and credentials in {key}.url; try: ffprobe -rtsp_transport "
                f"{camera.transport} '<url>'")
    if isinstance(camera, UsbCamera):
        return (f"check the camera is plugged in (ls /dev/video*; v4l2-ctl --list-devices) and "
                f"{key}.device; the user needs group video; a running agent holds the camera: "
                "stop it first (sudo systemctl stop edge-agent)")
    return (f"test {key}.pipeline alone: gst-launch-1.0 <pipeline> with fakesink in place of "
            "appsink")


def check_camera(camera: CameraConfig, index: int) -> Check:
    from edge_agent.errors import SourceError
    from edge_agent.tools.snapshot import grab_frame

    name = f"camera {camera.id}"
    source = _camera_source(camera)
    live = not isinstance(camera, FileCamera)
    try:
        grab = grab_frame(camera, measure_s=1.0 if live else 0.0)
    except SourceError as exc:
        reason = str(exc).removeprefix(f"camera {camera.id}: ")
        if isinstance(camera, RtspCamera) and reason.startswith("cannot open"):
            reason += ("; its host answers on that port, so the URL's path or credentials, "
                       "or the stream itself, is wrong")
        detail = reason if source.split(" ", 1)[-1] in reason else f"{source}: {reason}"
        return Check(name, FAIL, detail, _camera_fix(camera, index))
    rate = f"{grab.nominal_fps:.1f} fps" if grab.nominal_fps else "fps not reported"
    if grab.measured_fps is not None:
        rate += f" (measured {grab.measured_fps:.1f})"
    return Check(name, OK, f"{source}: {grab.width}x{grab.height}, {rate}, first frame in "
                 f"{grab.first_frame_s:.1f} s")


# -- broker -----------------------------------------------------------------------------



# -- the command ------------------------------------------------------------------------


def diagnose(config_path: Path, unit: str = "edge-agent", use_config_model: bool = False,
             ) -> Iterator[Check]:
    """Every check in checklist order; config-dependent ones are skipped if it is invalid.
    The model checked is the one the box runs, or the config's with `use_config_model`."""
    config_check, config = check_config_file(config_path)
    yield config_check
    tasks: list[CheckTask] = []
    if config is None:
        yield Check("model, cameras, broker, disk", SKIP, "need a valid config")
    else:
        tasks.append(CheckTask("model", lambda: check_model(config, use_config_model), 300.0,
                               "compiling takes too long: check backend.device"))
        for index, camera in enumerate(config.cameras):
            if camera.enabled:
                tasks.append(CheckTask(
                    f"camera {camera.id}", lambda cam=camera, i=index: check_camera(cam, i),
                    2 * camera.stall_timeout_s + 10.0, _camera_fix(camera, index),
                ))
        tasks.append(CheckTask("broker", lambda: check_broker(config), 45.0,
                               "check mqtt.host/mqtt.port and the network"))
        tasks.append(CheckTask("disk", lambda: check_disk(config.state_dir), 10.0,
                               "the state_dir filesystem hangs: check the disk or mount"))
    tasks.append(CheckTask("clock", check_clock, 10.0))
    tasks.append(CheckTask("devices", lambda: check_devices(config), 10.0))
    tasks.append(CheckTask("service", lambda: check_service(unit), 30.0))
    yield from run_tasks(tasks)


def format_check(check: Check) -> str:
    lines = check.detail.splitlines() or [""]
    text = f"{MARKS[check.status]} {check.name}: {lines[0]}"
    text += "".join(f"\n       {line}" for line in lines[1:])
    if check.fix and check.status in (FAIL, WARN):
        text += f"\n       fix: {check.fix}"
    return text


def _doctor(args: argparse.Namespace) -> int:
    from edge_agent.tools.snapshot import quiet_opencv

    quiet_opencv()
    logging.getLogger().setLevel(logging.ERROR)  # the checklist is the output, not INFO lines
    checks = []
    for found in diagnose(args.config, args.unit, args.config_model):
        check = replace(found, detail=redact(found.detail), fix=redact(found.fix))  # no secrets
        checks.append(check)
        if not args.json:
            print(format_check(check), flush=True)
    failed = [check for check in checks if check.status == FAIL]
    warned = [check for check in checks if check.status == WARN]
    if args.json:
        body = {"ok": not failed,
                "checks": [{**asdict(check), "ok": check.ok} for check in checks]}
        print(json.dumps(body, indent=2))
    elif failed:
        print(f"\n{len(failed)} failed, {len(warned)} warning(s): fix the FAIL lines first")
    else:
        print(f"\nall checks passed{f', {len(warned)} warning(s)' if warned else ''}")
    sys.stdout.flush()
    return 1 if failed else 0


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "doctor", help="check config, model, cameras, broker and the box; say how to fix"
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"agent YAML file (default: {DEFAULT_CONFIG})")
    parser.add_argument("--unit", default="edge-agent", help="systemd unit to check")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_option(parser)
    parser.set_defaults(handler=_doctor)

