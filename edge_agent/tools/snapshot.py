"""`edge-agent snapshot CAMERA`: one frame through the model, saved with its boxes drawn.

For aiming a camera: the technician sees what the model sees, on the configured backend,
with the configured thresholds. The frame grab and engine helpers here are shared with
`edge-agent doctor`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from edge_agent.config.model import AgentConfig, CameraConfig, FileCamera, RtspCamera
from edge_agent.drawing import draw, label_of
from edge_agent.errors import AgentError, SourceError
from edge_agent.tools.options import (
    add_config_option,
    add_model_option,
    model_for,
    source_lines,
)
from engines.base import Detections, Engine

if TYPE_CHECKING:
    from edge_agent.models.running import RunningModel
    from edge_agent.selection.loading import Selection

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Grab:
    """One frame from a camera and what the source said about itself."""

    image: np.ndarray
    nominal_fps: float
    """What the source reports (CAP_PROP_FPS); 0 when it does not say."""
    first_frame_s: float
    """From opening the source to the first frame."""
    measured_fps: float | None = None
    """Frames/s counted after the first frame, when measuring was asked for."""

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def quiet_opencv() -> None:
    """OpenCV and FFmpeg print their own warnings for a camera that fails to open; the
    tools say it once, in their own words. Only effective before cv2 is imported."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def frame_timeout(camera: CameraConfig) -> float:
    """Opening and the first read each get the camera's stall timeout, plus some slack."""
    return 2 * camera.stall_timeout_s + 2.0


def find_camera(config: AgentConfig, camera_id: str, shown: str) -> CameraConfig:
    for camera in config.cameras:
        if camera.id == camera_id:
            return camera
    known = ", ".join(camera.id for camera in config.cameras)
    raise AgentError(f"{shown}: no camera with id {camera_id!r}; cameras: {known}")


def grab_frame(camera: CameraConfig, timeout: float | None = None, measure_s: float = 0.0) -> Grab:
    """Open the camera and read one frame within `timeout`, or raise SourceError.

    The read runs in a daemon thread: a USB or GStreamer source that never answers
    cannot hang the caller (the stuck thread is abandoned).
    """
    limit = frame_timeout(camera) if timeout is None else timeout
    if isinstance(camera, RtspCamera):
        unreachable = rtsp_unreachable(camera)
        if unreachable:
            raise SourceError(f"camera {camera.id}: {unreachable}")
    outcome: list[Grab | BaseException] = []

    def work() -> None:
        try:
            outcome.append(_grab(camera, limit, measure_s))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=work, name=f"grab-{camera.id}", daemon=True)
    thread.start()
    thread.join(limit + measure_s + 1.0)
    if not outcome:
        raise SourceError(f"camera {camera.id}: no frame within {limit:.0f} s (the source hangs)")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def rtsp_unreachable(camera: RtspCamera) -> str | None:
    """Why the camera's host:port takes no TCP connection, or None when it does: says
    "nothing listens" where OpenCV would only say "cannot open"."""
    parts = urlsplit(camera.url)
    host = parts.hostname or ""
    port = parts.port or (322 if parts.scheme == "rtsps" else 554)
    try:
        with socket.create_connection((host, port), timeout=min(5.0, camera.stall_timeout_s)):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve the RTSP host {host}: {exc.strerror}"
    except ConnectionRefusedError:
        return f"nothing listens on {host}:{port} (connection refused)"
    except OSError as exc:
        return f"cannot reach {host}:{port}: {exc.strerror or exc}"


def _grab(camera: CameraConfig, limit: float, measure_s: float) -> Grab:
    import cv2

    from edge_agent.capture.camera import open_capture

    started = time.monotonic()
    capture = open_capture(camera)
    try:
        nominal = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        deadline = started + limit
        while True:
            ok, image = capture.read()
            if ok and image is not None:
                break
            if isinstance(camera, FileCamera):
                raise SourceError(f"camera {camera.id}: {camera.path} has no readable frames")
            if time.monotonic() >= deadline:
                raise SourceError(
                    f"camera {camera.id}: opened, but no frame within {limit:.0f} s"
                )
        first_frame_s = time.monotonic() - started
        measured = _measure_fps(capture, measure_s) if measure_s > 0 else None
        return Grab(image, nominal if 0 < nominal < 1000 else 0.0, first_frame_s, measured)
    finally:
        capture.release()


def _measure_fps(capture: Any, seconds: float) -> float | None:
    """Frames/s the source sends, from the stream's own timestamps where it has them:
    right after opening, RTSP hands over a burst of buffered frames, so counting frames
    per wall-clock second would overstate the rate."""
    import cv2

    stamps: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds and capture.read()[0]:
        stamps.append(float(capture.get(cv2.CAP_PROP_POS_MSEC)))
    elapsed = time.monotonic() - started
    if len(stamps) >= 3 and stamps[-1] > stamps[0]:
        return (len(stamps) - 1) * 1000.0 / (stamps[-1] - stamps[0])
    return len(stamps) / elapsed if stamps and elapsed > 0 else None


