"""`edge-agent bench --input-shapes`: square vs rectangular input on a 16:9 video, and
the start-up time to the first detection with a cold and a warm compiled-model cache.

Same model, same video, one process for the engine and loop figures: the square run
letterboxes every 1280x720 frame into the model's own square input, the rectangular run
into the camera's aspect at the model's stride (engines/input_shapes.py). Start-up is
the real agent (`edge-agent run`) from process start to its first detections message
on a private broker: cold with an empty OpenVINO cache, warm on the cache the cold run
left. The figures and the command that gave them are in docs/benchmark.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_agent.config.model import AgentConfig, MqttConfig
from edge_agent.errors import AgentError
from edge_agent.selection.loading import select_engine
from edge_agent.selection.probe import probe
from edge_agent.tools.bench_loop import (
    BenchContext,
    decode_fps,
    loop_figures,
    replicated,
    video_size,
)
from engines.input_shapes import ShapedEngines

WIDE = (1280, 720)
STARTUP_TIMEOUT_S = 120.0


def cache_folder() -> Path:
    """Where the 16:9 clip is kept between runs: $XDG_CACHE_HOME/edge-agent/bench."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-agent" / "bench"


def wide_video(source: Path, folder: Path, seconds: float = 30.0) -> Path:
    """`source` as a 1280x720 clip (scaled to fill, centre cropped), made once with ffmpeg.

    A source that is already 1280x720 is used as it is. AgentError when ffmpeg is
    missing or fails (its last line of output says why).
    """
    if video_size(source) == WIDE:
        return source
    stat = source.stat()
    target = folder / f"{source.stem}-{stat.st_size}-{int(stat.st_mtime)}-1280x720.mp4"
    if target.is_file():
        return target
    if shutil.which("ffmpeg") is None:
        raise AgentError("ffmpeg is not installed; it makes the 16:9 clip (apt install ffmpeg)")
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part.mp4")
    fill = ("scale=1280:720:force_original_aspect_ratio=increase,crop=1280:720,"
            "setsar=1")
    done = subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-i", str(source), "-t", str(seconds),
         "-vf", fill, "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
         str(partial)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AgentError(f"ffmpeg could not make the 16:9 clip from {source}: {last}")
    partial.replace(target)
    return target


def shape_figures(config: AgentConfig, video: Path, mqtt_config: MqttConfig,
                  seconds: float, rounds: int = 3) -> dict:
    """Engine fps and loop fps, square and rectangular, on one loaded engine, and the
    CPU milliseconds each frame cost this process (engine alone; whole loop with decode,
    pre/postprocessing and publishing): on a CPU shared with other work the CPU time
    per frame still compares the two where frames/s only say how busy the box was.

    The two alternate (square, rect, square, rect ...) for `rounds` rounds of `seconds`
    each and the best round of each counts, so a load that comes and goes on the box
    does not favour whichever ran first.
    """
    selection = select_engine(config, probe())
    engine = selection.engine
    figures: dict[str, dict] = {}
    try:
        for _ in range(rounds):
            for mode, name in (("square", "square"), ("auto", "rect")):
                engine.input_shapes = shapes = ShapedEngines(engine, mode)
                try:
                    shaped = shapes.engine_for(*WIDE, wait=True)
                    cpu = time.process_time()
                    engine_fps = shaped.raw_throughput(seconds)
                    engine_cpu = (time.process_time() - cpu) * 1000 / (engine_fps * seconds)
                    cpu = time.process_time()
                    loop = loop_figures(config, engine, replicated(video, 1), mqtt_config, seconds)
                    loop_cpu = (time.process_time() - cpu) * 1000 / max(1, loop["published"])
                finally:
                    shapes.close()
                best = figures.setdefault(name, {
                    "input": [shaped.input.height, shaped.input.width], "engine_fps": 0.0,
                    "loop_fps": 0.0, "infer_ms": None, "engine_cpu_ms": float("inf"),
                    "loop_cpu_ms": float("inf"), "notice": shapes.notice})
                best["engine_fps"] = max(best["engine_fps"], engine_fps)
                best["engine_cpu_ms"] = min(best["engine_cpu_ms"], engine_cpu)
                best["loop_cpu_ms"] = min(best["loop_cpu_ms"], loop_cpu)
                if loop["fps"] > best["loop_fps"]:
                    best["loop_fps"], best["infer_ms"] = loop["fps"], loop["stage_ms"].get("infer")
    finally:
        engine.input_shapes = None
        engine.close()
    return {"model": engine.info.name, "backend": engine.backend, "device": engine.device,
            "rounds": rounds, **figures}


