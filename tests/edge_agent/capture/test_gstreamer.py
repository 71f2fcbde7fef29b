"""GStreamer capture: the launch strings, the decoder choice, and real runs of them.

The real runs use Debian's /usr/bin/python3 with its python3-opencv, which is built with
GStreamer (the pip wheel in .venv is not); they are skipped, with the reason, where that
OpenCV is missing. GStreamer's own parser checks every string, the Jetson ones included
(only the NVIDIA elements may be missing there), and the software RTSP pipeline decodes
a real RTSP camera (tests/rtsp.py).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import cv2
import pytest
import yaml

from edge_agent.capture import gstreamer
from edge_agent.capture.camera import open_capture
from edge_agent.capture.gstreamer import (
    APPSINK,
    TO_BGR,
    GStreamerUnavailableError,
    build_has_gstreamer,
    csi_pipeline,
    has_elements,
    plan_rtsp,
    quote,
    redact_url,
    rtsp_pipeline,
)
from edge_agent.config.loader import load_config
from edge_agent.config.model import CsiCamera, RtspCamera
from edge_agent.errors import ConfigError, SourceError
from tests.rtsp import RtspServer

SYSTEM_PYTHON = Path("/usr/bin/python3")
NVIDIA_ELEMENTS = {"nvarguscamerasrc", "nvvidconv", "nvv4l2decoder"}
STAND_INS = (
    (re.compile(r"\bnvarguscamerasrc\b[^!]*"), "videotestsrc "),
    (re.compile(r"\bnvv4l2decoder\b[^!]*"), "decodebin "),
    (re.compile(r"\bnvvidconv\b[^!]*"), "videoconvert "),
    (re.compile(r"\(memory:NVMM\)"), ""),
)
"""Software elements in place of the NVIDIA ones, so the rest of a string can be linked."""
_NO_SUCH_ELEMENT = 1
"""GST_PARSE_ERROR_NO_SUCH_ELEMENT."""
NASTY_URL = 'rtsp://ad min:p@ss "w\'o;r!d\\x@10.0.0.5:554/live stream;1?a=1&b=2'
"""Spaces, both quotes, '@', ';', '!' and a backslash: each must reach rtspsrc unchanged."""

# ---------------------------------------------------------------- the strings


def test_csi_pipeline_defaults() -> None:
    assert csi_pipeline(0, 1920, 1080, 30) == (
        "nvarguscamerasrc sensor-id=0 ! "
        "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 ! "
        "nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


@pytest.mark.parametrize("flip_method", range(8))
def test_csi_pipeline_options(flip_method: int) -> None:
    pipeline = csi_pipeline(1, 1280, 720, 60, flip_method)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=1280,height=720,framerate=60/1,format=NV12" in pipeline
    assert f" ! nvvidconv flip-method={flip_method} ! " in pipeline
    assert pipeline.endswith(f"{TO_BGR} ! {APPSINK}")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 1920, 1080, 30, 8), r"flip_method must be 0-7 \(got 8\)"),
        ((-1, 1920, 1080, 30, 0), r"sensor_id must be a whole number from 0 to 255 \(got -1\)"),
        ((0, 0, 1080, 30, 0), r"width must be .* \(got 0\)"),
        ((0, 1920, 1080, 0, 0), r"fps must be .* \(got 0\)"),
        ((0, 1920, 1080.5, 30, 0), r"height must be a whole number .* \(got 1080.5\)"),
    ],
)
def test_csi_pipeline_rejects_bad_values(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        csi_pipeline(*arguments)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_rtsp_hardware_pipeline(codec: str) -> None:
    assert rtsp_pipeline("rtsp://10.0.0.5/s", codec, "tcp", 200, hardware=True) == (
        f'rtspsrc location="rtsp://10.0.0.5/s" protocols=tcp latency=200 ! '
        f"rtp{codec}depay ! {codec}parse ! nvv4l2decoder ! nvvidconv ! "
        "video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_rtsp_software_pipeline(codec: str) -> None:
    assert rtsp_pipeline("rtsp://10.0.0.5/s", codec, "udp", 0, hardware=False) == (
        f'rtspsrc location="rtsp://10.0.0.5/s" protocols=udp latency=0 ! '
        f"rtp{codec}depay ! {codec}parse ! avdec_{codec} ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def test_rtsp_tcp_timeout_is_in_microseconds_and_tcp_only() -> None:
    tcp = rtsp_pipeline("rtsp://h/s", "h264", "tcp", 200, timeout_s=2.5)
    assert "protocols=tcp latency=200 tcp-timeout=2500000 ! " in tcp
    assert "tcp-timeout" not in rtsp_pipeline("rtsp://h/s", "h264", "udp", 200, timeout_s=2.5)
    assert "tcp-timeout" not in rtsp_pipeline("rtsp://h/s", "h264", "tcp", 200)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("rtsp://h/s", "mjpeg", "tcp", 200), r"codec must be one of h264, h265 \(got 'mjpeg'\)"),
        (("rtsp://h/s", "h264", "http", 200), r"transport must be one of tcp, udp \(got 'http'\)"),
        (("rtsp://h/s", "h264", "tcp", -1), r"latency_ms must be .* \(got -1\)"),
        (("http://u:secret@h/s", "h264", "tcp", 200), r"rtsp:// or rtsps:// \(got 'http://\*\*\*@h/s'"),
        (("rtsp://h/s\n! filesrc", "h264", "tcp", 200), "control characters are not allowed"),
    ],
)
def test_rtsp_pipeline_rejects_bad_values(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rtsp_pipeline(*arguments)


def test_url_is_quoted_for_gst_launch() -> None:
    pipeline = rtsp_pipeline(NASTY_URL, "h264", "tcp", 200)
    expected = '"rtsp://ad min:p@ss \\"w\'o;r!d\\\\x@10.0.0.5:554/live stream;1?a=1&b=2"'
    assert pipeline.startswith(f"rtspsrc location={expected} protocols=tcp ")
    assert quote('a"b\\c') == '"a\\"b\\\\c"'


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/s", "rtsp://***@10.0.0.5:554/s"),
        ("rtsp://admin:p@ss@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),  # raw '@' in the password
        (NASTY_URL, "rtsp://***@10.0.0.5:554/live stream;1?a=1&b=2"),
        ("rtsp://10.0.0.5/s", "rtsp://10.0.0.5/s"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_logged_pipeline_has_no_password() -> None:
    logged = rtsp_pipeline(redact_url(NASTY_URL), "h265", "tcp", 200, hardware=True)
    assert "p@ss" not in logged
    assert "w'o;r!d" not in logged
    assert 'location="rtsp://***@10.0.0.5:554/live stream;1?a=1&b=2"' in logged


# ---------------------------------------------------------------- the decision


@pytest.mark.parametrize(
    ("decoder", "opencv_gstreamer", "hardware_decoder", "backend", "hardware", "reason"),
    [
        ("auto", True, True, "gstreamer", True, "nvv4l2decoder is installed"),
        ("auto", True, False, "ffmpeg", False, "no Jetson hardware decoder"),
        ("auto", False, False, "ffmpeg", False, "this OpenCV has no GStreamer"),
        ("ffmpeg", True, True, "ffmpeg", False, "decoder: ffmpeg is set"),
        ("gstreamer", True, True, "gstreamer", True, "nvv4l2decoder is installed"),
        ("gstreamer", True, False, "gstreamer", False, "software avdec"),
    ],
)
def test_plan_rtsp(
    decoder: str,
    opencv_gstreamer: bool,
    hardware_decoder: bool,
    backend: str,
    hardware: bool,
    reason: str,
) -> None:
    plan = plan_rtsp(decoder, opencv_gstreamer=opencv_gstreamer, hardware_decoder=hardware_decoder)
    assert (plan.backend, plan.hardware) == (backend, hardware)
    assert reason in plan.reason


def test_plan_rtsp_gstreamer_without_opencv_support_is_an_error() -> None:
    with pytest.raises(GStreamerUnavailableError, match="set decoder: ffmpeg"):
        plan_rtsp("gstreamer", opencv_gstreamer=False, hardware_decoder=False)


def test_build_information_is_read_for_gstreamer() -> None:
    assert build_has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.22.0)\n")
    assert not build_has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")
    assert not build_has_gstreamer("    FFMPEG:                      YES\n")
    this_opencv = cv2.getBuildInformation()
    assert gstreamer.opencv_has_gstreamer() == ("GStreamer:                   YES" in this_opencv)


@pytest.mark.skipif(shutil.which("gst-inspect-1.0") is None, reason="gst-inspect-1.0 missing")
def test_has_elements_asks_gst_inspect() -> None:
    assert has_elements("videotestsrc", "videoconvert", "appsink")
    assert not has_elements("videoconvert", "edgeagentnosuchelement")
    with pytest.raises(ValueError, match="not a GStreamer element name"):
        has_elements("--help")


def test_has_elements_is_false_without_gst_inspect(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gstreamer._element_installed.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no gst-inspect-1.0
    try:
        assert not has_elements("videoconvert")
        assert gstreamer.missing_note(("videoconvert",)) == ""  # unknown, so nothing claimed
    finally:
        gstreamer._element_installed.cache_clear()


@pytest.mark.skipif(shutil.which("gst-inspect-1.0") is None, reason="gst-inspect-1.0 missing")
def test_missing_note_names_the_package() -> None:
    note = gstreamer.missing_note(("videoconvert", "nvv4l2decoder", "nvarguscamerasrc"))
    if has_elements("nvv4l2decoder"):
        pytest.skip("this machine has the Jetson elements")
    assert note == (
        "; GStreamer elements not installed: nvv4l2decoder (JetPack's nvidia-l4t-gstreamer), "
        "nvarguscamerasrc (JetPack's nvidia-l4t-gstreamer)"
    )


# ---------------------------------------------------------------- config and open_capture


def _config(tmp_path: Path, camera: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "model:\n  path: models/yolox.onnx\ncameras:\n" + textwrap.indent(camera, "  ")
    )
    return path


def test_csi_and_rtsp_decoder_config(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "- id: front\n  type: csi\n  flip_method: 2\n"
                                            "- id: gate\n  type: rtsp\n  url: rtsp://h/s\n"
                                            "  decoder: gstreamer\n  codec: h265\n"))
    csi, rtsp = config.cameras
    assert isinstance(csi, CsiCamera)
    assert (csi.sensor_id, csi.width, csi.height, csi.fps) == (0, 1920, 1080, 30)
    assert csi.flip_method == 2
    assert isinstance(rtsp, RtspCamera)
    assert (rtsp.decoder, rtsp.codec, rtsp.latency_ms) == ("gstreamer", "h265", 200)


def test_commented_csi_example_in_the_reference_config_is_valid() -> None:
    reference = Path(__file__).resolve().parents[3] / "configs" / "agent.yaml"
    lines = reference.read_text().splitlines()
    start = lines.index("  # - id: dock-csi")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append(line.removeprefix("  # "))
    camera = CsiCamera.model_validate(yaml.safe_load("\n".join(block))[0])
    assert (camera.id, camera.sensor_id, camera.flip_method) == ("dock-csi", 0, 0)


@pytest.mark.parametrize(
    ("camera", "fragment"),
    [
        ("- id: f\n  type: csi\n  flip_method: 9\n", "cameras[0].flip_method: "),
        ("- id: g\n  type: rtsp\n  url: rtsp://h/s\n  decoder: nvdec\n",
         "cameras[0].decoder: not an allowed value (got 'nvdec'); "
         "allowed: auto, ffmpeg, gstreamer"),
        ("- id: g\n  type: rtsp\n  url: rtsp://h/s\n  codec: mjpeg\n",
         "allowed: h264, h265"),
    ],
)
def test_bad_camera_values_name_the_field(tmp_path: Path, camera: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, camera))
    assert fragment in str(caught.value)


def test_auto_decoder_logs_its_choice_and_no_password(
    samples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.capture.camera")
    with RtspServer(samples / "media" / "vtest.mp4") as server:
        url = server.url.replace("rtsp://", "rtsp://viewer:s3cr%40t@")
        capture = open_capture(RtspCamera(id="gate", type="rtsp", url=url))
        try:
            ok, image = capture.read()
        finally:
            capture.release()
    assert ok
    assert image.ndim == 3
    assert image.shape[2] == 3
    plan = plan_rtsp(
        "auto",
        opencv_gstreamer=gstreamer.opencv_has_gstreamer(),
        hardware_decoder=gstreamer.opencv_has_gstreamer()
        and has_elements(*gstreamer.HARDWARE_DECODE_ELEMENTS),
    )
    through = "GStreamer" if plan.backend == "gstreamer" else "FFmpeg"
    [record] = [r for r in caplog.records if "camera gate: RTSP" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert f"through {through}" in record.getMessage()
    assert plan.reason in record.getMessage()
    assert "s3cr" not in caplog.text
    assert "rtsp://***@127.0.0.1" in record.getMessage()


@pytest.mark.skipif(gstreamer.opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gstreamer_decoder_without_opencv_support_is_a_clear_error() -> None:
    camera = RtspCamera(id="gate", type="rtsp", url="rtsp://a:secret@h/s", decoder="gstreamer")
    with pytest.raises(SourceError, match="camera gate: decoder: gstreamer needs an OpenCV"):
        open_capture(camera)


@pytest.mark.skipif(gstreamer.opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_csi_without_opencv_gstreamer_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="camera front: a csi camera needs an OpenCV built"):
        open_capture(CsiCamera(id="front", type="csi"))


# ---------------------------------------------------------------- real GStreamer runs

_READER = """
import json, sys, cv2
pipeline, count = sys.argv[1], int(sys.argv[2])
capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
shapes, spreads = [], []
while capture.isOpened() and len(shapes) < count:
    ok, image = capture.read()
    if not ok:
        break
    shapes.append(list(image.shape))
    spreads.append(float(image.std()))
