"""The agent's lifecycle: start components in order, stop them in reverse, on a signal."""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from edge_agent import __version__
from edge_agent.capture import Camera
from edge_agent.config import load_config
from edge_agent.config_model import AgentConfig, CameraConfig
from edge_agent.errors import ConfigError
from edge_agent.notify import Notifier, ProgressWatchdog
from edge_agent.payload import info_payload
from edge_agent.pipeline import CameraPipeline
from edge_agent.publish import Publisher
from edge_agent.selection import decode_options, open_configured_engine
from engines.base import Engine

log = logging.getLogger(__name__)


class SignalReceiver:
    """Handlers only record the signal; the main loop acts on it.

    Python runs handlers in the main thread between bytecodes, so a handler that takes
    a lock (Event.set) can deadlock against the main thread holding it (seen: SIGTERM
    during Event.wait). Here the C-level wakeup fd writes each signal's number to a
    socket and the Python handler does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def install(self) -> None:
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in self.SIGNALS:
            signal.signal(signum, self._record)

    @staticmethod
    def _record(_signum: int, _frame: FrameType | None) -> None:
        """The wakeup fd already has the signal number; nothing else may happen here."""

    def wait(self, timeout: float) -> list[int]:
        """Signals received, oldest first, waiting at most `timeout` for the first."""
        ready, _, _ = select.select([self._reader], [], [], timeout)
        if not ready:
            return []
        try:
            return [signum for signum in self._reader.recv(64) if signum in self.SIGNALS]
        except BlockingIOError:
            return []


class Agent:
    """Owns the engine, the publisher and one capture + pipeline per enabled camera."""

    def __init__(self, config: AgentConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.pipelines: dict[str, CameraPipeline] = {}
        self.signals = SignalReceiver()
        self.notifier = Notifier.from_environment()
        self.watchdog = ProgressWatchdog.from_environment(self.notifier)
        self._start_camera: Callable[[CameraConfig], None] | None = None
        self.started_at = time.time()
        self.engine: Engine | None = None
        self.backend_reason = ""
        self.publisher: Publisher | None = None

    def run(self) -> int:
        """Run until SIGTERM/SIGINT, or until every camera's file has played; exit code."""
        config = self.config
        with contextlib.ExitStack() as stack:
            engine, reason = open_configured_engine(config)
            self.engine, self.backend_reason = engine, reason
            stack.callback(engine.close)
            log.info("%s on %s (%s)", engine.backend, engine.device, reason)
            options = decode_options(config.model, engine.info.class_names)

            publisher = Publisher(config.mqtt, config.device_id)
            publisher.start()
            self.publisher = publisher
            stack.callback(publisher.close)
            cameras = [cam for cam in config.cameras if cam.enabled]
            publisher.publish_info(
                info_payload(
                    version=__version__,
                    device_id=config.device_id,
                    started_at=self.started_at,
                    backend=engine.backend,
                    device=engine.device,
                    backend_reason=reason,
                    model=engine.info,
                    input_spec=engine.input,
                    cameras=[(cam.id, cam.type) for cam in cameras],
                )
            )

            def start_camera(camera_config: CameraConfig) -> None:
                pipeline = CameraPipeline(Camera(camera_config), engine, publisher, options)
                pipeline.start()
                pipeline.camera.start()
                self.pipelines[camera_config.id] = pipeline

            self._start_camera = start_camera
            stack.callback(self._stop_cameras)
            for camera_config in cameras:
                start_camera(camera_config)
            summary = f"{len(cameras)} camera(s) on {engine.backend}/{engine.device}"
            log.info("running %s: %s", summary, ", ".join(c.id for c in cameras))
            self.notifier.ready(status=f"running {summary}")
            self._wait()
            log.info("stopping")
            self.notifier.stopping()
        log.info("stopped")
        return 0

    def _stop_cameras(self) -> None:
        """All captures stop at once; then each pipeline drains what it already has."""
        for pipeline in self.pipelines.values():
            pipeline.camera.request_stop()
        for camera_id in list(self.pipelines):
            self.pipelines.pop(camera_id).stop()

    def _wait(self) -> None:
        while True:
            received = self.signals.wait(0.5)
            # WATCHDOG=1 only while frames flow: a hung engine or dead loop gets restarted.
            self.watchdog.beat(sum(p.times.frames for p in self.pipelines.values()))
            for signum in received:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("received %s", signal.Signals(signum).name)
                    return
                self.notifier.reloading()
                self.reload()
                self.notifier.ready()
            if all(pipeline.finished for pipeline in self.pipelines.values()):
                log.info("every camera has finished its video")
                return

    def reload(self) -> None:
        """Validate the file again; apply camera changes, restarting only changed cameras.

        An invalid file keeps the running config. Model, backend and MQTT changes are
        not applied live (they need `systemctl restart edge-agent`), and the log says so.
        """
        if self.config_path is None or self._start_camera is None:
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload rejected, the running config stays in service:\n%s", exc)
            return
        if new.model_dump(exclude={"cameras"}) != self.config.model_dump(exclude={"cameras"}):
            log.warning("reload: only camera changes apply live; restart to apply the others")
        old = {cam.id: cam for cam in self.config.cameras if cam.enabled}
        wanted = {cam.id: cam for cam in new.cameras if cam.enabled}
        for camera_id, camera in old.items():
            if wanted.get(camera_id) != camera and camera_id in self.pipelines:
                log.info("reload: stopping camera %s", camera_id)
                self.pipelines.pop(camera_id).stop()
        for camera_id, camera in wanted.items():
            if old.get(camera_id) != camera:
                log.info("reload: starting camera %s", camera_id)
                self._start_camera(camera)
        self.config = self.config.model_copy(update={"cameras": new.cameras})
        log.info("reload applied: cameras %s", ", ".join(wanted) or "(none)")