def _agent_config(config: AgentConfig, video: Path, mqtt_config: MqttConfig,
                  state_dir: Path) -> str:
    """A one-camera config for the start-up run: JSON, which YAML reads as it is."""
    model = config.model.model_dump(mode="json", exclude_none=True)
    model["input_size"] = "auto"
    backend = config.backend.model_dump(mode="json", exclude_none=True)
    backend.pop("cache_dir", None)  # the cache under state_dir: cold means empty
    return json.dumps({
        "device_id": "bench", "state_dir": str(state_dir), "model": model,
        "backend": backend,
        "mqtt": {"host": mqtt_config.host, "port": mqtt_config.port, "topic_prefix": "bench"},
        "cameras": [{"id": "wide", "type": "file", "path": str(video), "realtime": False}],
    })


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a running process has used: /proc, Linux only."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_detection_s(config_file: Path, mqtt_config: MqttConfig) -> tuple[float, float | None]:
    """Seconds from starting `edge-agent run` to its first detections message, and the
    CPU seconds the agent used by then (on a busy box wall time waits for the CPU; the
    CPU time does not, and start-up is mostly one thread: about the idle wall time)."""
    arrived = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-startup")
    client.on_message = lambda *_: arrived.set()
    client.connect(mqtt_config.host, mqtt_config.port)
    client.subscribe("bench/bench/wide/detections", qos=1)
    client.loop_start()
    try:
        with tempfile.TemporaryFile("w+") as log:
            time.sleep(0.2)  # the subscription is in place before the agent starts
            started = time.perf_counter()
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config_file)],
                stdout=log, stderr=subprocess.STDOUT)
            try:
                while not arrived.wait(0.01):
                    if (agent.poll() is not None
                            or time.perf_counter() - started > STARTUP_TIMEOUT_S):
                        log.seek(0)
                        raise AgentError(f"the agent sent no detections: {log.read()[-2000:]}")
                return time.perf_counter() - started, process_cpu_s(agent.pid)
            finally:
                agent.terminate()
                agent.wait(30)
    finally:
        client.loop_stop()
        client.disconnect()


def startup_figures(config: AgentConfig, video: Path, mqtt_config: MqttConfig) -> dict:
    """Process start to first detection: cold (empty compiled-model cache), then warm
    twice (the better one counts; both are in `warm_runs_s`)."""
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-start-") as folder:
        config_file = Path(folder) / "agent.yaml"
        config_file.write_text(_agent_config(config, video, mqtt_config, Path(folder) / "state"))
        cold, cold_cpu = first_detection_s(config_file, mqtt_config)
        warm = [first_detection_s(config_file, mqtt_config) for _ in range(2)]
    return {"cold_s": cold, "cold_cpu_s": cold_cpu, "warm_s": min(w for w, _ in warm),
            "warm_cpu_s": min((c for _, c in warm if c is not None), default=None),
            "warm_runs_s": [w for w, _ in warm]}


def run_input_bench(config: AgentConfig, source: Path, seconds: float,
                    mqtt_config: MqttConfig) -> dict:
    """Every figure of this bench, as one dict (printed by `format_input_report`)."""
    video = wide_video(source, cache_folder())
    video_fps = decode_fps(video, seconds)
    shapes = shape_figures(config, video, mqtt_config, seconds)
    startup = startup_figures(config, video, mqtt_config)
    for name in ("square", "rect"):  # what a perfect loop could reach: see bench.py
        shapes[name]["bound_fps"] = 1.0 / (1.0 / shapes[name]["engine_fps"] + 1.0 / video_fps)
    return {"video": str(video), "decode_fps": video_fps, **shapes, "startup": startup,
            "rect_over_square_engine": shapes["rect"]["engine_fps"]
            / shapes["square"]["engine_fps"],
            "rect_over_square_loop": shapes["rect"]["loop_fps"] / shapes["square"]["loop_fps"],
            "rect_over_square_engine_cpu": shapes["square"]["engine_cpu_ms"]
            / shapes["rect"]["engine_cpu_ms"],
            "rect_over_square_loop_cpu": shapes["square"]["loop_cpu_ms"]
            / shapes["rect"]["loop_cpu_ms"]}


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def format_input_report(report: dict) -> str:
    def row(name: str) -> str:
        run = report[name]
        size = f"{run['input'][1]}x{run['input'][0]}"
        return (f"  {name:<7} input {size:<9} engine {run['engine_fps']:7.1f} fps"
                f" {run['engine_cpu_ms']:6.1f} CPU ms/frame   loop {run['loop_fps']:7.1f} fps"
                f" {run['loop_cpu_ms']:6.1f} CPU ms/frame   bound {run.get('bound_fps', 0):6.1f}")

    lines = [f"model {report['model']} on {report['backend']}/{report['device']}",
             f"  video {report['video']} (1280x720), best of {report.get('rounds', 1)}"
             f" alternating rounds; decode alone {report.get('decode_fps', 0):.1f} fps",
             row("square"), row("rect"),
             f"  rect / square: engine {report['rect_over_square_engine']:.2f}x"
             f"   loop {report['rect_over_square_loop']:.2f}x   (by CPU time per frame:"
             f" engine {report['rect_over_square_engine_cpu']:.2f}x"
             f"   loop {report['rect_over_square_loop_cpu']:.2f}x)",
             f"  start to first detection: cold cache {report['startup']['cold_s']:.2f} s"
             f"   warm cache {report['startup']['warm_s']:.2f} s"
             f"   (agent CPU by then: cold {_seconds(report['startup'].get('cold_cpu_s'))}"
             f"   warm {_seconds(report['startup'].get('warm_cpu_s'))})"]
    if report["rect"]["notice"]:
        lines.append(f"  rectangular input is off: {report['rect']['notice']}")
    return "\n".join(lines)


def run(context: BenchContext) -> dict:
    """`bench --input-shapes`: the config's model square and rectangular on a 16:9 clip of
    the bench's video, and start-up to the first detection, against the bench's broker."""
    return run_input_bench(context.config, context.video, context.seconds, context.mqtt)
