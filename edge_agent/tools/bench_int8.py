"""`edge-agent bench --int8`: the FP model and its INT8 build side by side, same video.

Builds the INT8 model from the bench video itself (the first int8_calibration_frames
frames calibrate, the last int8_check_frames of those read are held back for the
guard) into <state_dir>/int8-bench/ (reused by later benches of the same model, video
and settings; the agent's own cache, state_dir/int8/, is never touched), then measures
both: the bare engine (frames/s; every engine alternating, best of each), the whole loop
to a private broker (frames/s), and the guard's F1 of INT8 against FP. A build the
guard refuses is still measured, and the report says it would not be used.

On OpenVINO the engines are also measured on a 16:9 frame (1280x720) square and
rectangular (engines/input_shapes.py), and the FP model at f32 besides the config's
precision (`auto` is bf16 on CPUs with AMX/AVX512-BF16: INT8's gain is smaller there),
so one run gives rectangular + INT8 against square FP, the issue's figure.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.config.model import BACKEND_SECTIONS, AgentConfig, FileCamera, MqttConfig
from edge_agent.errors import AgentError
from edge_agent.selection import int8
from edge_agent.selection.loading import select_engine
from edge_agent.selection.probe import HardwareReport
from edge_agent.tools.bench_input import WIDE
from edge_agent.tools.bench_loop import BenchContext, loop_figures, replicated
from engines.base import Engine
from engines.detector import Detector
from engines.input_shapes import ShapedEngines
from engines.int8_cache import MODEL, BuildRecord, read_record


def fp_config(config: AgentConfig) -> AgentConfig:
    """The config on OpenVINO at its FP precision (int8 -> auto; f32 stays f32: the
    comparison for CPUs without bf16), its own int8_* settings kept."""
    base = config.backend.model_dump() if getattr(config.backend, "type", "") == "openvino" \
        else {"type": "openvino"}
    precision = base.get("precision", "auto")
    backend = BACKEND_SECTIONS["openvino"].model_validate(
        {**base, "precision": "auto" if precision == "int8" else precision})
    return config.model_copy(update={"backend": backend})


ROUNDS = 4
"""FP and INT8 engine measurements alternate this many times; the best of each counts,
so a load that comes and goes on a shared box hits both alike."""


def _engine_fps(engines: dict[str, Engine], seconds: float) -> dict[str, float]:
    """Each engine's best frames/s over ROUNDS alternating rounds of seconds / ROUNDS."""
    best = dict.fromkeys(engines, 0.0)
    for _ in range(ROUNDS):
        for name, engine in engines.items():
            best[name] = max(best[name], Detector(engine).raw_throughput(seconds / ROUNDS))
    return best


SHAPED = (("fp", "square"), ("fp", "rect"), ("fp32", "square"), ("int8", "square"),
          ("int8", "rect"))
"""The engine figures on a 16:9 frame: (model, input) pairs, `fp` at the config's
precision, `fp32` at f32."""


def shape_engine_fps(engines: dict[str, Engine], seconds: float) -> dict[str, dict]:
    """Engine frames/s of each (model, input) in SHAPED on a WIDE frame, with the input
    each ran at: `{"int8_rect": {"fps": .., "input": [h, w]}, ...}`. A model that cannot
    take a rectangular input runs square there (the input says so)."""
    shaped: dict[str, Engine] = {}
    makers = {name: {mode: ShapedEngines(engine, mode) for mode in ("square", "auto")}
              for name, engine in engines.items()}
    try:
        for name, shape in SHAPED:
            mode = "auto" if shape == "rect" else "square"
            shaped[f"{name}_{shape}"] = makers[name][mode].engine_for(*WIDE, wait=True)
        fps = _engine_fps(shaped, seconds)
    finally:
        for maker in makers.values():
            for each in maker.values():
                each.close()
    return {key: {"fps": fps[key], "input": [engine.input.height, engine.input.width]}
            for key, engine in shaped.items()}


def _loop(config: AgentConfig, engine: Engine, video: Path, seconds: float,
          mqtt: MqttConfig) -> dict:
    loop = loop_figures(config, engine, replicated(video, 1), mqtt, seconds)
    return {"loop_fps": loop["fps"], "stage_ms": loop["stage_ms"]}


