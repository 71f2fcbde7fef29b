"""The model lifecycle on the box: deploy (fetch, verify, load beside, validate, swap,
probation), rollback, list. docs/models.md tells the story; this module runs it.

A deploy or rollback runs on the caller's thread (a command handler) and reports each step
through `progress`; at most one runs at a time. The manifest is saved before and after
every step that changes what runs, so a power cut at any point leaves a model that loads
(edge_agent.models.startup decides which).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.config.model import AgentConfig
from edge_agent.models.acquire import DeployRequest, acquire
from edge_agent.models.checks import Counters, ModelRejectedError, probation_problem, validate
from edge_agent.models.fetch import FetchError
from edge_agent.models.host import (
    LifecycleError,
    ModelHost,
    counters,
    wait_all,
)
from edge_agent.models.manifest import (
    CONFIG_MODEL,
    Manifest,
    ModelVersion,
    Outcome,
    describe,
    load_manifest,
    outcome_record,
    save_manifest,
)
from edge_agent.models.startup import select_at_start, version_config
from edge_agent.models.store import ModelStore, StoreError, artifact_suffix
from edge_agent.publish.payload import iso_utc
from edge_agent.selection.loading import Selection, detection_filter, select_engine
from edge_agent.selection.probe import HardwareReport
from engines.base import Engine
from engines.postprocess import DetectionFilter

log = logging.getLogger(__name__)

Progress = Callable[..., None]
"""progress(step, **fields): one step of a deploy or rollback, published at once."""
PROBATION_TICK_S = 0.5


class ModelManager:
    """Owns the store and manifest; swaps engines on a ModelHost."""

    def __init__(self, state_dir: Path) -> None:
        self.store = ModelStore(state_dir)
        self.manifest = Manifest()
        self.active_ref = CONFIG_MODEL
        self.last_outcome: dict[str, Any] | None = None
        self.step: str | None = None
        self._busy = threading.Lock()
        self._mutex = threading.RLock()
        self._host: ModelHost | None = None
        self._report: HardwareReport | None = None
        self._held: Engine | None = None
        """The previous engine, kept loaded during probation for an instant rollback."""
        self._kept_before: set[str] = set()
        """Versions on disk when the running deploy began: a failed redeploy keeps them."""
        self._superseded = threading.Event()
        """Set by a reload that loaded the config's model: a probation running ends."""

    # -- start and stop ------------------------------------------------------------------

    def start(self, config: AgentConfig, report: HardwareReport,
              config_path: Path | None) -> Selection:
        """The engine to start with (startup rules); the manifest is saved."""
        self.store.prepare()
        self.store.clean_leftovers()
        self._report = report
        with self._mutex:
            self.manifest = load_manifest(self.store.manifest_path)
            selection, self.active_ref = select_at_start(
                config, report, config_path, store=self.store, manifest=self.manifest,
                now=_now())
            self._save()
        return selection

    def attach(self, host: ModelHost) -> None:
        self._host = host

    def close(self) -> None:
        """At stop, after the cameras: close an engine held for rollback."""
        held, self._held = self._held, None
        if held is not None and (self._host is None or held is not self._host.engine):
            held.close()

    # -- what others read ----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The retained info's `models` object (docs/schemas/info.schema.json)."""
        with self._mutex:
            return {"active": describe(self.manifest, self.manifest.active),
                    "previous": describe(self.manifest, self.manifest.previous),
                    "step": self.step, "last_outcome": self.last_outcome}

    def listing(self) -> dict[str, Any]:
        """model/list: every version the manifest knows, newest first, and which are kept."""
        with self._mutex:
            present = self.store.present()
            versions = [{**v.to_json(), "kept": v.sha256 in present}
                        for v in reversed(self.manifest.versions)]
            return {**self.info(), "config_model": self.manifest.config_model,
                    "versions": versions}

    def reload_reference(self, engine_sha256: str) -> str:
        """The hash a reload compares the config's model with: while a deployed version
        runs, the config's model as recorded, so only a real config change replaces it."""
        with self._mutex:
            if self.active_ref != CONFIG_MODEL and self.manifest.config_model:
                return self.manifest.config_model["sha256"]
            return engine_sha256

    def config_model_took_over(self, config: AgentConfig) -> None:
        """A reload loaded the config's changed model: it is now the active one."""
        from edge_agent.models.startup import config_model
        self._superseded.set()
        with self._mutex:
            if self.active_ref != CONFIG_MODEL:
                self.manifest.previous = self.active_ref
            self.manifest.active = self.active_ref = CONFIG_MODEL
            self.manifest.config_model = config_model(config)
            self._save()

    # -- deploy --------------------------------------------------------------------------

    def deploy(self, request: DeployRequest, progress: Progress,
               stopping: threading.Event) -> dict[str, Any]:
        """Run a deploy to its end; the final result's fields. Raises LifecycleError."""
        if not self._busy.acquire(blocking=False):
            raise LifecycleError(f"another model change is running ({self.step})",
                                 rejected=True, kind="busy")
        try:
            return self._deploy(request, progress, stopping)
        finally:
            self._done()

    def _deploy(self, request: DeployRequest, progress: Progress,
                stopping: threading.Event) -> dict[str, Any]:
        host = self._need_host()
        config = host.config
        source = request.url or str(request.path)
        try:
            suffix = artifact_suffix(source)
        except StoreError as exc:
            raise LifecycleError(str(exc), rejected=True) from exc
        if request.sha256 == self.active_ref:
            raise LifecycleError(f"{request.sha256[:12]} is already the active model",
                                 rejected=True)
        name = request.name or Path(source.split("?", 1)[0]).stem or request.sha256[:12]
        version = ModelVersion(
            sha256=request.sha256, name=name, version=request.version, source=source,
            file="", labels=list(request.labels) if request.labels else None, added=_now())
        with self._mutex:
            self._kept_before = self.store.present()
            self.manifest.put(version)
            self._save()
        try:
            def step(name: str, **fields: Any) -> None:
                self._step(progress, name, **fields)

            try:
                version.file = acquire(self.store, request, suffix, config.models,
                                       step=step, stopping=stopping)
            except (FetchError, StoreError, OSError) as exc:
                raise LifecycleError(str(exc), rejected=True) from exc
            selection, options, validation = self._load_and_validate(version, config, progress)
        except LifecycleError as exc:
            self._finish(version, Outcome.REJECTED, exc.reason)
            exc.fields.setdefault("model", version.to_json())
            raise
        return self._swap_and_watch(version, selection, options, validation,
                                    progress=progress, stopping=stopping)

    def _load_and_validate(self, version: ModelVersion, config: AgentConfig,
                           progress: Progress) -> tuple[Selection, DetectionFilter, Any]:
        host = self._need_host()
        self._step(progress, "loading")
        wanted = version_config(config, self.store, version)
        try:
            selection = select_engine(wanted, self._report_now(), host.config_path)
        except Exception as exc:  # any load failure is this model's fault, not the box's
            raise LifecycleError(f"does not load: {exc}", rejected=True) from exc
        try:
            options = detection_filter(config.model, selection.engine.info.class_names)
            self._step(progress, "validating", cameras=sorted(host.pipelines))
            recent = {cam: p.recent.snapshot()[-config.models.validation_frames:]
                      for cam, p in list(host.pipelines.items())}
            validation = validate(selection.engine, options, recent,
                                  config.models.min_detection_ratio)
        except Exception as exc:
            selection.engine.close()
            reason = str(exc) if isinstance(exc, ModelRejectedError) else (
                f"validation failed: {type(exc).__name__}: {exc}")
            raise LifecycleError(reason, rejected=True) from exc
        self._step(progress, "validated", frames=validation.frames, cameras=validation.cameras,
                   inference_ms=round(validation.inference_ms, 2))
        return selection, options, validation

    def _swap_and_watch(self, version: ModelVersion, selection: Selection,
                        options: DetectionFilter, validation: Any, *, progress: Progress,
                        stopping: threading.Event) -> dict[str, Any]:
        host = self._need_host()
        config = host.config
        old_engine, old_options, old_ref = host.engine, host.options, self.active_ref
        baseline_infer = {cam: p.times.totals["infer"] / p.times.frames
                          for cam, p in list(host.pipelines.items()) if p.times.frames}
        self._superseded.clear()
        try:  # the manifest follows the swap: a power cut in between restarts on the old
            drained = host.use_model(selection, options)
        except Exception as exc:  # the main loop is stopping: nothing was swapped
            selection.engine.close()
            self._finish(version, Outcome.REJECTED, f"not swapped: {exc}")
            raise LifecycleError(f"not swapped: {exc}", rejected=False, kind="unavailable",
                                 model=version.to_json()) from exc
        with self._mutex:
            self._held = old_engine
            version.activated, version.outcome = _now(), Outcome.PROBATION
            version.replaced = old_ref  # a restart during probation goes back to it
            self.manifest.active = self.active_ref = version.sha256
            self._save()
        host.publish_info()
        wait_all(drained)
        at_swap = counters(host)  # from here on every frame is the new model's
        self._step(progress, "swapped", probation_s=config.models.probation_s)
        problem = self._probation(validation, baseline_infer, at_swap, stopping)
        if self._superseded.is_set():
            self._close_held(old_engine)
            self._finish(version, Outcome.ROLLED_BACK, "a reload loaded the config's model")
            raise LifecycleError("superseded: a reload loaded the config's model.path during "
                                 "probation", rejected=False, model=version.to_json())
        if problem is None and stopping.is_set():
            raise LifecycleError("the agent is stopping during probation: the next start "
                                 "goes back to the previous model", rejected=False,
                                 kind="unavailable", model=version.to_json())
        if problem is not None:
            self._step(progress, "rolling_back", reason=problem)
            self._swap_back(old_ref, old_engine, old_options, selection.engine)
            self._finish(version, Outcome.ROLLED_BACK, f"probation: {problem}")
            raise LifecycleError(f"rolled back: {problem}", rejected=False,
                                 model=version.to_json(), active=self.info()["active"])
        self._close_held(old_engine)
        self._finish(version, Outcome.OK, None)
        self._prune(config.models.keep)
        return {"model": version.to_json(), "active": self.info()["active"],
                "previous": self.info()["previous"]}

    def _probation(self, validation: Any, baseline_infer: dict[str, float],
                   at_swap: dict[str, Counters], stopping: threading.Event) -> str | None:
        """Watch until the window ends, a problem shows, the agent stops or a reload
        replaces the model; the problem or None."""
        host = self._need_host()
        config = host.config
        deadline = time.monotonic() + config.models.probation_s
        while not stopping.is_set() and not self._superseded.is_set():
            final = time.monotonic() >= deadline
            problem = probation_problem(validation.baseline_rates(), baseline_infer,
                                        at_swap=at_swap, now=counters(host),
                                        config=config.models, drift=config.health.drift,
                                        final=final)
            if problem or final:
                return problem
            stopping.wait(PROBATION_TICK_S)
        return None

    def _swap_back(self, old_ref: str, old_engine: Engine | None,
                   old_options: DetectionFilter | None, new_engine: Engine) -> None:
        host = self._need_host()
        assert old_engine is not None
        assert old_options is not None
        drained = host.use_model(Selection(old_engine, "the previous model (rolled back)"),
                                 old_options)
        with self._mutex:
            self._held = None
            self.manifest.active = self.active_ref = old_ref
            self._save()
        host.publish_info()
        wait_all(drained)
        new_engine.close()

    # -- rollback ------------------------------------------------------------------------

    def rollback(self, target: str | None, progress: Progress) -> dict[str, Any]:
        """Go to `target` (a kept sha256 or CONFIG_MODEL) or the previous version; the
        version left is marked rolled back. Raises LifecycleError."""
        if not self._busy.acquire(blocking=False):
            raise LifecycleError(f"another model change is running ({self.step})",
                                 rejected=True, kind="busy")
        try:
            return self._rollback(target, progress)
        finally:
            self._done()

    def _rollback(self, target: str | None, progress: Progress) -> dict[str, Any]:
        host = self._need_host()
        config = host.config
        with self._mutex:
            try:
                wanted = self.manifest.rollback_target(target, self.store.present())
            except LookupError as exc:
                raise LifecycleError(str(exc), rejected=True, kind="not_found") from exc
            except ValueError as exc:
                raise LifecycleError(str(exc), rejected=True) from exc
            version = self.manifest.find(wanted)
        self._step(progress, "loading", target=wanted)
        wanted_config = config if version is None else version_config(config, self.store,
                                                                      version)
        try:
            selection = select_engine(wanted_config, self._report_now(), host.config_path)
            options = detection_filter(config.model, selection.engine.info.class_names)
        except Exception as exc:
            raise LifecycleError(f"{wanted[:12]} does not load: {exc}", rejected=False) from exc
        old_engine, left = host.engine, self.active_ref
        try:
            drained = host.use_model(selection, options)
        except Exception as exc:  # the main loop is stopping: nothing was swapped
            selection.engine.close()
            raise LifecycleError(f"not swapped: {exc}", rejected=False,
                                 kind="unavailable") from exc
        with self._mutex:
            left_version = self.manifest.find(left)
            if left_version is not None:
                left_version.outcome = Outcome.ROLLED_BACK
                left_version.reason = "rolled back by model/rollback"
            if version is not None:
                version.outcome, version.activated = Outcome.OK, _now()
            self.manifest.active = self.active_ref = wanted
            self.last_outcome = outcome_record(left_version, "rolled_back",
                                         "rolled back by model/rollback")
            self._save()
        host.publish_info()
        wait_all(drained)
        self._close_held(old_engine)
        self._step(progress, "swapped")
        return {"active": self.info()["active"], "previous": self.info()["previous"],
                "left": left}

    def _done(self) -> None:
        """A deploy or rollback ended: no step any more, in info too."""
        self.step = None
        self._busy.release()
        if self._host is not None:
            self._host.publish_info()

    # -- helpers -------------------------------------------------------------------------

    def _need_host(self) -> ModelHost:
        if self._host is None:
            raise LifecycleError("the agent is not running yet", rejected=True,
                                 kind="unavailable")
        return self._host

    def _report_now(self) -> HardwareReport:
        if self._report is None:
            from edge_agent.selection.probe import probe
            self._report = probe()
        return self._report

    def _step(self, progress: Progress, step: str, **fields: Any) -> None:
        """One step: logged, on the result topic, and (but for each downloaded second)
        in the retained info's `models.step`."""
        changed, self.step = step != self.step, step
        log.info("model change: %s %s", step, fields or "")
        progress(step, **fields)
        if changed and self._host is not None:
            self._host.publish_info()

    def _close_held(self, engine: Engine | None) -> None:
        if engine is not None and self._host is not None and engine is not self._host.engine:
            engine.close()
        self._held = None

    def _finish(self, version: ModelVersion, outcome: Outcome, reason: str | None) -> None:
        """Record how a deploy ended; a failed version's files go unless they were on the
        box before this deploy (a kept version deployed again)."""
        with self._mutex:
            version.outcome, version.reason = outcome, reason
            self.last_outcome = outcome_record(version, outcome.value, reason)
            kept = {self.active_ref, *self.manifest.rollback_targets(self.store.present()),
                    *self._kept_before}
            if outcome is not Outcome.OK and version.sha256 not in kept:
                self.store.remove_folder(version.sha256)  # a partial download stays
            self._save()
        if self._host is not None:
            self._host.publish_info()
        log.log(logging.INFO if outcome is Outcome.OK else logging.WARNING,
                "model %s (%s): %s%s", version.name, version.sha256[:12], outcome.value,
                f": {reason}" if reason else "")

    def _prune(self, keep: int) -> None:
        """Keep the active version and the `keep` latest good ones; remove other folders."""
        with self._mutex:
            targets = [t for t in self.manifest.rollback_targets(self.store.present())
                       if t != CONFIG_MODEL]
            kept = {self.active_ref, *targets[:keep]}
            for sha256 in self.store.present() - kept:
                log.info("model %s: no longer kept (models.keep %d)", sha256[:12], keep)
                self.store.remove(sha256)
            self._save()

    def _save(self) -> None:
        active = self.manifest.find(self.manifest.active)
        if active is not None and active.outcome is Outcome.PROBATION and active.replaced:
            # In probation the previous is the model it replaced, whatever became of it.
            self.manifest.previous = active.replaced
        else:
            targets = self.manifest.rollback_targets(self.store.present())
            self.manifest.previous = targets[0] if targets else None
        save_manifest(self.store.manifest_path, self.manifest)


def _now() -> str:
    return iso_utc(time.time())
