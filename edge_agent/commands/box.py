"""`Box`: the narrow view of the running agent that command handlers get.

Handlers never hold the `Agent`: they ask the box for what they need, and the box does
anything that changes the agent (reload, camera restart) on the agent's main loop, the
same thread that acts on SIGHUP, so a command and a signal never race.
Implemented by edge_agent.service.agent_box.AgentBox.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edge_agent.config.model import AgentConfig
from engines.base import Detections

if TYPE_CHECKING:
    from edge_agent.models.lifecycle import ModelManager


@dataclass(frozen=True)
class LatestFrame:
    """A camera's newest processed frame and its detections (references, not copies:
    the pipeline replaces the whole object per frame and never writes into the image)."""

    camera_id: str
    sequence: int
    captured_at: float
    """Unix time of capture."""
    image: np.ndarray
    """HxWx3 uint8 BGR; read-only for the reader."""
    detections: Detections
    class_names: tuple[str, ...]


class Box(Protocol):
    """What commands may see and do. Calls may block (main-loop work waits for the loop);
    each raises `edge_agent.commands.spec.CommandError` subclasses for expected refusals."""

    @property
    def device_id(self) -> str: ...

    @property
    def state_dir(self) -> Path: ...

    def running_config(self) -> AgentConfig:
        """The config in service now (after the last successful reload)."""
        ...

    def camera_ids(self) -> list[str]:
        """Cameras running now, in config order."""
        ...

    def latest_frame(self, camera_id: str) -> LatestFrame | None:
        """The camera's newest processed frame; None before its first one."""
        ...

    def reload(self, timeout: float) -> dict[str, Any]:
        """Re-read the config file exactly as SIGHUP does; returns the reload record
        (`at`, `ok`, `error`, `applied`), as in the retained info's `last_reload`."""
        ...

    def restart_camera(self, camera_id: str, timeout: float) -> int:
        """Stop and start one camera's capture and pipeline; returns the sequence number
        its frames continue from. Raises RejectedError(NOT_FOUND) for an unknown camera."""
        ...

    def health_now(self) -> dict[str, Any]:
        """Build a health snapshot now, publish it (retained, as the periodic one) and
        return its JSON body (docs/schemas/health.schema.json)."""
        ...

    def publish(self, subtopic: str, payload: bytes) -> bool:
        """QoS 1, not retained, on `<prefix>/<device_id>/<subtopic>`; False when the
        client refused it (too large for the broker, queue full)."""
        ...

    def message_limit(self, subtopic: str) -> int:
        """Largest payload in bytes for `<prefix>/<device_id>/<subtopic>`."""
        ...

    @property
    def models(self) -> ModelManager:
        """The model lifecycle (edge_agent.models): deploy, rollback, listing."""
        ...
