"""GStreamer launch strings for OpenCV: Jetson CSI cameras and hardware-decoded RTSP.

The builders are pure (building or testing a string needs no GStreamer); two cached
probes say what this machine can run: does OpenCV have GStreamer, and is an element
installed. `plan_rtsp` turns a camera's `decoder:` setting and those facts into the path
to use and the reason, so the choice is logged and testable on any machine.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

import cv2

from edge_agent import redact

log = logging.getLogger(__name__)

APPSINK = "appsink drop=true max-buffers=1 sync=false"
"""Live sources keep only the newest frame, and sync=false never paces them to a clock."""

TO_BGR = "videoconvert ! video/x-raw,format=BGR"
"""OpenCV wants packed BGR; videoconvert does the last step on the CPU."""

HARDWARE_DECODE_ELEMENTS = ("nvv4l2decoder", "nvvidconv")
"""Jetson's NVDEC decoder and the converter out of its NVMM buffers (JetPack)."""

CODECS = ("h264", "h265")
TRANSPORTS = ("tcp", "udp")
FLIP_METHODS = {
    0: "none",
    1: "rotate 90 degrees counter-clockwise",
    2: "rotate 180 degrees",
    3: "rotate 90 degrees clockwise",
    4: "flip horizontally",
    5: "flip across the upper-right diagonal",
    6: "flip vertically",
    7: "flip across the upper-left diagonal",
}
"""nvvidconv flip-method values."""

_PACKAGES = {
    "nvarguscamerasrc": "JetPack's nvidia-l4t-gstreamer",
    "nvvidconv": "JetPack's nvidia-l4t-gstreamer",
    "nvv4l2decoder": "JetPack's nvidia-l4t-gstreamer",
    "rtspsrc": "gstreamer1.0-plugins-good",
    "rtph264depay": "gstreamer1.0-plugins-good",
    "rtph265depay": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad",
    "h265parse": "gstreamer1.0-plugins-bad",
    "avdec_h264": "gstreamer1.0-libav",
    "avdec_h265": "gstreamer1.0-libav",
    "videoconvert": "gstreamer1.0-plugins-base",
    "appsink": "gstreamer1.0-plugins-base",
}
"""Where a missing element comes from, for error messages (Debian / JetPack names)."""

_ELEMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_GSTREAMER_YES = re.compile(r"^\s*GStreamer:\s*YES\b", re.MULTILINE)


def quote(value: str) -> str:
    """A gst-launch property value that reads back exactly `value` (spaces, '!', quotes)."""
    if any(ord(char) < 0x20 or char == "\x7f" for char in value):
        raise ValueError(f"control characters are not allowed in a pipeline value: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def redact_url(url: str) -> str:
    """The URL without its user, password or secret parameters, for logs and errors."""
    return redact.redact_url(url)


def csi_pipeline(sensor_id: int, width: int, height: int, fps: int, flip_method: int = 0) -> str:
    """A Jetson MIPI CSI sensor through libargus' ISP, flipped by the VIC, as BGR.

    The sensor delivers NV12 in NVMM (device) memory; nvvidconv flips and copies it to
    BGRx in system memory. Width and height are not repeated after the flip, because
    methods 1, 3, 5 and 7 swap them.
    """
    _check_range("sensor_id", sensor_id, 0, 255)
    _check_range("width", width, 1, 16384)
    _check_range("height", height, 1, 16384)
    _check_range("fps", fps, 1, 1000)
    if flip_method not in FLIP_METHODS:
        raise ValueError(f"flip_method must be 0-7 (got {flip_method!r})")
    return " ! ".join((
        f"nvarguscamerasrc sensor-id={sensor_id}",
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12",
        f"nvvidconv flip-method={flip_method}",
        "video/x-raw,format=BGRx",
        TO_BGR,
        APPSINK,
    ))


def rtsp_pipeline(
    url: str,
    codec: str = "h264",
    transport: str = "tcp",
    latency_ms: int = 200,
    hardware: bool = False,
    *,
    timeout_s: float | None = None,
) -> str:
    """An RTSP H.264/H.265 stream decoded by Jetson's NVDEC (`hardware`) or by libav.

    `timeout_s` sets rtspsrc's tcp-timeout, so a silent TCP link (camera unplugged, no
    FIN) ends the stream instead of blocking a read forever; it has no UDP counterpart.
    """
    if not url.startswith(("rtsp://", "rtsps://")):
        raise ValueError(f"url must start with rtsp:// or rtsps:// (got {redact_url(url)!r})")
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)} (got {codec!r})")
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)} (got {transport!r})")
    _check_range("latency_ms", latency_ms, 0, 60_000)
    source = f"rtspsrc location={quote(url)} protocols={transport} latency={latency_ms}"
    if timeout_s is not None and transport == "tcp":
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be more than 0 (got {timeout_s!r})")
        source += f" tcp-timeout={round(timeout_s * 1_000_000)}"
    if hardware:
        decode = ("nvv4l2decoder", "nvvidconv", "video/x-raw,format=BGRx")
    else:
        decode = (f"avdec_{codec}",)
    return " ! ".join((source, f"rtp{codec}depay", f"{codec}parse", *decode, TO_BGR, APPSINK))


