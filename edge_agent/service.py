"""The agent's lifecycle: start components in order, stop them in reverse, on a signal."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from types import FrameType

from edge_agent import __version__
from edge_agent.capture import Camera
from edge_agent.config_model import AgentConfig
from edge_agent.notify import Notifier, ProgressWatchdog
from edge_agent.payload import info_payload
from edge_agent.pipeline import CameraPipeline
from edge_agent.publish import Publisher
from edge_agent.selection import decode_options, open_configured_engine

log = logging.getLogger(__name__)


class SignalReceiver:
    """Handlers only record the signal; the main loop acts on it."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.wake = threading.Event()

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        self.wake.set()


class Agent:
    """Owns the engine, the publisher and one capture + pipeline per enabled camera."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.pipelines: list[CameraPipeline] = []
        self.signals = SignalReceiver()
        self.notifier = Notifier.from_environment()
        self.watchdog = ProgressWatchdog.from_environment(self.notifier)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT, or until every camera's file has played; exit code."""
        config = self.config
        with contextlib.ExitStack() as stack:
            engine, reason = open_configured_engine(config)
            stack.callback(engine.close)
            log.info("%s on %s (%s)", engine.backend, engine.device, reason)
            options = decode_options(config.model, engine.info.class_names)

            publisher = Publisher(config.mqtt, config.device_id)
            publisher.start()
            stack.callback(publisher.close)
            cameras = [cam for cam in config.cameras if cam.enabled]
            publisher.publish_info(
                info_payload(
                    version=__version__,
                    device_id=config.device_id,
                    started_at=time.time(),
                    backend=engine.backend,
                    device=engine.device,
                    backend_reason=reason,
                    model=engine.info,
                    input_spec=engine.input,
                    cameras=[(cam.id, cam.type) for cam in cameras],
                )
            )
            for camera_config in cameras:
                camera = Camera(camera_config)
                pipeline = CameraPipeline(camera, engine, publisher, options)
                pipeline.start()
                camera.start()
                stack.callback(pipeline.stop)
                self.pipelines.append(pipeline)
            summary = f"{len(cameras)} camera(s) on {engine.backend}/{engine.device}"
            log.info("running %s: %s", summary, ", ".join(c.id for c in cameras))
            self.notifier.ready(status=f"running {summary}")
            self._wait()
            log.info("stopping")
            self.notifier.stopping()
        log.info("stopped")
        return 0

    def _wait(self) -> None:
        while True:
            self.signals.wake.wait(0.5)
            # WATCHDOG=1 only while frames flow: a hung engine or dead loop gets restarted.
            self.watchdog.beat(sum(pipeline.times.frames for pipeline in self.pipelines))
            signum = self.signals.received
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("received %s", signal.Signals(signum).name)
                return
            if signum == signal.SIGHUP:
                self.notifier.reloading()
                log.warning("SIGHUP: reload is not supported yet; restart the service instead")
                self.notifier.ready()
                self.signals.received = None
                self.signals.wake.clear()
            if all(pipeline.finished for pipeline in self.pipelines):
                log.info("every camera has finished its video")
                return