def bench_build(config: AgentConfig, fp: Engine, video: Path) -> tuple[BuildRecord, Path, bool]:
    """The bench's own INT8 build of this model from this video, made once and kept in
    <state_dir>/int8-bench/ (the agent never looks there: it was not calibrated on the
    cameras). (record, folder, reused)."""
    settings = config.backend
    stat = video.stat()
    key = int8.calibration_of(settings).key(
        f"{fp.info.sha256}:{video.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    folder = config.state_dir / "int8-bench" / key
    record = read_record(folder)
    if record is not None and (folder / MODEL).is_file():
        return record, folder, True
    wanted = settings.int8_calibration_frames + settings.int8_check_frames  # type: ignore[union-attr]
    frames = int8.camera_frames([FileCamera(id="bench", type="file", path=video)], wanted)
    return int8.build_now(config, fp, frames, f"video {video}", folder), folder, False


def measure_int8(config: AgentConfig, hardware: HardwareReport, video: Path,
                 seconds: float, mqtt: MqttConfig) -> dict:
    """FP and INT8 figures and the guard's verdict; see the module docstring."""
    config = fp_config(config)
    settings = config.backend
    fp = select_engine(config, hardware).engine
    f32 = config.model_copy(update={"backend": settings.model_copy(update={"precision": "f32"})})
    try:
        record, folder, reused = bench_build(config, fp, video)
        passed, reason = record.judged(settings.int8_min_f1)  # type: ignore[union-attr]
        if not (folder / MODEL).is_file():
            raise AgentError(f"no INT8 model to measure: {reason}")
        quantized = int8.open_int8(config, folder / MODEL).engine
        try:
            fp32 = select_engine(f32, hardware).engine
            try:  # one alternating measurement of every engine; the square ones are the
                # FP / INT8 engine figures too (a second one gave other figures on a busy box)
                shapes = shape_engine_fps({"fp": fp, "fp32": fp32, "int8": quantized}, seconds)
            finally:
                fp32.close()
            fp_figures = {"engine_fps": shapes["fp_square"]["fps"],
                          **_loop(config, fp, video, seconds, mqtt)}
            int8_figures = {"engine_fps": shapes["int8_square"]["fps"],
                            **_loop(config, quantized, video, seconds, mqtt)}
        finally:
            quantized.close()
    finally:
        fp.close()
    return {
        "model": fp.info.name, "device": fp.device, "video": str(video),
        "calibration_frames": record.calibration.frames, "check_frames": record.score.frames,
        "preset": record.calibration.preset, "build_s": record.build_s, "build": str(folder),
        "reused": reused, "fp": fp_figures, "int8": int8_figures,
        "engine_speedup": int8_figures["engine_fps"] / fp_figures["engine_fps"],
        "loop_speedup": int8_figures["loop_fps"] / fp_figures["loop_fps"],
        "wide": {"frame": list(WIDE), "precision": settings.precision,  # type: ignore[union-attr]
                 **shapes,
                 "rect_int8_over_square_fp":
                     shapes["int8_rect"]["fps"] / shapes["fp_square"]["fps"],
                 "rect_int8_over_square_fp32":
                     shapes["int8_rect"]["fps"] / shapes["fp32_square"]["fps"],
                 "int8_over_fp32": shapes["int8_square"]["fps"] / shapes["fp32_square"]["fps"]},
        "guard": {**record.score.as_dict(), "passed": passed, "reason": reason,
                  "min_f1": settings.int8_min_f1},  # type: ignore[union-attr]
    }


def format_figures(report: dict) -> str:
    guard = report["guard"]
    verdict = "passed: the agent would run it" if guard["passed"] else \
        "REFUSED: the agent would stay on FP"
    lines = [
        f"model {report['model']} on openvino/{report['device']}, video {report['video']}",
        f"  INT8 build: NNCF {report['preset']} on {report['calibration_frames']} frames, "
        f"{report['build_s']:.0f} s" + (" (reused from an earlier bench)" if report.get("reused")
                                        else ""),
        "                 engine fps  loop fps  infer ms",
    ]
    for name in ("fp", "int8"):
        figures = report[name]
        lines.append(f"  {name.upper():<14} {figures['engine_fps']:11.1f} "
                     f"{figures['loop_fps']:9.1f} {figures['stage_ms']['infer']:9.2f}")
    lines += [
        f"  INT8 / FP      {report['engine_speedup']:11.2f} {report['loop_speedup']:9.2f}",
        f"  guard: F1 {guard['f1']:.3f} (precision {guard['precision']:.3f}, recall "
        f"{guard['recall']:.3f}) on {report['check_frames']} held-back frames, "
        f"min {guard['min_f1']:g}: {verdict}",
    ]
    wide = report.get("wide")
    if wide:
        lines.append(f"  engine fps on a {wide['frame'][0]}x{wide['frame'][1]} frame "
                     f"(FP at precision {wide['precision']}; FP32 at f32):")
        for name, shape in SHAPED:
            figure = wide[f"{name}_{shape}"]
            lines.append(f"    {name.upper():<5} {shape:<7} {figure['input'][1]:>4}x"
                         f"{figure['input'][0]:<4} {figure['fps']:8.1f}")
        lines.append(f"    rect INT8 / square FP {wide['rect_int8_over_square_fp']:.2f}x   "
                     f"rect INT8 / square FP32 {wide['rect_int8_over_square_fp32']:.2f}x   "
                     f"square INT8 / FP32 {wide['int8_over_fp32']:.2f}x")
    return "\n".join(lines)


def run(context: BenchContext) -> dict:
    """`bench --int8`: the config's model in FP against its INT8 build from the video."""
    return measure_int8(context.config, context.hardware, context.video, context.seconds,
                        context.mqtt)
