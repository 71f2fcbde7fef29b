"""The parts every `edge-agent bench` section shares: decode alone, the broker, the loop.

`loop_figures` runs the agent's real capture -> pipeline -> publisher path for a list of
cameras on one engine and reports total and per-camera frames/s and latency; sections
(edge_agent/tools/bench.py SECTIONS) call it with the cameras they compare.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.camera import Camera
from edge_agent.config.model import AgentConfig, CameraConfig, FileCamera, MqttConfig
from edge_agent.errors import AgentError
from edge_agent.pipeline import CameraPipeline
from edge_agent.pipeline_stats import LatencyRecorder, StageTimes
from edge_agent.publish.publisher import Publisher
from edge_agent.selection.loading import detection_filter
from edge_agent.selection.probe import HardwareReport
from edge_agent.tools.bench_sections import BROKERS
from engines.base import Engine

WARMUP_S = 1.0
FIRST_RESULT_S = 30.0
"""The longest the warm-up waits for every camera's first published frame."""


@dataclass
class BenchContext:
    """What one backend's run gives every section: the loaded engine and its ceilings."""

    config: AgentConfig
    hardware: HardwareReport
    engine: Engine
    video: Path
    cameras: list[CameraConfig]
    """The cameras the loop runs: every enabled one of the config, or one of --video."""
    mqtt: MqttConfig
    device_id: str
    seconds: float
    decode_fps: float
    engine_fps: float
    bound_fps: float
    """Serial bound of one camera: 1 / (1/engine + 1/decode)."""
    args: argparse.Namespace


def video_size(video: Path) -> tuple[int, int]:
    """(width, height) of the video's frames, as the capture thread will see them."""
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise AgentError(f"cannot read a frame of {video}")
    return int(frame.shape[1]), int(frame.shape[0])


def decode_fps(video: Path, seconds: float) -> float:
    """OpenCV/FFmpeg decode alone, looping the file, as the capture thread does it."""
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise AgentError(f"cannot open video {video}")
    frames, started = 0, time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            ok, _ = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            frames += 1
    finally:
        capture.release()
    return frames / (time.perf_counter() - started)