def rtsp_elements(codec: str, hardware: bool) -> tuple[str, ...]:
    """The elements `rtsp_pipeline` needs, to name what is missing when it fails."""
    decode = HARDWARE_DECODE_ELEMENTS if hardware else (f"avdec_{codec}",)
    return ("rtspsrc", f"rtp{codec}depay", f"{codec}parse", *decode, "videoconvert", "appsink")


def csi_elements() -> tuple[str, ...]:
    return ("nvarguscamerasrc", "nvvidconv", "videoconvert", "appsink")


@dataclass(frozen=True)
class RtspPlan:
    """How an RTSP camera is decoded, and why (logged at every open)."""

    backend: Literal["ffmpeg", "gstreamer"]
    hardware: bool
    reason: str


class GStreamerUnavailableError(ValueError):
    """The config asks for GStreamer and this OpenCV cannot run it."""


def plan_rtsp(decoder: str, *, opencv_gstreamer: bool, hardware_decoder: bool) -> RtspPlan:
    """Pick the decode path for `decoder:` auto, ffmpeg or gstreamer on this machine.

    auto takes GStreamer only for the hardware decoder: on a PC FFmpeg decodes as fast
    as avdec and needs nothing extra, so it stays the default there.
    """
    if decoder == "ffmpeg":
        return RtspPlan("ffmpeg", False, "decoder: ffmpeg is set")
    if decoder == "gstreamer":
        if not opencv_gstreamer:
            raise GStreamerUnavailableError(
                "decoder: gstreamer needs an OpenCV built with GStreamer and this one has "
                "none; install one (Debian/JetPack python3-opencv) or set decoder: ffmpeg"
            )
        if hardware_decoder:
            return RtspPlan("gstreamer", True, "decoder: gstreamer and nvv4l2decoder is installed")
        return RtspPlan(
            "gstreamer", False, "decoder: gstreamer; no nvv4l2decoder, so software avdec"
        )
    if decoder != "auto":
        raise ValueError(f"decoder must be auto, ffmpeg or gstreamer (got {decoder!r})")
    if not opencv_gstreamer:
        return RtspPlan("ffmpeg", False, "decoder: auto and this OpenCV has no GStreamer")
    if not hardware_decoder:
        return RtspPlan(
            "ffmpeg", False, "decoder: auto and no Jetson hardware decoder (nvv4l2decoder)"
        )
    return RtspPlan(
        "gstreamer", True, "decoder: auto; OpenCV has GStreamer and nvv4l2decoder is installed"
    )


def build_has_gstreamer(build_information: str) -> bool:
    """Read the 'GStreamer: YES (1.22.0)' / 'GStreamer: NO' line of cv2.getBuildInformation()."""
    return _GSTREAMER_YES.search(build_information) is not None


@functools.cache
def opencv_has_gstreamer() -> bool:
    """Whether this process' OpenCV can open GStreamer pipelines (pip wheels cannot)."""
    return build_has_gstreamer(cv2.getBuildInformation())


def has_elements(*names: str) -> bool:
    """Whether every named GStreamer element is installed; False when gst-inspect is absent."""
    return all(_element_installed(name) for name in names)


def missing_note(names: tuple[str, ...]) -> str:
    """'; not installed: X (package)' for an error message, or '' when none is known missing.

    Without gst-inspect-1.0 nothing is known, so nothing is claimed.
    """
    if shutil.which("gst-inspect-1.0") is None:
        return ""
    missing = [name for name in names if not _element_installed(name)]
    if not missing:
        return ""
    listed = ", ".join(f"{name} ({_PACKAGES.get(name, 'unknown package')})" for name in missing)
    return f"; GStreamer elements not installed: {listed}"


@functools.cache
def _element_installed(name: str) -> bool:
    if not _ELEMENT_NAME.match(name):
        raise ValueError(f"not a GStreamer element name: {name!r}")
    tool = shutil.which("gst-inspect-1.0")
    if tool is None:
        return False
    try:
        # The first run after a plugin install rebuilds the registry: seconds on a Jetson.
        result = subprocess.run(
            [tool, "--exists", name], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot ask gst-inspect-1.0 about %s: %s", name, exc)
        return False
    return result.returncode == 0


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high} (got {value!r})")
