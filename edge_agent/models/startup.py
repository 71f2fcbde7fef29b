"""Which model the agent loads at start: the manifest's active version, else the previous
one, else the config's `model.path`; and what a changed `model.path` means.

Rules (docs/models.md, "Power cuts and restarts"):
- a version still `pending` was cut off mid-deploy: it is marked rejected (interrupted);
- a version still in `probation` never passed it: the agent goes back to the previous one;
- a version that does not load is marked rolled back and the next is tried;
- when the config's model (path or file contents) differs from the one recorded with the
  manifest, the operator changed the config on purpose: the config's model runs, and the
  deployed version stays kept for model/rollback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config.model import AgentConfig
from edge_agent.models.manifest import CONFIG_MODEL, Manifest, ModelVersion, Outcome
from edge_agent.models.store import ModelStore
from edge_agent.selection.loading import Selection, select_engine
from edge_agent.selection.probe import HardwareReport
from engines.errors import EngineError
from engines.model_info import file_sha256, model_files

log = logging.getLogger(__name__)


def config_model(config: AgentConfig) -> dict[str, str] | None:
    """The config's model as the manifest records it: path and content hash."""
    try:
        sha256 = file_sha256(*model_files(config.model.path))
    except (EngineError, OSError):
        return None
    return {"path": str(config.model.path), "sha256": sha256}


def version_config(config: AgentConfig, store: ModelStore, version: ModelVersion) -> AgentConfig:
    """The config with the model section pointing at a stored version (thresholds,
    family and class allow-list stay the config's)."""
    folder = store.folder(version.sha256)
    labels = folder / "labels.txt" if version.labels else config.model.labels
    model = config.model.model_copy(update={
        "path": folder / version.file, "name": version.name, "labels": labels,
    })
    return config.model_copy(update={"model": model})


def settle_interrupted(manifest: Manifest, now: str) -> str | None:
    """Deploys a power cut or kill left half done: pending ones are rejected; a version
    still in probation gives way to the previous one. Returns what that changed in words
    (None: nothing that changes the model)."""
    for version in manifest.versions:
        if version.outcome is Outcome.PENDING:
            version.outcome, version.reason = Outcome.REJECTED, (
                "interrupted: the agent stopped during the deploy")
    active = manifest.find(manifest.active)
    if active is None or active.outcome is not Outcome.PROBATION:
        return None
    active.outcome, active.reason = Outcome.ROLLED_BACK, (
        f"the agent restarted at {now} before its probation ended")
    back = running_before(manifest, active)
    manifest.active = back
    return (f"model {active.name} ({active.sha256[:12]}) was in probation when the agent "
            f"stopped: going back to {back[:12]}")


def running_before(manifest: Manifest, cut: ModelVersion) -> str:
    """The model that ran when `cut` was swapped in: its recorded `replaced` (whatever
    became of that one since: it is what ran before the deploy), else (a manifest written
    before `replaced` was) the manifest's previous, else the config's model."""
    if cut.replaced == CONFIG_MODEL:
        return CONFIG_MODEL
    if cut.replaced is not None and cut.replaced != cut.sha256 and manifest.find(cut.replaced):
        return cut.replaced
    if manifest.previous not in (None, cut.sha256):
        return manifest.previous
    return CONFIG_MODEL


def start_order(manifest: Manifest) -> list[str]:
    """The references to try at start, in order: the active one, then the previous one,
    then the config's model (each once); CONFIG_MODEL is always among them."""
    order = [manifest.active, manifest.previous or CONFIG_MODEL, CONFIG_MODEL]
    return list(dict.fromkeys(order))


@dataclass(frozen=True)
class StartPlan:
    """The models a start tries, in order (CONFIG_MODEL last), and why the rules moved
    away from the manifest's active one, in words (level, text)."""

    order: tuple[str, ...]
    notes: tuple[tuple[int, str], ...] = ()


def config_model_changed(current: dict[str, str] | None, manifest: Manifest) -> bool:
    """Whether the config's model (`config_model`) differs from the one the manifest
    recorded. An unreadable config model (None) is no change: the deployed one keeps the
    box up."""
    return None not in (manifest.config_model, current) and current != manifest.config_model


def plan_start(config: AgentConfig, store: ModelStore, manifest: Manifest, now: str,
               ) -> StartPlan:
    """Apply the start rules to `manifest` (changed in place; the agent saves it, the
    tools never do) without loading anything: which references to try, in order."""
    notes: list[tuple[int, str]] = []
    settled = settle_interrupted(manifest, now)
    if settled:
        notes.append((logging.WARNING, settled))
    current = config_model(config)
    changed = config_model_changed(current, manifest)
    if changed and manifest.active != CONFIG_MODEL:
        notes.append((logging.WARNING, (
            f"the config's model.path ({config.model.path}) changed since model "
            f"{manifest.active[:12]} was deployed: the config's model runs; the deployed "
            "one stays for model/rollback")))
        manifest.previous, manifest.active = manifest.active, CONFIG_MODEL
    manifest.config_model = current or manifest.config_model
    present = store.present()
    order: list[str] = []
    for ref in start_order(manifest):
        if ref != CONFIG_MODEL and (manifest.find(ref) is None or ref not in present):
            notes.append((logging.ERROR, f"model {ref[:12]} is in the manifest but its files "
                          f"are not in {store.root}: skipped"))
            continue
        order.append(ref)
    return StartPlan(tuple(order), tuple(notes))


def select_at_start(
    config: AgentConfig, report: HardwareReport, config_path: Path | None, *,
    store: ModelStore, manifest: Manifest, now: str,
) -> tuple[Selection, str]:
    """Load the model to run; returns the selection and its reference (sha256 or
    CONFIG_MODEL). Updates `manifest` (the caller saves it). Raises what select_engine
    raises when nothing loads, the config's model included.
    """
    plan = plan_start(config, store, manifest, now)
    for level, note in plan.notes:
        log.log(level, "%s", note)
    for position, ref in enumerate(plan.order):
        last = position == len(plan.order) - 1
        version = manifest.find(ref)
        wanted = config if version is None else version_config(config, store, version)
        try:
            selection = select_engine(wanted, report, config_path)
        except Exception as exc:  # the next candidate: never no model while one loads
            if last:
                raise
            if version is not None:
                version.outcome, version.reason = Outcome.ROLLED_BACK, f"does not load: {exc}"
            log.error("model %s does not load, trying the next: %s",
                      version.name if version else "model.path", exc)
            continue
        if ref != manifest.active:
            log.warning("running %s instead of the manifest's active model", ref[:12])
            manifest.active = ref
        if version is not None:
            log.info("running deployed model %s %s (%s)", version.name, version.version or "",
                     ref[:12])
        return selection, ref
    raise AssertionError("unreachable: the config's model is always tried last")
