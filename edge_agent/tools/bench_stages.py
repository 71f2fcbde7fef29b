"""`edge-agent bench --stages`: the host's work per frame, stage by stage, in CPU time.

Each stage runs alone on real frames of the video and real outputs of the engine, timed
with the thread's CPU clock (what it costs the cores the engine also needs, and less
sensitive to other loads than wall time): decode, letterbox, postprocess (with the
detection filter), JSON payload, spool write; then the whole publish path (spool,
sender and MQTT threads) as process CPU per message while messages flow to the broker
at the loop's rate. On a CPU every host millisecond is taken from the engine: the
`host share` is what the loop loses against the serial bound.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_agent.publish.payload import detections_payload
from edge_agent.publish.publisher import Publisher
from edge_agent.publish.spool import Spool
from edge_agent.selection.loading import detection_filter
from edge_agent.tools.bench_loop import BenchContext
from engines.base import Detections, Engine, feed
from engines.detector import Detected, Detector
from engines.preprocess import prepare

FRAMES = 40
"""Frames of the video each stage runs on (repeated to REPEAT calls)."""
REPEAT = 200
PUBLISH_SECONDS, PUBLISH_MESSAGES = 3.0, (30, 150)
"""The publish probe sends about 3 s of messages at the loop's rate, 30 to 150."""


def _cpu_ms(action: Callable[[int], object], count: int) -> float:
    """Mean CPU milliseconds of this thread per call of action(i), i in 0..count-1."""
    action(0)
    started = time.thread_time()
    for index in range(count):
        action(index)
    return (time.thread_time() - started) * 1000 / count


