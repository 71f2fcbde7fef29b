"""Each camera's state on MQTT: retained `<prefix>/<device_id>/<camera>/state`, on change.

Supervisor-style states (`CameraState`: STARTING, RUNNING, BACKOFF, FAILED, STOPPED, the
schema's enum) let a dashboard show a dead camera without parsing logs; retained, so a
late subscriber sees it too. What is sent comes from each pipeline's `stats()`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from edge_agent.capture.state import CameraState
from edge_agent.publish.payload import camera_state_payload

if TYPE_CHECKING:
    from edge_agent.pipeline_stats import PipelineStats


def state_topic(camera_id: str) -> str:
    return f"{camera_id}/state"


class RetainedSink(Protocol):
    connected: bool

    def publish_retained(self, subtopic: str, payload: bytes) -> bool: ...


class HasStats(Protocol):
    def stats(self) -> PipelineStats:
        """The camera's counters and its state including its workers' (FAILED when one
        is dead): edge_agent.pipeline.CameraPipeline.stats."""
        ...


class CameraStates:
    """Publishes a camera's state when it changes, and everything again after a reconnect."""

    def __init__(self, sink: RetainedSink) -> None:
        self._sink = sink
        self._sent: dict[str, tuple[CameraState, int, str | None]] = {}
        self._since: dict[str, tuple[CameraState | None, float]] = {}
        self._was_connected = False

    def update(self, pipelines: Mapping[str, HasStats]) -> None:
        connected = self._sink.connected
        if connected and not self._was_connected:
            self._sent.clear()  # the broker may have restarted without its retained store
        self._was_connected = connected
        now = time.time()
        for camera_id, pipeline in pipelines.items():
            stats = pipeline.stats()
            camera, state = stats.camera, stats.state
            if self._since.get(camera_id, (None, 0.0))[0] is not state:
                self._since[camera_id] = (state, now)
            key = (state, camera.reconnects, camera.last_error)
            if self._sent.get(camera_id) == key or not connected:
                continue
            payload = camera_state_payload(
                camera_id=camera_id,
                state=state.value,
                since=self._since[camera_id][1],
                reconnects=camera.reconnects,
                last_error=camera.last_error,
                frames=camera.captured,
            )
            if self._sink.publish_retained(state_topic(camera_id), payload):
                self._sent[camera_id] = key

    def forget(self, camera_ids: Iterable[str]) -> None:
        """Cameras removed from the config; their topic is deleted by
        edge_agent.delivery.removed.RemovedTopics (the broker may be away now)."""
        for camera_id in camera_ids:
            self._sent.pop(camera_id, None)
            self._since.pop(camera_id, None)