capture.release()
print(json.dumps({"shapes": shapes, "spreads": spreads}))
"""
"""Runs in Debian's Python: open a pipeline with OpenCV's GStreamer backend, read frames."""

_PARSER = """
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst
Gst.init(None)
results = []
for pipeline in json.loads(sys.argv[1]):
    context = Gst.ParseContext.new()
    try:
        element = Gst.parse_launch_full(pipeline, context, Gst.ParseFlags.NONE)
        error = None
    except GLib.Error as exc:
        element, error = None, [exc.domain, exc.code, exc.message]
    source = element.get_by_name("src") if element is not None else None
    caps = {part: Gst.Caps.from_string(part) is not None
            for part in pipeline.split(" ! ") if part.startswith("video/")}
    results.append({
        "caps": caps,
        "error": error,
        "missing": list(context.get_missing_elements() or []),
        "location": source.get_property("location") if source is not None else None,
    })
print(json.dumps(results))
"""
"""Runs in Debian's Python: GStreamer's own parser on each string."""


@functools.cache
def _system_opencv_problem() -> str | None:
    """Why Debian's OpenCV cannot run the real pipelines here, or None when it can."""
    if not SYSTEM_PYTHON.is_file():
        return f"{SYSTEM_PYTHON} is missing"
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import cv2; print(cv2.getBuildInformation())"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} has no cv2 (apt-get install python3-opencv)"
    if not build_has_gstreamer(probe.stdout):
        return f"the OpenCV of {SYSTEM_PYTHON} is built without GStreamer"
    return None


