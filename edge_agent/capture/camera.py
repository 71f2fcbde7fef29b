"""Camera capture: one thread per camera, frames handed over through a bounded queue.

Live sources (RTSP, USB, GStreamer) keep only the newest frame and count what they
drop, so inference always works on the present; a file source never drops, so a
recorded clip is analysed frame by frame.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_agent.capture.gstreamer import (
    HARDWARE_DECODE_ELEMENTS,
    GStreamerUnavailableError,
    csi_elements,
    csi_pipeline,
    has_elements,
    missing_note,
    opencv_has_gstreamer,
    plan_rtsp,
    redact_url,
    rtsp_elements,
    rtsp_pipeline,
)
from edge_agent.capture.state import CameraState, CameraStats
from edge_agent.clock import TRUST
from edge_agent.config.model import (
    CameraConfig,
    CsiCamera,
    FileCamera,
    GstreamerCamera,
    RtspCamera,
    UsbCamera,
)
from edge_agent.errors import SourceError
from edge_agent.redact import redact
from edge_agent.supervision import GuardedWorker
from edge_agent.workers import Worker
from engines.regular_file import not_regular

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0
"""Reopening is cheap; at 30 s a camera back after 10 s waited up to 37 s more (soak)."""
FAILED_AFTER = 5
"""Failed opens or reads in a row before a camera's state is FAILED rather than BACKOFF."""
_ffmpeg_options_lock = threading.Lock()
"""OpenCV reads RTSP options from one process-wide variable at open time."""


@dataclass(frozen=True)
class Frame:
    """One decoded image; `captured_at` stamps the payload, `captured_mono` times it."""

    camera_id: str
    sequence: int
    image: np.ndarray  # HxWx3 uint8 BGR
    captured_at: float  # unix time, for the payload's timestamp only
    decode_ms: float
    captured_mono: float = field(default_factory=time.monotonic)
    """time.monotonic() at capture: latencies survive a wall-clock step."""
    clock_synced: bool = True
    """Whether the wall clock was synchronised when `captured_at` was read."""
    video_mono: float | None = None
    """A file read at full speed (realtime: false): the frame's time on the video's own
    clock (first frame's captured_mono + frames / file fps); None for other sources."""

    @property
    def timeline(self) -> float:
        """Seconds (monotonic) on the source's own clock: rates and durations (detect.fps,
        motion keep-alive) follow the video, not the speed of inference."""
        return self.captured_mono if self.video_mono is None else self.video_mono


class FrameQueue:
    """Bounded hand-over between capture and inference.

    With `drop_oldest`, a full queue discards its oldest frame (counted in `dropped`);
    otherwise `put` blocks until there is room, which paces a file to the consumer.
    """

    def __init__(self, maxsize: int, *, drop_oldest: bool) -> None:
        self._items: collections.deque[Frame] = collections.deque()
        self._maxsize = maxsize
        self._drop_oldest = drop_oldest
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, frame: Frame, stop: threading.Event) -> bool:
        """Queue `frame`; False when `stop` came first (a waiting queue only)."""
        with self._cond:
            while len(self._items) >= self._maxsize:
                if self._drop_oldest:
                    self._items.popleft()
                    self.dropped += 1
                    break
                if stop.is_set():
                    return False
                self._cond.wait(0.1)
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None after `timeout` or once closed and empty."""
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        """No more frames will come (end of file, or stop)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


def open_capture(camera: CameraConfig, *, log_level: int = logging.INFO) -> cv2.VideoCapture:
    """Open the OpenCV capture for one camera, or raise SourceError saying why."""
    elements: tuple[str, ...] = ()  # GStreamer elements to name if the open fails
    if isinstance(camera, FileCamera):
        if not camera.path.is_file():  # a FIFO, /dev/null, a directory: say what it is
            kind = not_regular(camera.path)
            why = f"is {kind}" if kind else "not found"
            raise SourceError(f"camera {camera.id}: video file {camera.path} {why}")
        capture = cv2.VideoCapture(str(camera.path), cv2.CAP_FFMPEG)
        what = f"video file {camera.path}"
    elif isinstance(camera, RtspCamera):
        capture, what, elements = _open_rtsp(camera, log_level)
    elif isinstance(camera, UsbCamera):
        device = camera.device
        capture = cv2.VideoCapture(device if isinstance(device, int) else str(device), cv2.CAP_V4L2)
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, camera.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, camera.height),
            (cv2.CAP_PROP_FPS, camera.fps),
        ):
            if value is not None:
                capture.set(prop, value)
        what = f"USB camera {device}"
    elif isinstance(camera, CsiCamera):
        capture, what, elements = _open_csi(camera, log_level)
    elif isinstance(camera, GstreamerCamera):
        if not opencv_has_gstreamer():
            raise SourceError(
                f"camera {camera.id}: this OpenCV has no GStreamer support; install a build "
                "with it (Debian/JetPack python3-opencv) or use an rtsp/usb/file camera"
            )
        capture = cv2.VideoCapture(camera.pipeline, cv2.CAP_GSTREAMER)
        what = "GStreamer pipeline"
    else:  # pragma: no cover - the config union is closed
        raise SourceError(f"camera {camera.id}: unsupported type")
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"camera {camera.id}: cannot open {what}{missing_note(elements)}")
    return capture


