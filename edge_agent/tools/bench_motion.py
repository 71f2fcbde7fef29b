"""`edge-agent bench --motion`: the motion gate on and off on a clip with long still stretches.

The clip is made here from the bench video with ffmpeg: moving stretches of the video with
frozen frames between them (plus faint sensor-like noise on every frame), so which frames
are still is known exactly. Each run plays the whole clip through the real capture and
pipeline (real engine, realtime: false) into an in-memory sink, and reports inferences, CPU
seconds (the whole process, engine threads included) and detections on the moving frames.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.capture.camera import Camera
from edge_agent.config.detect import DetectConfig, MaskConfig, MotionConfig
from edge_agent.config.model import AgentConfig, FileCamera
from edge_agent.errors import AgentError
from edge_agent.pipeline import CameraPipeline
from edge_agent.selection.loading import detection_filter
from edge_agent.tools.bench_loop import BenchContext
from engines.base import Engine

RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class StillClip:
    """A made clip and which of its frames (by index from 0) are frozen copies."""

    path: Path
    fps: float
    still: np.ndarray
    """(frames,) bool: True for a frozen (still) frame."""

    @property
    def frames(self) -> int:
        return len(self.still)


def still_stretch_clip(
    source: Path, out: Path, *, moving_s: float = 3.0, still_s: float = 5.0, cycles: int = 2,
    width: int = 384, fps: int = 10, noise: int = 3,
) -> StillClip:
    """`cycles` times: `moving_s` of `source` (continuing where the last stretch ended),
    then its last frame frozen for `still_s`; scaled to `width` at `fps`, noise of
    +-`noise` grey levels per frame. Raises AgentError when ffmpeg fails."""
    moving, still = round(moving_s * fps), round(still_s * fps)
    parts = [f"[0:v]fps={fps},scale={width}:-2,split={cycles}" + "".join(
        f"[s{k}]" for k in range(cycles))]
    parts += [f"[s{k}]trim=start_frame={k * moving}:end_frame={(k + 1) * moving},"
              f"setpts=PTS-STARTPTS,tpad=stop_mode=clone:stop={still}[p{k}]"
              for k in range(cycles)]
    noisy = f",noise=alls={noise}:allf=t" if noise else ""
    parts.append("".join(f"[p{k}]" for k in range(cycles))
                 + f"concat=n={cycles}:v=1:a=0{noisy},format=yuv420p[out]")
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-filter_complex",
               ";".join(parts), "-map", "[out]", "-r", str(fps), "-c:v", "libx264",
               "-crf", "18", "-g", str(fps * 2), str(out)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise AgentError(f"ffmpeg could not make the still-stretch clip: {detail}") from exc
    pattern = np.concatenate([np.zeros(moving, bool), np.ones(still, bool)])
    return StillClip(out, float(fps), np.tile(pattern, cycles))


class CollectingSink:
    """Keeps each published frame's detections (label, score, box) by sequence."""

    def __init__(self) -> None:
        self.frames: dict[int, list[tuple[str, float, tuple[float, ...]]]] = {}

    def publish_detections(self, camera_id: str, payload: bytes) -> bool:
        body = json.loads(payload)
        self.frames[body["sequence"]] = [
            (item["label"], item["score"], tuple(item["box"].values()))
            for item in body["detections"]
        ]
        return True


@dataclass(frozen=True)
class GateRun:
    """One play of the clip: what was inferred, published and what it cost."""

    inferred: int
    cpu_s: float
    wall_s: float
    skipped_motion: int
    skipped_rate: int
    frames: dict[int, list[tuple[str, float, tuple[float, ...]]]]
    handled: int
    """Frames inferred or skipped: what the systemd watchdog counts as progress."""


