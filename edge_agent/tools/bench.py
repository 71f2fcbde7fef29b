"""`edge-agent bench`: engine alone, decode alone, their serial bound and the whole loop.

All four run in one process on the same model, video and CPU, so the ratio
loop/bound says how much the agent's own work costs. `--backend NAME` measures that
backend instead of the config's; `--backend all` measures every backend whose runtime
is present here, one after the other, and prints their figures side by side. The loop
publishes every frame to a real Mosquitto (a private one started here unless the config
names a reachable broker with --use-config-broker).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2

from edge_agent.capture.camera import Camera
from edge_agent.config.loader import load_config
from edge_agent.config.model import BACKEND_SECTIONS, AgentConfig, FileCamera, MqttConfig
from edge_agent.errors import AgentError
from edge_agent.pipeline import STAGES, CameraPipeline, StageTimes
from edge_agent.publish.publisher import Publisher
from edge_agent.selection.loading import detection_filter, select_engine
from edge_agent.selection.probe import HardwareReport, detect_runtimes, probe
from engines.base import Engine
from engines.detector import Detector

WARMUP_S = 1.0


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
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield MqttConfig(host="127.0.0.1", port=port, topic_prefix="bench", max_queued=100_000)
        finally:
            process.terminate()
            process.wait(10)


def loop_figures(
    config: AgentConfig, engine: Engine, video: Path, mqtt: MqttConfig, seconds: float
) -> dict:
    """The real capture -> pipeline -> publisher path on a looping file at full speed.

    Detections go through the on-disk spool, as in the agent (a temporary one here).
    """
    spool_dir = tempfile.TemporaryDirectory(prefix="edge-agent-bench-")
    publisher = Publisher(mqtt, config.device_id, Path(spool_dir.name))
    publisher.start()
    camera = Camera(FileCamera(id="bench", type="file", path=video, loop=True, realtime=False))
    options = detection_filter(config.model, engine.info.class_names)
    pipeline = CameraPipeline(camera, engine, publisher, options)
    pipeline.start()
    camera.start()
    try:
        time.sleep(WARMUP_S)
        first, started = pipeline.published, time.perf_counter()
        pipeline.times = StageTimes()
        time.sleep(seconds)
        frames = pipeline.published - first
        elapsed = time.perf_counter() - started
        stages = pipeline.times.mean_ms()
    finally:
        pipeline.stop()
        publisher.close(timeout=10)
        spool_dir.cleanup()
    return {
        "fps": frames / elapsed,
        "frames": frames,
        "stage_ms": stages,
        "published": publisher.published,
        "acknowledged": publisher.acknowledged,
        "dropped": publisher.dropped + camera.frames.dropped,
    }


def configs_to_bench(config: AgentConfig, backend: str | None) -> list[AgentConfig]:
    """The config as is, with one backend forced, or once per backend present here."""
    if backend is None:
        return [config]
    runtimes = detect_runtimes() if backend == "all" else None
    names = [backend] if runtimes is None else [
        name for name in BACKEND_SECTIONS if runtimes.status(name).usable
    ]
    return [config.model_copy(update={"backend": BACKEND_SECTIONS[name].model_validate(
        {"type": name})}) for name in names]


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    video = args.video or next(
        (cam.path for cam in config.cameras if isinstance(cam, FileCamera)), None
    )
    if video is None:
        raise AgentError("no video: pass --video or put a file camera in the config")
    hardware = probe()
    if getattr(args, "int8", False):  # FP against its INT8 build: tools/bench_int8.py
        from edge_agent.tools.bench_int8 import main as int8_main

        return int8_main(config, hardware, video, args)
    video_fps = decode_fps(video, args.seconds)
    reports = [measure(each, hardware, video, video_fps, args.seconds)
               for each in configs_to_bench(config, getattr(args, "backend", None))]
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else {"runs": reports}, indent=2))
    else:
        print("\n\n".join(format_report(report) for report in reports))
        if len(reports) > 1:
            print("\n" + format_comparison(reports))
    return 0


def measure(
    config: AgentConfig, hardware: HardwareReport, video: Path, video_fps: float, seconds: float
) -> dict:
    """One backend's figures: engine alone, the serial bound and the whole loop."""
    selection = select_engine(config, hardware)
    engine, reason = selection.engine, selection.reason
    if selection.fallbacks:
        reason += f" (after: {'; '.join(selection.fallbacks)})"
    try:
        engine_fps = Detector(engine).raw_throughput(seconds)
        bound = 1.0 / (1.0 / engine_fps + 1.0 / video_fps)
        with private_broker() as mqtt:
            loop = loop_figures(config, engine, video, mqtt, seconds)
    finally:
        engine.close()
    return {
        "model": engine.info.name,
        "backend": engine.backend,
        "device": engine.device,
        "backend_reason": reason,
        "video": str(video),
        "engine_fps": engine_fps,
        "decode_fps": video_fps,
        "bound_fps": bound,
        "loop_fps": loop["fps"],
        "loop_over_bound": loop["fps"] / bound,
        "loop_over_engine": loop["fps"] / engine_fps,
        "stage_ms": loop["stage_ms"],
        "loop_frames": loop["frames"],
        "published": loop["published"],
        "acknowledged": loop["acknowledged"],
        "dropped": loop["dropped"],
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def format_comparison(reports: list[dict]) -> str:
    """Backends side by side, same model, video and CPU."""
    lines = ["backend/device              engine fps  loop fps  infer ms  loop/bound"]
    lines += [
        f"{report['backend'] + '/' + report['device']:<26} {report['engine_fps']:11.1f}"
        f" {report['loop_fps']:9.1f} {report['stage_ms']['infer']:9.2f}"
        f" {report['loop_over_bound']:11.2f}"
        for report in reports
    ]
    return "\n".join(lines)


def format_report(report: dict) -> str:
    lines = [
        f"model {report['model']} on {report['backend']}/{report['device']}",
        f"  video {report['video']}",
        f"  engine alone (throughput, no decode) {report['engine_fps']:8.1f} frames/s",
        f"  video decode alone                   {report['decode_fps']:8.1f} frames/s",
        f"  serial bound 1/(1/engine+1/decode)   {report['bound_fps']:8.1f} frames/s",
        f"  whole loop, every frame to MQTT      {report['loop_fps']:8.1f} frames/s",
        f"  loop / bound {report['loop_over_bound']:.2f}"
        f"   loop / engine {report['loop_over_engine']:.2f}",
        "  per-frame stage ms: "
        + "  ".join(f"{stage} {report['stage_ms'][stage]:.2f}" for stage in STAGES),
        f"  published {report['published']}  acknowledged {report['acknowledged']}"
        f"  dropped {report['dropped']}  max RSS {report['max_rss_mib']:.0f} MiB",
    ]
    return "\n".join(lines)