_Opened = tuple[cv2.VideoCapture, str, tuple[str, ...]]
"""A capture, what it is (for errors) and the GStreamer elements it needs."""


def _open_rtsp(camera: RtspCamera, log_level: int) -> _Opened:
    """FFmpeg, or GStreamer with Jetson hardware decoding, as `decoder:` and the box allow."""
    shown = redact_url(camera.url)
    gstreamer = camera.decoder != "ffmpeg" and opencv_has_gstreamer()
    try:
        plan = plan_rtsp(
            camera.decoder,
            opencv_gstreamer=opencv_has_gstreamer(),
            hardware_decoder=gstreamer and has_elements(*HARDWARE_DECODE_ELEMENTS),
        )
    except GStreamerUnavailableError as exc:
        raise SourceError(f"camera {camera.id}: {exc}") from None
    if plan.backend == "gstreamer":
        options = (camera.codec, camera.transport, camera.latency_ms, plan.hardware)
        timeout_s = camera.stall_timeout_s
        log.log(
            log_level,
            "camera %s: RTSP %s through GStreamer, %s decoding (%s): %s",
            camera.id, shown, "hardware" if plan.hardware else "software", plan.reason,
            rtsp_pipeline(shown, *options, timeout_s=timeout_s),
        )
        pipeline = rtsp_pipeline(camera.url, *options, timeout_s=timeout_s)
        capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        elements = rtsp_elements(camera.codec, plan.hardware)
        return capture, f"RTSP stream {shown} with GStreamer", elements
    log.log(log_level, "camera %s: RTSP %s through FFmpeg (%s)", camera.id, shown, plan.reason)
    timeout_ms = int(camera.stall_timeout_s * 1000)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms,
    ]
    with _ffmpeg_options_lock:
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{camera.transport}"
        capture = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG, params)
    return capture, f"RTSP stream {shown}", ()


def _open_csi(camera: CsiCamera, log_level: int) -> _Opened:
    """A Jetson CSI sensor: only GStreamer's nvarguscamerasrc reaches the ISP."""
    if not opencv_has_gstreamer():
        raise SourceError(
            f"camera {camera.id}: a csi camera needs an OpenCV built with GStreamer and this "
            "one has none; use JetPack's python3-opencv, or type: usb if the sensor has a "
            "V4L2 driver"
        )
    pipeline = csi_pipeline(
        camera.sensor_id, camera.width, camera.height, camera.fps, camera.flip_method
    )
    log.log(log_level, "camera %s: CSI through GStreamer: %s", camera.id, pipeline)
    capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    mode = f"{camera.width}x{camera.height} at {camera.fps} fps"
    return capture, f"CSI camera sensor-id {camera.sensor_id} ({mode})", csi_elements()