def play(
    config: AgentConfig, engine: Engine, clip: StillClip, detect: DetectConfig,
    masks: Sequence[MaskConfig] = (),
) -> GateRun:
    """The whole clip through capture and pipeline, as the agent runs a file camera."""
    sink = CollectingSink()
    camera = Camera(FileCamera(id="motion", type="file", path=clip.path, realtime=False,
                               detect=detect, masks=list(masks)))
    pipeline = CameraPipeline(camera, engine, sink,
                              detection_filter(config.model, engine.info.class_names))
    cpu, wall = time.process_time(), time.perf_counter()
    pipeline.start()
    camera.start()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not pipeline.finished and not pipeline.broken and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        pipeline.stop()
    if not pipeline.finished:
        raise AgentError(f"the clip did not play to its end: {camera.last_error}")
    gate = pipeline.gate.stats()
    return GateRun(pipeline.times.frames, time.process_time() - cpu,
                   time.perf_counter() - wall, gate.skipped_motion, gate.skipped_rate,
                   sink.frames, pipeline.frames_handled)


def compare(off: GateRun, on: GateRun, clip: StillClip) -> dict:
    """Figures of the two runs; `moving_*` counts only frames that are not frozen copies."""
    moving = [i for i in range(clip.frames) if not clip.still[i]]
    lost_frames = [i for i in moving if i in off.frames and i not in on.frames]
    kept = sum(len(on.frames.get(i, ())) for i in moving)
    reference = sum(len(off.frames.get(i, ())) for i in moving)
    changed = [i for i in moving if i in on.frames and on.frames[i] != off.frames.get(i)]
    return {
        "clip": str(clip.path), "frames": clip.frames, "still_frames": int(clip.still.sum()),
        "inferences_off": off.inferred, "inferences_on": on.inferred,
        "inferences_saved": off.inferred - on.inferred,
        "saved_share": (off.inferred - on.inferred) / max(off.inferred, 1),
        "cpu_s_off": off.cpu_s, "cpu_s_on": on.cpu_s,
        "wall_s_off": off.wall_s, "wall_s_on": on.wall_s,
        "skipped_motion": on.skipped_motion,
        "moving_frames": len(moving), "moving_frames_lost": len(lost_frames),
        "moving_frames_changed": len(changed),
        "moving_detections_off": reference, "moving_detections_on": kept,
        "detections_off": sum(len(v) for v in off.frames.values()),
        "detections_on": sum(len(v) for v in on.frames.values()),
    }


def measure_motion(
    config: AgentConfig, engine: Engine, video: Path, motion: MotionConfig | None = None,
    *, moving_s: float = 3.0, still_s: float = 5.0, cycles: int = 2,
) -> dict:
    """Make the still-stretch clip from `video` (see still_stretch_clip), play it with the
    gate off, then on; the figures of `compare` and the motion settings used."""
    motion = motion or MotionConfig(enabled=True)
    with tempfile.TemporaryDirectory(prefix="edge-agent-motion-") as scratch:
        clip = still_stretch_clip(video, Path(scratch) / "still-stretch.mp4",
                                  moving_s=moving_s, still_s=still_s, cycles=cycles)
        off = play(config, engine, clip, DetectConfig())
        on = play(config, engine, clip, DetectConfig(motion=motion))
        return {**compare(off, on, clip), "motion": motion.model_dump()}


def run(context: BenchContext) -> dict:
    """`bench --motion`: the bench's engine, gate off vs on, on a 60 s clip (3 times 5 s
    moving, 15 s still); the config's first camera's detect.motion when it is enabled,
    else the defaults."""
    config = context.config
    motion = next((cam.detect.motion for cam in config.cameras if cam.detect.motion.enabled),
                  None)
    return measure_motion(config, context.engine, context.video, motion,
                          moving_s=5, still_s=15, cycles=3)


def format_figures(report: dict) -> str:
    return "\n".join([
        f"motion gate on a still-stretch clip ({report['frames']} frames, "
        f"{report['still_frames']} frozen)",
        f"  inferences   off {report['inferences_off']:5d}   on {report['inferences_on']:5d}"
        f"   saved {report['inferences_saved']} ({report['saved_share']:.0%})",
        f"  CPU seconds  off {report['cpu_s_off']:5.1f}   on {report['cpu_s_on']:5.1f}",
        f"  moving frames {report['moving_frames']}: lost {report['moving_frames_lost']}, "
        f"detections off {report['moving_detections_off']} on "
        f"{report['moving_detections_on']} (frames that differ: "
        f"{report['moving_frames_changed']})",
    ])