def _frames(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    frames = []
    while len(frames) < FRAMES:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def _payload(context: BenchContext, detected: Detected, sequence: int) -> bytes:
    detections = detected.detections or Detections.empty()  # None: non-finite output
    return detections_payload(
        camera_id="bench", sequence=sequence, captured_at=time.time(),
        frame_width=detected.frame_width, frame_height=detected.frame_height,
        model=context.engine.info, backend=context.engine.backend,
        device=context.engine.device, inference_ms=detected.infer_ms, detections=detections)


def publish_cpu_ms(context: BenchContext, payloads: list[bytes], rate: float) -> float:
    """Process CPU ms per detection message, paced at `rate` messages/s, through a real
    Publisher (spool on disk, sender thread, paho) to the bench's broker, idle cost
    taken off."""
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as spool_dir:
        publisher = Publisher(context.mqtt, context.device_id, Path(spool_dir))
        publisher.start()
        try:
            time.sleep(0.5)
            idle_from = time.process_time()
            time.sleep(0.5)
            idle_per_s = (time.process_time() - idle_from) / 0.5
            count = min(max(int(rate * PUBLISH_SECONDS), PUBLISH_MESSAGES[0]),
                        PUBLISH_MESSAGES[1])
            started, started_wall = time.process_time(), time.monotonic()
            for index in range(count):
                publisher.publish_detections("bench", payloads[index % len(payloads)])
                time.sleep(max(0.0, started_wall + (index + 1) / rate - time.monotonic()))
            deadline = time.monotonic() + 10
            while publisher.acknowledged < count and time.monotonic() < deadline:
                time.sleep(0.005)
            spent = time.process_time() - started
            spent -= idle_per_s * (time.monotonic() - started_wall)
        finally:
            publisher.close(timeout=10)
    return max(0.0, spent) * 1000 / count


ENGINE_PACES = (None, 1.0, 0.5)
"""The engine's own CPU is measured flat out, then paced at the bound rate and at half of it."""


def engine_cpu_ms(engine: Engine, rate: float | None, seconds: float) -> tuple[float, float]:
    """(process CPU ms per inference, inferences/s) with one thread feeding the engine a
    fixed input, as fast as it takes them (`rate` None) or paced at `rate` per second.

    An engine kept busy costs the least per inference; one that waits for the next frame
    between inferences costs more (cold caches, threads waking): on a CPU the loop, which
    cannot keep it saturated, pays that difference too.
    """
    engine.infer(np.zeros(engine.input.shape, dtype=engine.input.dtype))  # warm, untimed
    started_cpu = time.process_time()
    count, wall = feed(engine, seconds, rate)
    return (time.process_time() - started_cpu) * 1000 / count, count / wall


def run(context: BenchContext) -> dict:
    frames = _frames(context.video)
    count = len(frames)
    base = context.engine
    detector = Detector(base, detection_filter(context.config.model, base.info.class_names))
    height, width = frames[0].shape[:2]
    engine = base.for_frame(width, height, wait=True)  # the one the loop runs for the video
    prepared = [prepare(frame, engine.input) for frame in frames]
    raws = [engine.infer(tensor) for tensor, _ in prepared]
    sizes = [(int(frame.shape[1]), int(frame.shape[0])) for frame in frames]

    def finish(index: int) -> Detected:
        i = index % count
        return detector.finish(raws[i], prepared[i][1], sizes[i], preprocess_ms=0.0,
                               detection_filter=detector.filter, spec=engine.input)

    detected = [finish(i) for i in range(count)]
    payloads = [_payload(context, detected[i], i) for i in range(count)]
    stages = {
        "decode": 1000 / context.decode_fps,  # wall ms of decode alone, one thread
        "letterbox": _cpu_ms(lambda i: prepare(frames[i % count], engine.input), REPEAT),
        "postprocess": _cpu_ms(finish, REPEAT),
        "json": _cpu_ms(lambda i: _payload(context, detected[i % count], i), REPEAT),
    }
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as spool_dir:
        spool = Spool(Path(spool_dir) / "spool.sqlite3", max_messages=100_000,
                      max_bytes=1 << 30, max_age_s=3600)
        stages["spool_write"] = _cpu_ms(
            lambda i: spool.append("bench/x/detections", payloads[i % count]), REPEAT)
        spool.close()
    stages["publish_path"] = publish_cpu_ms(context, payloads, context.bound_fps)
    host = sum(ms for name, ms in stages.items() if name not in {"decode", "spool_write"})
    cores = len(os.sched_getaffinity(0))
    seconds = min(context.seconds, 3.0)
    paced = [engine_cpu_ms(engine, pace and pace * context.bound_fps, seconds)
             for pace in ENGINE_PACES]
    return {
        "engine_cpu_ms": [{"fps": round(fps, 1), "cpu_ms": round(ms, 3)} for ms, fps in paced],
        "stage_cpu_ms": stages,
        "host_cpu_ms": host,
        "cores": cores,
        "host_share_at_bound": host * context.bound_fps / 1000 / cores,
        "mean_detections": float(np.mean([len(d.detections or ()) for d in detected])),
    }


def format_figures(figures: dict) -> str:
    stages = figures["stage_cpu_ms"]
    lines = ["  host work per frame, CPU ms (each stage alone, real frames and outputs)"]
    lines += [f"    {name:<13} {ms:7.3f}" for name, ms in stages.items()]
    lines.append(
        f"    host total (letterbox + postprocess + json + publish path; decode is in the "
        f"bound) {figures['host_cpu_ms']:.2f} ms = {figures['host_share_at_bound']:.1%} of "
        f"{figures['cores']} cores at the bound rate; {figures['mean_detections']:.1f} "
        "detections per frame")
    engine = figures.get("engine_cpu_ms") or []
    if engine:
        lines.append("  the engine's own CPU per inference, fed by one thread (process CPU)")
        lines += [f"    {'flat out' if index == 0 else 'paced':<9} at {run['fps']:6.1f}/s "
                  f"{run['cpu_ms']:7.2f} ms" for index, run in enumerate(engine)]
        extra = engine[1]["cpu_ms"] - engine[0]["cpu_ms"]
        lines.append(f"    paced at the bound rate: {extra:+.2f} ms per inference against flat "
                     "out (the loop, which cannot keep the engine saturated, pays it too)")
    return "\n".join(lines)