class Camera:
    """Reads one source in its own thread into `frames`; reopens it with backoff on errors."""

    def __init__(
        self, config: CameraConfig, queue_size: int = 2, first_sequence: int = 0
    ) -> None:
        self.config = config
        self.live = not isinstance(config, FileCamera)
        self.frames = FrameQueue(queue_size if not self.live else 1, drop_oldest=self.live)
        self.state = CameraState.STARTING
        self.reconnects = 0
        self.last_error: str | None = None
        self.captured = 0
        """Frames read from the source (input rate = its change over time)."""
        self.next_sequence = first_sequence
        """Sequence number the next frame gets; a restarted camera continues from here."""
        self._failures = 0
        self._opened_at = 0.0
        self._delay = 1.0
        self.last_frame_at: float | None = None
        """time.monotonic() of the last frame read; None before the first."""
        self.started_at: float | None = None
        """time.monotonic() of `start`; None before."""
        self.ended = False
        """True once a file (not looping) played to its end: the only way a camera finishes."""
        self.frame_size: tuple[int, int] | None = None
        """(width, height) of the last frame read; a change mid-stream is logged."""
        self._stop = threading.Event()
        self._worker = GuardedWorker(f"capture-{config.id}", self._run, on_crash=self._crashed)

    @property
    def id(self) -> str:
        return self.config.id

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._worker.start()

    def workers(self) -> list[Worker]:
        return [self._worker]

    def stats(self) -> CameraStats:
        """What health and the state topic may read of this camera, at this moment."""
        return CameraStats(
            id=self.id, state=self.state, captured=self.captured, dropped=self.frames.dropped,
            queued=len(self.frames), reconnects=self.reconnects, last_error=self.last_error,
            last_frame_at=self.last_frame_at, started_at=self.started_at,
        )

    def request_stop(self) -> None:
        """Ask the capture thread to end without waiting (stop many cameras at once)."""
        self._stop.set()
        self._worker.stop()

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        self._worker.join(timeout)
        self.frames.close()

    @property
    def finished(self) -> bool:
        """A file that played to its end (and does not loop) has nothing more to give."""
        return self.ended

    def _crashed(self, worker: Worker, _exc: BaseException) -> None:
        """A bug in the capture loop: say so in the camera's state; the worker restarts it."""
        given_up = getattr(worker, "given_up", False)
        self.state = CameraState.FAILED if given_up else CameraState.BACKOFF
        self.last_error = (
            f"camera {self.id}: capture worker crashed"
            f"{', given up' if given_up else ', restarting'}: {worker.last_error}"
        )
        if given_up:
            self.frames.close()  # the pipeline drains and ends; the agent decides what next

    def _run(self) -> None:
        sequence = self.next_sequence
        self._delay = 1.0
        while not self._stop.is_set():
            try:
                # How the source is opened: INFO the first time, DEBUG on reopens (no flood).
                capture = open_capture(
                    self.config, log_level=logging.DEBUG if self.reconnects else logging.INFO
                )
            except SourceError as exc:
                self._fail(str(exc))
                continue
            self.state = CameraState.RUNNING
            self._opened_at = time.monotonic()
            log.info("camera %s opened", self.id)
            try:
                sequence, ended = self._read(capture, sequence)
                problem = self._why_stopped()
            except SourceError as exc:
                ended, problem = False, str(exc)
            except cv2.error as exc:
                ended, problem = False, f"camera {self.id}: decoder error: {exc}"
            finally:
                capture.release()
            if ended:
                self.ended = True
                break
            if not self._stop.is_set():
                self._fail(problem)
        self.state = CameraState.STOPPED
        self.frames.close()

    def _read(self, capture: cv2.VideoCapture, sequence: int) -> tuple[int, bool]:
        """Read until stop, error or end of file; returns (next sequence, source ended)."""
        first = sequence
        config = self.config
        pace = isinstance(config, FileCamera) and config.realtime
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        interval = 1.0 / fps if pace and 0 < fps < 1000 else 0.0
        next_due = time.monotonic()
        unpaced_file = isinstance(config, FileCamera) and not pace
        video_step = 1.0 / fps if 0 < fps < 1000 else 1.0 / 25
        video_start: float | None = None
        while not self._stop.is_set():
            started = time.perf_counter()
            ok, image = capture.read()
            decode_ms = (time.perf_counter() - started) * 1000
            if not ok:
                if isinstance(config, FileCamera):
                    if config.loop and sequence > first:
                        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    if sequence == first:
                        raise SourceError(f"camera {self.id}: {config.path} has no frames")
                    log.info("camera %s: end of %s after %d frames", self.id, config.path,
                             sequence - first)
                    return sequence, True
                return sequence, False
            if sequence == first:  # frames flow: the source counts as healthy again
                self._delay, self._failures = 1.0, 0
            self.captured += 1
            self.last_frame_at = time.monotonic()
            self._check_size(image)
            if unpaced_file and video_start is None:
                video_start = self.last_frame_at
            frame = Frame(
                self.id, sequence, image, time.time(), decode_ms,
                captured_mono=self.last_frame_at, clock_synced=TRUST.synced(),
                video_mono=None if video_start is None else (
                    video_start + (sequence - first) * video_step),
            )
            if not self.frames.put(frame, self._stop):
                break  # stopping with a full queue: the number stays free for the restart
            sequence += 1
            self.next_sequence = sequence
            if interval:
                next_due += interval
                wait = next_due - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                else:
                    next_due = time.monotonic()
        return sequence, False

    def _check_size(self, image: np.ndarray) -> None:
        """Log a resolution change once per change; payloads carry each frame's own size."""
        height, width = image.shape[:2]
        size = (int(width), int(height))
        if size != self.frame_size:
            if self.frame_size is not None:
                log.warning(
                    "camera %s: resolution changed from %dx%d to %dx%d; detections now "
                    "report %dx%d frames", self.id, *self.frame_size, *size, *size,
                )
            self.frame_size = size

    def _why_stopped(self) -> str:
        """A read that failed after the stall timeout is a stall; sooner, the stream ended."""
        timeout = self.config.stall_timeout_s
        age = time.monotonic() - max(self.last_frame_at or 0.0, self._opened_at)
        if age >= timeout * 0.9:
            return (
                f"camera {self.id}: stalled, no frame for {age:.1f} s "
                f"(stall_timeout_s {timeout:g})"
            )
        return f"camera {self.id}: stream ended or failed to decode"

    def _fail(self, message: str) -> None:
        """Record the error and wait a randomised, growing delay before reopening.

        After FAILED_AFTER failures in a row the state says FAILED (someone must look),
        but reopening goes on at the longest delay: a camera that comes back is used.
        """
        self._failures += 1
        self.state = CameraState.FAILED if self._failures >= FAILED_AFTER else CameraState.BACKOFF
        self.last_error = redact(message)  # published retained: never a password
        self.reconnects += 1
        wait = self._delay * random.uniform(0.8, 1.2)
        self._delay = min(self._delay * 2, MAX_BACKOFF_S)
        log.warning("%s; retrying in %.1f s", message, wait)
        self._stop.wait(wait)
