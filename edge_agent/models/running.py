"""Which model this box runs, for the operator tools (snapshot, doctor, bench, quantize,
check-config): the one question they all ask before they load a model.

A fleet deploy replaces the config's `model.path` with a version in the state dir's
store, so a tool that opened `model.path` would check and draw with a model the agent no
longer runs. The answer comes from the manifest, read without changing it:

- an agent runs (its pid file names a live edge-agent): the manifest's active model, which
  the agent rewrites at every start, swap, rollback and reload;
- no agent runs: what its next start loads, by the start rules of
  edge_agent.models.startup (a version left in probation gives way, a changed
  `model.path` wins, a version whose files are gone is skipped).

A manifest that is missing, damaged or unreadable, or names a version whose files are
gone, gives the config's model with a note saying so: never a traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from edge_agent.config.model import AgentConfig
from edge_agent.models.manifest import (
    CONFIG_MODEL,
    Manifest,
    ManifestError,
    ModelVersion,
    Outcome,
    read_manifest,
)
from edge_agent.models.startup import (
    config_model,
    config_model_changed,
    plan_start,
    version_config,
)
from edge_agent.models.store import ModelStore
from edge_agent.publish.payload import iso_utc
from edge_agent.service.state_files import running_pid

CONFIG_MODEL_FLAG = "--config-model"
"""The tools' option to load the config's model.path whatever the manifest says."""


@dataclass(frozen=True)
class RunningModel:
    """The model a tool should load (`config` points at it) and why, in words."""

    config: AgentConfig
    """The agent's config with its model section pointing at that model."""
    ref: str
    """The version's sha256, or CONFIG_MODEL for the config's model.path."""
    version: ModelVersion | None
    why: str
    """One clause: why this model (`the manifest's active model`, `no model deployed`...)."""
    notes: tuple[str, ...] = ()
    """What moved the answer away from the manifest's active model, or what to know."""
    fix: str | None = None
    """Set when the manifest could not be followed: what the technician can do."""

    @property
    def deployed(self) -> bool:
        return self.version is not None

    def source(self) -> str:
        """The line each tool prints: which model and why."""
        if self.version is None:
            return f"the config's model.path {self.config.model.path} ({self.why})"
        label = " ".join(filter(None, (self.version.name, self.version.version)))
        return f"deployed version {label} ({self.ref[:12]}), {self.why}"

    def to_json(self) -> dict[str, Any]:
        return {"deployed": self.deployed, "ref": self.ref,
                "name": self.version.name if self.version else None,
                "version": self.version.version if self.version else None,
                "sha256": self.ref if self.version else None,
                "path": str(self.config.model.path), "why": self.why,
                "notes": list(self.notes), "source": self.source()}


def running_model(config: AgentConfig, *, use_config: bool = False) -> RunningModel:
    """The model this box runs (see the module's docstring); `use_config`: the config's
    model.path whatever the manifest says (the tools' --config-model)."""
    if use_config:
        return RunningModel(config, CONFIG_MODEL, None, f"asked for with {CONFIG_MODEL_FLAG}")
    store = ModelStore(config.state_dir)
    try:
        manifest = read_manifest(store.manifest_path)
        pid = running_pid(config.state_dir)
        if pid is not None:
            return _live(config, store, manifest, pid)
        return _next_start(config, store, manifest)
    except FileNotFoundError:
        return RunningModel(config, CONFIG_MODEL, None, "no model deployed on this box")
    except ManifestError as exc:
        return RunningModel(
            config, CONFIG_MODEL, None, "the model manifest cannot be read",
            (f"the model manifest {store.manifest_path} is damaged ({exc}): using the "
             "config's model; the agent sets the file aside at its next start and runs the "
             "config's model too",),
            "deploy the version again if it should run; model/list shows what the agent has")
    except OSError as exc:  # the manifest or the store's folder cannot be read
        return RunningModel(
            config, CONFIG_MODEL, None, "the model store cannot be read",
            (f"cannot read {exc.filename or store.root} ({exc.strerror or exc}): using the "
             "config's model, which may not be the one the agent runs",),
            "run the tool as the agent's user (sudo -u edge-agent edge-agent ...)")


def _live(config: AgentConfig, store: ModelStore, manifest: Manifest, pid: int,
          ) -> RunningModel:
    """A running agent runs the manifest's active model: it keeps the file current."""
    notes: list[str] = []
    if manifest.active == CONFIG_MODEL:
        return RunningModel(config, CONFIG_MODEL, None,
                            f"no model deployed; the running agent, pid {pid}, runs it")
    version = manifest.find(manifest.active)
    if version is None or version.sha256 not in store.present():
        name = f"{version.name} ({version.sha256[:12]})" if version else manifest.active[:12]
        return _gone(config, store, name, f"the running agent (pid {pid})")
    why = f"the active model of the running agent, pid {pid}"
    if version.outcome is Outcome.PROBATION:
        why += ", in probation"
        notes.append(f"model {version.name} ({version.sha256[:12]}) is in probation: the "
                     "agent rolls it back if it misbehaves before the probation ends")
    if config_model_changed(config_model(config), manifest):
        notes.append(f"the config's model.path ({config.model.path}) changed since the agent "
                     f"recorded it: the agent loads it at its next reload or start "
                     f"({CONFIG_MODEL_FLAG} uses it now)")
    return RunningModel(version_config(config, store, version), version.sha256, version, why,
                        tuple(notes))


def _next_start(config: AgentConfig, store: ModelStore, manifest: Manifest) -> RunningModel:
    """No agent runs: what its next start loads, by the start rules (startup.plan_start)
    applied to this copy of the manifest, which is never saved."""
    active = manifest.active
    plan = plan_start(config, store, manifest, iso_utc(time.time()))
    notes = tuple(text for _, text in plan.notes)
    fix = ("deploy the version again, or model/rollback to one that is kept (model/list "
           "shows which are)") if any(level >= logging.ERROR for level, _ in plan.notes) else None
    ref = plan.order[0]
    version = manifest.find(ref)
    if version is None:
        why = ("no model deployed on this box" if active == CONFIG_MODEL
               else "the agent's next start goes back to it")
        return RunningModel(config, CONFIG_MODEL, None, why, notes, fix)
    why = "the manifest's active model" if ref == active else "the agent's next start goes to it"
    return RunningModel(version_config(config, store, version), ref, version,
                        f"{why} (no agent runs now)", notes, fix)


def _gone(config: AgentConfig, store: ModelStore, name: str, whose: str) -> RunningModel:
    note = (f"{whose} runs deployed model {name}, but its files are not in {store.root}: "
            "using the config's model")
    return RunningModel(config, CONFIG_MODEL, None, "the deployed model's files are gone",
                        (note,),
                        "deploy the version again, or model/rollback to one that is kept "
                        "(model/list shows which are)")
