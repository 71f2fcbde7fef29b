"""What a reload changes: compare the running config with the new file, section by section.

Kept apart from the service so the rules are plain data a test can read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge_agent.config.model import AgentConfig, CameraConfig
from engines.errors import EngineError
from engines.model_info import file_sha256, model_files

log = logging.getLogger(__name__)

ENGINE_FIELDS = {"path", "name", "family", "labels", "input_size"}
"""Model settings that need the engine loaded again; the rest (thresholds, classes)
only change the detection filter (what postprocessing keeps)."""

IN_PLACE_CAMERA_FIELDS = frozenset(
    {"detect", "masks", "zones", "lines", "tracker", "publish", "snapshots"}
)
"""Camera settings a running camera takes over between two frames: detect and masks
(CameraPipeline.retune), zones, lines, tracker, publish and snapshots
(CameraDelivery.reconfigure). A camera whose edits are all in these keeps its capture
and its frames in flight."""

RESTART_ONLY = ("device_id", "state_dir", "mqtt", "health")
"""Sections a running agent cannot change in place: topics, files and the broker session
would be half old, half new."""


@dataclass(frozen=True)
class ReloadPlan:
    kept: AgentConfig
    """The config to run: the new file, except sections that need a restart."""
    model_changed: bool
    filter_changed: bool
    cameras_changed: tuple[str, ...]
    """Cameras to (re)start: added or with changed settings (enabled ones)."""
    cameras_removed: tuple[str, ...]
    """Cameras to stop for good: deleted from the file or disabled."""
    log_level_changed: bool
    needs_restart_notes: tuple[str, ...]
    cameras_retuned: tuple[str, ...] = ()
    """Running cameras whose only edits are IN_PLACE_CAMERA_FIELDS: applied without a
    restart."""


def plan_reload(running: AgentConfig, new: AgentConfig, running_sha256: str) -> ReloadPlan:
    """Compare; `running_sha256` catches a model file replaced under the same path."""
    old_model = running.model.model_dump(include=ENGINE_FIELDS)
    new_model = new.model.model_dump(include=ENGINE_FIELDS)
    model_changed = old_model != new_model or running.backend != new.backend
    if not model_changed and _sha256(new) not in (running_sha256, None):
        log.info("reload: %s has new contents", new.model.path)
        model_changed = True
    filter_changed = running.model.model_dump(exclude=ENGINE_FIELDS) != new.model.model_dump(
        exclude=ENGINE_FIELDS
    )
    notes = tuple(
        f"{section} changed: not applied until restart"
        for section in RESTART_ONLY
        if getattr(running, section) != getattr(new, section)
    )
    for note in notes:
        log.warning("reload: %s (systemctl restart edge-agent)", note)
    old = {cam.id: cam for cam in running.cameras if cam.enabled}
    wanted = {cam.id: cam for cam in new.cameras if cam.enabled}
    kept = new.model_copy(update={section: getattr(running, section) for section in RESTART_ONLY})
    changed = [i for i, cam in wanted.items() if old.get(i) != cam]
    retuned = tuple(i for i in changed if i in old and _only_in_place(old[i], wanted[i]))
    return ReloadPlan(
        kept=kept,
        model_changed=model_changed,
        filter_changed=filter_changed,
        cameras_changed=tuple(i for i in changed if i not in retuned),
        cameras_removed=tuple(i for i in old if i not in wanted),
        log_level_changed=running.log_level != new.log_level,
        needs_restart_notes=notes,
        cameras_retuned=retuned,
    )


def _only_in_place(old: CameraConfig, new: CameraConfig) -> bool:
    """Whether every difference between two settings of one camera is in-place."""
    return type(old) is type(new) and (
        old.model_dump(exclude=set(IN_PLACE_CAMERA_FIELDS))
        == new.model_dump(exclude=set(IN_PLACE_CAMERA_FIELDS))
    )


def _sha256(config: AgentConfig) -> str | None:
    """The model's hash as the engine computes it; None when unreadable (the load says why)."""
    try:
        return file_sha256(*model_files(config.model.path))
    except (EngineError, OSError):
        return None