def open_engine(config: AgentConfig, config_file: Path | str | None = None) -> Selection:
    """The engine the agent itself would run: same probe, same backend policy."""
    from edge_agent.selection.loading import select_engine
    from edge_agent.selection.probe import probe

    return select_engine(config, probe(), config_file)


def open_running(running: RunningModel, config_file: Path | str | None = None) -> Selection:
    """open_engine on the model the box runs; a deployed version that does not load says
    which it is, so the technician does not go looking at model.path."""
    from engines.errors import EngineError

    try:
        return open_engine(running.config, config_file)
    except EngineError as exc:
        if not running.deployed:
            raise
        raise AgentError(f"{exc}\n  the model is {running.source()}; "
                         "--config-model uses the config's model.path instead") from exc


def detect(engine: Engine, config: AgentConfig, image: np.ndarray) -> tuple[Detections, float]:
    """One frame through the model with the configured filter; (detections, infer ms).

    An output with no finite value at all is an EngineError naming the likely cause,
    not an empty picture.
    """
    from edge_agent.selection.loading import detection_filter
    from engines.detector import Detector
    from engines.errors import EngineError

    detector = Detector(engine, detection_filter(config.model, engine.info.class_names))
    detected = detector.detect(image)
    if detected.detections is None:
        raise EngineError(detected.output_problem or "the model produced no usable output")
    return detected.detections, detected.infer_ms


def write_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> None:
    """Write atomically: a viewer polling the file never sees half a JPEG."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise AgentError(f"cannot encode the frame as JPEG for {path}")
    directory = path.parent if str(path.parent) else Path()
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(encoded.tobytes())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AgentError(f"cannot write {path}: {exc.strerror or exc}") from exc


def describe(detections: Detections, class_names: tuple[str, ...]) -> list[str]:
    """One line per detection, strongest first, for the terminal."""
    order = np.argsort(-detections.scores)
    lines = []
    for index in order:
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[index])
        label = label_of(int(detections.class_ids[index]), class_names)
        lines.append(f"  {label:<16} {float(detections.scores[index]):.2f}  "
                     f"box {x1:.0f},{y1:.0f} - {x2:.0f},{y2:.0f}")
    return lines


def _snapshot(args: argparse.Namespace) -> int:
    from edge_agent import clock
    from edge_agent.config.loader import load_config
    from edge_agent.publish.payload import detections_payload

    quiet_opencv()
    logging.getLogger().setLevel(logging.WARNING)  # the detections are the output
    running = model_for(load_config(args.config), args)  # a deployed version, if one runs
    config = running.config
    camera = find_camera(config, args.camera, str(args.config))
    output = args.output or Path(f"snapshot-{camera.id}.jpg")
    grab = grab_frame(camera)
    selection = open_running(running, args.config)
    engine, reason = selection.engine, selection.reason
    try:
        detections, infer_ms = detect(engine, config, grab.image)
        names = engine.info.class_names
        drawn = draw(grab.image, detections, names)
        if args.zones:  # masks, zones and lines on top, to aim them
            from edge_agent.events.draw import draw_shapes

            drawn = draw_shapes(drawn, camera.zones, camera.lines, getattr(camera, "masks", []))
        write_jpeg(output, drawn)
        if args.json:
            payload = detections_payload(  # stamped and flagged as the agent's are
                camera_id=camera.id, sequence=0, captured_at=time.time(),
                clock_synced=clock.TRUST.synced(),
                frame_width=grab.width, frame_height=grab.height, model=engine.info,
                backend=engine.backend, device=engine.device, inference_ms=infer_ms,
                detections=detections,
            )
            body: dict[str, Any] = json.loads(payload)
            body["image"] = str(output)
            body["model_source"] = running.to_json()
            print(json.dumps(body, indent=2))
            return 0
        counts = Counter(label_of(int(i), names) for i in detections.class_ids)
        summary = ", ".join(f"{label} {count}" for label, count in counts.most_common())
        print(f"camera {camera.id}: {grab.width}x{grab.height} frame, "
              f"{len(detections)} detections{f' ({summary})' if summary else ''}")
        print(f"  model {engine.info.name} on {engine.backend}/{engine.device} ({reason}), "
              f"inference {infer_ms:.1f} ms")
        print("\n".join(source_lines(running.to_json())))
        print("\n".join(describe(detections, names)) or "  (nothing above the score threshold)")
        print(f"saved {output}")
    finally:
        engine.close()
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "snapshot", help="save one frame with the model's boxes drawn (for aiming a camera)"
    )
    parser.add_argument("camera", help="camera id from the config")
    add_config_option(parser)
    parser.add_argument("-o", "--output", type=Path,
                        help="JPEG to write; default: snapshot-CAMERA.jpg here")
    parser.add_argument("--json", action="store_true",
                        help="print the detections as the agent's MQTT JSON payload")
    parser.add_argument("--zones", action="store_true",
                        help="also draw the camera's masks, zones and lines (with direction "
                        "arrows) to aim them")
    add_model_option(parser)
    parser.set_defaults(handler=_snapshot)