def _stand_in(pipeline: str, substitution: tuple[re.Pattern[str], str]) -> str:
    pattern, replacement = substitution
    return pattern.sub(replacement, pipeline)


def _read_frames(pipeline: str, count: int) -> dict:
    problem = _system_opencv_problem()
    if problem:
        pytest.skip(problem)
    run = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", _READER, pipeline, str(count)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def _video_size(video: Path) -> tuple[int, int]:
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    try:
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return height, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        capture.release()


def test_gstreamer_parses_every_generated_pipeline() -> None:
    """The quoting and caps syntax, checked by the parser that will read them.

    Off a Jetson the NVIDIA elements are missing and the parser stops at the first, so
    each string is also parsed with software stand-ins: that must parse and link cleanly,
    and every caps filter, NVMM ones included, must parse on its own.
    """
    if not SYSTEM_PYTHON.is_file():
        pytest.skip(f"{SYSTEM_PYTHON} is missing")
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import gi; gi.require_version('Gst', '1.0')"],
        capture_output=True, timeout=60, check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} has no GStreamer bindings (apt-get install python3-gi)")
    pipelines = [csi_pipeline(1, 1280, 720, 60, flip) for flip in range(8)]
    urls = [NASTY_URL, "rtsp://10.0.0.5/s", "rtsps://u:p%40ss@cam.local:322/a"]
    for url in urls:
        for codec in ("h264", "h265"):
            for hardware in (True, False):
                built = rtsp_pipeline(url, codec, "tcp", 200, hardware, timeout_s=10)
                pipelines.append(built.replace("rtspsrc ", "rtspsrc name=src ", 1))
    stand_ins = [functools.reduce(_stand_in, STAND_INS, pipeline) for pipeline in pipelines]
    run = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", _PARSER, json.dumps(pipelines + stand_ins)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.splitlines()[-1])
    as_built, with_stand_ins = results[: len(pipelines)], results[len(pipelines) :]
    for pipeline, result in zip(pipelines, as_built, strict=True):
        assert set(result["missing"]) <= NVIDIA_ELEMENTS, (pipeline, result)
        if result["error"] is not None:  # only a missing NVIDIA element may stop the parse
            assert result["error"][1] == _NO_SUCH_ELEMENT, (pipeline, result)
    for pipeline, result in zip(stand_ins, with_stand_ins, strict=True):
        assert result["error"] is None, (pipeline, result)
    for pipeline, result in zip(pipelines, as_built, strict=True):
        assert result["caps"], pipeline
        assert all(result["caps"].values()), (pipeline, result)
    expected_urls = [url for url in urls for _ in range(4)]
    assert [result["location"] for result in with_stand_ins[8:]] == expected_urls


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_software_rtsp_pipeline_decodes_a_real_camera(samples: Path, transport: str) -> None:
    video = samples / "media" / "vtest.mp4"
    if _system_opencv_problem():
        pytest.skip(_system_opencv_problem() or "")
    with RtspServer(video) as server:
        # Credentials and '%' escapes must pass through the quoting untouched.
        url = server.url.replace("rtsp://", "rtsp://viewer:s3cr%40t%3B@")
        pipeline = rtsp_pipeline(url, "h264", transport, 100, hardware=False, timeout_s=10)
        result = _read_frames(pipeline, 12)
    height, width = _video_size(video)
    assert len(result["shapes"]) >= 10, result
    assert all(shape == [height, width, 3] for shape in result["shapes"]), result
    assert min(result["spreads"]) > 5.0, result  # real pictures, not blank frames


def test_videotestsrc_through_the_same_appsink() -> None:
    pipeline = (
        "videotestsrc is-live=true num-buffers=40 pattern=smpte ! "
        f"video/x-raw,width=320,height=240,framerate=30/1 ! {TO_BGR} ! {APPSINK}"
    )
    result = _read_frames(pipeline, 10)
    assert len(result["shapes"]) == 10, result
    assert all(shape == [240, 320, 3] for shape in result["shapes"]), result
    assert min(result["spreads"]) > 5.0, result


@pytest.mark.jetson
@pytest.mark.skipif(
    not has_elements(*gstreamer.HARDWARE_DECODE_ELEMENTS), reason="no Jetson hardware decoder"
)
def test_hardware_rtsp_pipeline_decodes_a_real_camera(samples: Path) -> None:
    video = samples / "media" / "vtest.mp4"
    with RtspServer(video) as server:
        pipeline = rtsp_pipeline(server.url, "h264", "tcp", 100, hardware=True, timeout_s=10)
        result = _read_frames(pipeline, 12)
    height, width = _video_size(video)
    assert len(result["shapes"]) >= 10, result
    assert all(shape == [height, width, 3] for shape in result["shapes"]), result
