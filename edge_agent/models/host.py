"""What the model lifecycle needs of the running agent, and the small helpers that read it.

Kept apart from edge_agent.models.lifecycle so the lifecycle reads as the story of a deploy.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

from edge_agent.config.model import AgentConfig
from edge_agent.models.checks import Counters
from edge_agent.pipeline import CameraPipeline
from edge_agent.selection.loading import Selection
from engines.base import Engine
from engines.postprocess import DetectionFilter

DRAIN_TIMEOUT_S = 10.0
"""Longest wait for the frames of the old engine still in flight after a swap."""


class ModelHost(Protocol):
    """What the lifecycle needs of the agent (edge_agent.service.agent.Agent)."""

    config: AgentConfig
    config_path: Path | None
    engine: Engine | None
    options: DetectionFilter | None
    pipelines: dict[str, CameraPipeline]

    def use_model(self, selection: Selection, options: DetectionFilter) -> list[threading.Event]:
        """Make `selection` the running engine; events set when each camera drained."""
        ...

    def publish_info(self) -> None:
        """Publish the retained info again (it carries `models`)."""
        ...


class LifecycleError(Exception):
    """A deploy or rollback that did not happen; `rejected` when nothing was changed."""

    def __init__(self, reason: str, *, rejected: bool, kind: str = "error",
                 **fields: Any) -> None:
        super().__init__(reason)
        self.reason, self.rejected, self.kind, self.fields = reason, rejected, kind, fields


def counters(host: ModelHost) -> dict[str, Counters]:
    """Each running camera's pipeline counters now (probation compares two of these)."""
    return {cam: Counters(p.times.frames, p.frames_failed, p.detected,
                          p.times.totals["infer"], p.output_problem)
            for cam, p in list(host.pipelines.items())}


def wait_all(events: list[threading.Event]) -> None:
    """Wait for every camera to drain the old engine's frames, DRAIN_TIMEOUT_S in all."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    for event in events:
        event.wait(max(0.0, deadline - time.monotonic()))
