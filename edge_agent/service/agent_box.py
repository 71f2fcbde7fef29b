"""The agent as command handlers see it (edge_agent.commands.box.Box), and the channel's
start. Whatever changes the agent (reload, a camera restart) runs on the agent's main
loop through `MainLoopTasks`, the thread that also acts on SIGHUP, so they never race.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge_agent.commands.box import LatestFrame
from edge_agent.commands.channel import CommandChannel
from edge_agent.commands.dedupe import RequestLog
from edge_agent.commands.registry import default_registry
from edge_agent.commands.results import ResultSender
from edge_agent.commands.spec import Code, FailedError, RejectedError
from edge_agent.config.model import AgentConfig
from edge_agent.health.snapshot import fitted_json

if TYPE_CHECKING:
    from edge_agent.models.lifecycle import ModelManager
    from edge_agent.service.agent import Agent

log = logging.getLogger(__name__)

T = TypeVar("T")
MQTT_MAX_PAYLOAD = 268_435_455 - 1024
"""MQTT's largest packet, less room for the topic and header."""


class MainLoopTasks:
    """Work handed to the main loop by other threads; `run_pending` runs it there."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue())
        self._wake = wake
        self._closed = threading.Event()

    def call(self, work: Callable[[], T], timeout: float) -> T:
        """Run `work` on the main loop and return its result (or raise its exception);
        FailedError(UNAVAILABLE) when the agent is stopping or the loop did not get to it."""
        if self._closed.is_set():
            raise FailedError("the agent is stopping", Code.UNAVAILABLE)
        future: Future[T] = Future()
        self._queue.put((work, future))
        self._wake()
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise FailedError(f"the agent did not get to it within {timeout:.0f} s",
                              Code.UNAVAILABLE) from None

    def run_pending(self) -> None:
        """Called by the main loop: run what is queued, in order."""
        while True:
            try:
                work, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except BaseException as exc:  # handed to the caller, who reports it
                future.set_exception(exc)

    def close(self) -> None:
        """No more work: what is queued fails with UNAVAILABLE."""
        self._closed.set()
        while True:
            try:
                _work, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(FailedError("the agent is stopping", Code.UNAVAILABLE))


class AgentBox:
    """`Box` over the running `Agent`."""

    def __init__(self, agent: Agent, tasks: MainLoopTasks) -> None:
        self._agent = agent
        self._tasks = tasks

    @property
    def device_id(self) -> str:
        return self._agent.config.device_id

    @property
    def state_dir(self) -> Path:
        return self._agent.config.state_dir

    def running_config(self) -> AgentConfig:
        return self._agent.config

    def camera_ids(self) -> list[str]:
        return list(self._agent.pipelines)

    def latest_frame(self, camera_id: str) -> LatestFrame | None:
        pipeline = self._agent.pipelines.get(camera_id)
        latest = pipeline.latest if pipeline is not None else None
        if pipeline is None or latest is None:
            return None
        frame, detections = latest
        return LatestFrame(camera_id, frame.sequence, frame.captured_at, frame.image,
                           detections, pipeline.detector.info.class_names)

    def reload(self, timeout: float) -> dict[str, Any]:
        return self._tasks.call(self._agent.reload_now, timeout)

    def restart_camera(self, camera_id: str, timeout: float) -> int:
        return self._tasks.call(lambda: self._restart(camera_id), timeout)

    def _restart(self, camera_id: str) -> int:
        agent = self._agent
        config = next((c for c in agent.config.cameras if c.id == camera_id and c.enabled),
                      None)
        if config is None or camera_id not in agent.pipelines:
            raise RejectedError(f"no running camera {camera_id!r}", Code.NOT_FOUND)
        log.info("command: restarting camera %s", camera_id)
        agent.restart_camera(config)
        return agent.pipelines[camera_id].camera.next_sequence

    def health_now(self) -> dict[str, Any]:
        health, publisher = self._agent.health, self._agent.publisher
        if health is None or publisher is None:
            raise FailedError("health is not running", Code.UNAVAILABLE)
        payload = fitted_json(health.refresh(), publisher.retained_limit("health"))
        published = publisher.publish_retained("health", payload)
        body: dict[str, Any] = json.loads(payload)
        if not published:
            log.info("command health/now: not connected; the health message was not sent")
        return body

    def publish(self, subtopic: str, payload: bytes) -> bool:
        publisher = self._agent.publisher
        if publisher is None:
            return False
        info = publisher.publish_message(subtopic, payload)
        return info.rc in (0, 4)  # MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN (queued)

    @property
    def models(self) -> ModelManager:
        return self._agent.models

    def message_limit(self, subtopic: str) -> int:
        """The broker's stated limit (MQTT 5); else MQTT's own, as for status and info
        (`mqtt.max_message_bytes` is the detection messages' budget, not this)."""
        publisher = self._agent.publisher
        if publisher is None:
            return 0
        limit = publisher.retained_limit(subtopic)
        return MQTT_MAX_PAYLOAD if limit is None else limit


def start_commands(agent: Agent, tasks: MainLoopTasks,
                   stack: contextlib.ExitStack) -> CommandChannel | None:
    """The command channel when `commands.enabled`; it stops when `stack` unwinds."""
    config, publisher = agent.config, agent.publisher
    if not config.commands.enabled or publisher is None:
        return None
    section = config.commands
    requests = RequestLog.open_in(config.state_dir, section.dedupe_hours * 3600,
                                  section.dedupe_max_entries)
    channel = CommandChannel(
        default_registry(), AgentBox(agent, tasks),
        lambda stopping: ResultSender(publisher, stopping), requests,
    )
    channel.start()
    stack.callback(channel.stop)
    stack.callback(tasks.close)  # unwinds first: running commands waiting on the loop end
    publisher.subscribe_commands(channel.on_message)
    allowed = [name for name in section.allow if name in channel.registry]
    log.info("commands: answering on %s (box-changing allowed: %s)", publisher.command_topic,
             ", ".join(allowed) or "none")
    return channel