@contextmanager
def private_broker() -> Iterator[MqttConfig]:
    """A throwaway mosquitto on a free loopback port."""
    if shutil.which("mosquitto") is None:
        raise AgentError("mosquitto is not installed (scripts/setup installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        conf.flush()
        process = subprocess.Popen(
            ["mosquitto", "-c", conf.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AgentError(
                            f"the bench's private mosquitto did not listen on 127.0.0.1:{port}"
                        ) from None
                    time.sleep(0.05)
            yield MqttConfig(host="127.0.0.1", port=port, topic_prefix="bench", max_queued=100_000)
        finally:
            # It holds nothing worth saving (persistence false), and mosquitto 2.0 forgets a
            # SIGTERM that lands just after its listener opens: kill it if TERM did not.
            process.terminate()
            try:
                process.wait(2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def bench_broker(config: AgentConfig, which: str) -> Iterator[tuple[MqttConfig, str]]:
    """(MQTT settings, device id) for the loop.

    `private`: a throwaway Mosquitto on loopback. `config`: the config's own broker,
    credentials and TLS, as device `<device_id>-bench` with client id
    `edge-agent-<device_id>-bench`, so the running agent is neither kicked off (same
    client id) nor mixed up with bench frames on its topics.
    """
    if which == "private":
        with private_broker() as mqtt:
            yield mqtt, "bench"
        return
    if which != "config":
        raise AgentError(f"--broker must be one of {', '.join(BROKERS)}, not {which!r}")
    mqtt = config.mqtt
    try:
        socket.create_connection((mqtt.host, mqtt.port), timeout=5).close()
    except OSError as exc:
        raise AgentError(f"--broker config: cannot reach the config's broker "
                         f"{mqtt.host}:{mqtt.port}: {exc}") from exc
    device_id = f"{config.device_id}-bench"
    yield config.mqtt.model_copy(update={"client_id": f"edge-agent-{device_id}"}), device_id


def bench_cameras(config: AgentConfig, video: Path | None) -> list[CameraConfig]:
    """Every enabled camera of the config (files looping at full speed), or one of `video`.

    Live cameras run as configured: their own frame rate is part of what is measured.
    """
    if video is not None:
        return [FileCamera(id="bench", type="file", path=video, loop=True, realtime=False)]
    cameras: list[CameraConfig] = [
        cam.model_copy(update={"loop": True, "realtime": False})
        if isinstance(cam, FileCamera) else cam
        for cam in config.cameras if cam.enabled
    ]
    if not cameras:
        raise AgentError("the config has no enabled camera: pass --video")
    return cameras


def replicated(video: Path, count: int) -> list[CameraConfig]:
    """`count` file cameras of the same video, looping at full speed: cam1, cam2 ..."""
    return [FileCamera(id=f"cam{n}", type="file", path=video, loop=True, realtime=False)
            for n in range(1, count + 1)]


def _p95(recorders: Sequence[LatencyRecorder]) -> float | None:
    values = [r.end_to_end_ms[:min(r.count, len(r.end_to_end_ms))] for r in recorders]
    joined = np.concatenate(values) if values else np.zeros(0)
    return float(np.percentile(joined, 95)) if joined.size else None


def loop_figures(
    config: AgentConfig, engine: Engine, cameras: Sequence[CameraConfig], mqtt: MqttConfig,
    seconds: float, *, device_id: str = "bench",
) -> dict:
    """The real capture -> pipeline -> publisher path, every camera on the one engine.

    Detections go through the on-disk spool, as in the agent (a temporary one here).
    `fps` is the total over cameras; `cameras` holds each one's fps and p95 capture-to-
    publish latency (ms), measured over the same `seconds` after a WARMUP_S warm-up
    (longer, up to FIRST_RESULT_S, until every camera has published a frame).
    """
    spool_dir = tempfile.TemporaryDirectory(prefix="edge-agent-bench-")
    publisher = Publisher(mqtt, device_id, Path(spool_dir.name))
    publisher.start()
    options = detection_filter(config.model, engine.info.class_names)
    pipelines = [CameraPipeline(Camera(cam), engine, publisher, options) for cam in cameras]
    for pipeline in pipelines:
        pipeline.start()
        pipeline.camera.start()
    try:
        time.sleep(WARMUP_S)
        # and until every camera has published: on a busy box, or with batches to fill,
        # the first results can take longer than WARMUP_S (a window with none says 0 fps)
        deadline = time.monotonic() + FIRST_RESULT_S
        while any(p.published == 0 for p in pipelines) and time.monotonic() < deadline:
            time.sleep(0.05)
        firsts = [p.published for p in pipelines]
        for pipeline in pipelines:
            pipeline.times, pipeline.latency = StageTimes(), LatencyRecorder()
        started = time.perf_counter()
        time.sleep(seconds)
        counts = [p.published - first for p, first in zip(pipelines, firsts, strict=True)]
        elapsed = time.perf_counter() - started
    finally:
        for pipeline in pipelines:
            pipeline.stop()
        publisher.close(timeout=10)
        spool_dir.cleanup()
    frames = sum(counts)
    stage_totals: dict[str, float] = {}
    for pipeline in pipelines:
        for stage, total in pipeline.times.totals.items():
            stage_totals[stage] = stage_totals.get(stage, 0.0) + total
    processed = max(1, sum(p.times.frames for p in pipelines))
    return {
        "fps": frames / elapsed,
        "frames": frames,
        "p95_ms": _p95([p.latency for p in pipelines]),
        "stage_ms": {stage: total / processed for stage, total in stage_totals.items()},
        "cameras": {
            p.camera.id: {"fps": count / elapsed, "frames": count, "p95_ms": _p95([p.latency])}
            for p, count in zip(pipelines, counts, strict=True)
        },
        "published": publisher.published,
        "acknowledged": publisher.acknowledged,
        "dropped": publisher.dropped + sum(p.camera.frames.dropped for p in pipelines),
    }
