"""A real RTSP camera for tests, served from a video file by GStreamer's RTSP server.

    with RtspServer(samples / "media" / "vtest.mp4") as camera:
        capture = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)
        ...
        camera.stop()   # an outage: the process is killed, the port closes
        camera.start()  # the camera comes back on the same port
        camera.freeze() # a stall: connections stay open and the port accepts, no data flows
        camera.thaw()   # the same process carries on

The server runs as a subprocess of Debian's /usr/bin/python3 (tests/rtsp_server.py),
because the `gi` bindings live there and not in the project's venv.

By default the camera never ends: the video is re-encoded once with ffmpeg into an H.264
stream without B-frames and with a key frame every second (what a real camera sends), and
GStreamer loops that stream with running timestamps. The re-encode is cached in the
system temp folder, keyed on the file's content (vtest.mp4: about 4 s, once); entries
unused for two days are removed.
`loop=False` serves the MP4 as it is, and its stream ends at the end of the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
GI_PYTHON = Path(os.environ.get("EDGE_AGENT_GI_PYTHON", "/usr/bin/python3"))
CACHE = Path(tempfile.gettempdir()) / "edge-agent-rtsp"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _content_key(video: Path) -> str:
    """Keyed on the bytes, so a clip a test makes afresh each run reuses its entry."""
    digest = hashlib.sha256()
    with video.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _prune_cache(keep: Path, max_age_s: float = 2 * 86400) -> None:
    """Drop entries no test has used for two days, so the cache cannot grow without end."""
    cutoff = time.time() - max_age_s
    for entry in CACHE.glob("*.h264"):
        with contextlib.suppress(OSError):  # another test process may prune it first
            if entry != keep and entry.stat().st_mtime < cutoff:
                entry.unlink()


def loopable_stream(video: Path) -> Path:
    """An Annex-B H.264 copy of `video` without B-frames, made once and cached.

    A looped raw stream has no PTS and GStreamer gives it DTS only; without B-frames the
    two are the same, so the server can copy one to the other.
    """
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is not installed: run scripts/setup")
    stream = CACHE / f"{video.stem}-{_content_key(video)}.h264"
    if stream.is_file():
        stream.touch()  # marks it used, for _prune_cache
        return stream
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = stream.with_name(f"{stream.name}.{os.getpid()}.partial")
    command = [
        "ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(video), "-an",
        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-pix_fmt", "yuv420p",
        "-force_key_frames", "expr:gte(t,n_forced)", "-f", "h264", str(partial),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg could not re-encode {video}: {result.stderr.strip()}")
    partial.replace(stream)
    _prune_cache(keep=stream)
    return stream


class RtspServer:
    """One RTSP camera at rtsp://127.0.0.1:PORT/MOUNT; stop() and start() are an outage."""

    def __init__(
        self, video: Path, port: int | None = None, mount: str = "/cam", *, loop: bool = True
    ) -> None:
        if not video.is_file():
            raise FileNotFoundError(f"{video} is missing: run scripts/fetch-samples")
        if not mount.startswith("/"):
            raise ValueError(f"mount must start with '/': {mount!r}")
        self.video = Path(video)
        self.port = port if port is not None else _free_port()
        self.mount = mount
        self.loop = loop
        self._process: subprocess.Popen[bytes] | None = None
        self._frozen = False
        descriptor, log = tempfile.mkstemp(prefix="rtsp-server-", suffix=".log")
        os.close(descriptor)
        self._log = Path(log)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """What the server wrote to stderr: GStreamer warnings land here."""
        return self._log.read_text(errors="replace")

    def start(self, timeout: float = 20.0) -> RtspServer:
        """Start the server and return once its port accepts connections."""
        if self.running:
            return self
        if not GI_PYTHON.is_file():
            raise RuntimeError(f"{GI_PYTHON} is missing: run scripts/setup (python3-gi)")
        source = loopable_stream(self.video) if self.loop else self.video
        mode = "loop" if self.loop else "once"
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(GI_PYTHON), str(SERVER_SCRIPT), str(source), str(self.port), self.mount, mode],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not for it
            )
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(
                    f"RTSP server exited with {code} before listening on {self.port}:\n"
                    f"{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"RTSP server not listening on {self.port} after {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Kill the server (SIGKILL, like a camera losing power); its port closes."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # it may have died on its own
            os.killpg(self._process.pid, signal.SIGKILL)  # SIGKILL ends a frozen one too
        self._process.wait(timeout=10)
        self._process = None
        self._frozen = False

    def freeze(self) -> None:
        """SIGSTOP the server: a real stall, where the kernel keeps the TCP connections
        and the port accepting but not one RTSP reply or RTP packet is sent."""
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"RTSP server on port {self.port} is not running; start() it")
        os.killpg(process.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT after freeze(): the same server carries on from where it stopped."""
        if self._process is not None and self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGCONT)
        self._frozen = False

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.unlink(missing_ok=True)
