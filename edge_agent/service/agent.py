"""The agent's lifecycle: start components in order, stop them in reverse, on a signal."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path

from edge_agent import __version__
from edge_agent.batching import with_batching
from edge_agent.camera_filter import check_classes
from edge_agent.capture.camera import Camera
from edge_agent.capture.state import CameraState
from edge_agent.commands.channel import CommandChannel
from edge_agent.config.loader import load_config
from edge_agent.config.model import AgentConfig, CameraConfig
from edge_agent.delivery.camera import CameraDelivery, warn_if_events_can_be_lost
from edge_agent.delivery.removed import RemovedTopics
from edge_agent.errors import ConfigError
from edge_agent.health.drift import DriftWatch
from edge_agent.health.monitor import HealthMonitor, start_health
from edge_agent.homeassistant.announce import DiscoveryAnnouncer
from edge_agent.models.lifecycle import ModelManager
from edge_agent.pipeline import CameraPipeline
from edge_agent.publish.camera_state import CameraStates
from edge_agent.publish.payload import info_payload, iso_utc
from edge_agent.publish.publisher import Publisher
from edge_agent.redact import redact
from edge_agent.selection.int8 import Int8Status, apply_int8
from edge_agent.selection.loading import Selection, detection_filter, select_engine
from edge_agent.selection.probe import probe
from edge_agent.selection.report import summary_line
from edge_agent.service import state_files
from edge_agent.service.agent_box import MainLoopTasks, start_commands
from edge_agent.service.notify import Notifier, ProgressWatchdog
from edge_agent.service.reload_plan import ReloadPlan, plan_reload
from edge_agent.service.signals import SignalReceiver
from edge_agent.supervision import is_broken
from edge_agent.workers import Worker, inject_faults_from_environment
from engines.base import Engine
from engines.errors import EngineError
from engines.postprocess import DetectionFilter

log = logging.getLogger(__name__)
INT8_BUILD_S = 1800.0
"""How long systemd should wait for an INT8 build at start (a few minutes on 2 cores)."""

MODEL_SWAP_S = 120.0
"""A swap waits for the main loop, which may be busy loading a model for a reload."""


class Agent:
    """Owns the engine, the publisher and one capture + pipeline per enabled camera."""

    def __init__(self, config: AgentConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.pipelines: dict[str, CameraPipeline] = {}
        self.signals = SignalReceiver()
        self.notifier = Notifier.from_environment()
        self.watchdog = ProgressWatchdog.from_environment(self.notifier)
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.engine: Engine | None = None
        self.backend_reason = ""
        self.fallbacks: tuple[str, ...] = ()
        self.int8: Int8Status | None = None  # backend.precision int8: what became of it
        self._next_int8: Int8Status | None = None
        self.options: DetectionFilter | None = None
        self.publisher: Publisher | None = None
        self.last_reload: dict[str, object] | None = None
        self.camera_states: CameraStates | None = None
        self.removed_topics: RemovedTopics | None = None
        self.health: HealthMonitor | None = None
        self.commands: CommandChannel | None = None
        """The command channel while commands.enabled (health reads its stats())."""
        self.discovery: DiscoveryAnnouncer | None = None
        self._next_sequence: dict[str, int] = {}
        self.models = ModelManager(config.state_dir)
        self.tasks = MainLoopTasks(self.signals.wake)
        """Work other threads (commands) hand to the main loop."""
        self._status_text = ""

    def run(self) -> int:
        """Run until SIGTERM/SIGINT, until every camera's file has played (0), or until
        the agent cannot go on (1: systemd's Restart=on-failure starts it afresh)."""
        config = self.config
        with contextlib.ExitStack() as stack:
            stack.enter_context(state_files.exclusive(config.state_dir))
            report = probe()
            log.info("hardware: %s", summary_line(report))
            # The deployed model, or the config's (edge_agent.models); its INT8 build where
            # backend.precision is int8 and the guard passed it; batched if configured.
            selection = self.models.start(config, report, self.config_path)
            try:
                selection, self.int8 = apply_int8(config, selection, self._int8_progress)
                selection = with_batching(selection, config)
                check_classes(config, selection.engine.info.class_names, self.config_path)
                self._use(selection,
                          detection_filter(config.model, selection.engine.info.class_names))
            except BaseException:  # a failed start closes its engine: no thread left behind
                selection.engine.close()
                raise
            stack.callback(lambda: self.engine and self.engine.close())
            self.models.attach(self)
            stack.callback(self.models.close)

            publisher = Publisher(config.mqtt, config.device_id, config.state_dir)
            publisher.start()
            self.publisher = publisher
            stack.callback(publisher.close)
            self.camera_states = CameraStates(publisher)
            self.removed_topics = RemovedTopics(publisher)
            warn_if_events_can_be_lost(config)
            self._publish_info()
            self.discovery = DiscoveryAnnouncer(publisher, config.state_dir)
            self._announce()
            self.health = start_health(self, stack)  # stops before the publisher closes
            state_files.write_pid(config.state_dir)
            stack.callback(state_files.remove_pid, config.state_dir)

            stack.callback(self._stop_cameras)
            cameras = [cam for cam in config.cameras if cam.enabled]
            for camera_config in cameras:
                self._start_camera(camera_config)
            engine = selection.engine
            summary = f"{len(cameras)} camera(s) on {engine.backend}/{engine.device}"
            log.info("running %s: %s", summary, ", ".join(c.id for c in cameras))
            self.commands = start_commands(self, self.tasks, stack)  # stops before cameras
            self.notifier.ready(status=f"running {summary}")
            inject_faults_from_environment()  # fault-injection tests only
            code = self._wait()
            log.info("stopping")
            self.notifier.stopping()
        log.info("stopped%s", f" with exit status {code}" if code else "")
        return code

    def workers(self) -> list[Worker]:
        """Every thread the agent relies on: cameras, health, metrics, MQTT."""
        cameras = [worker for p in self.pipelines.values() for worker in p.workers()]
        agent_wide = self.health.essential_workers() if self.health is not None else []
        return [*agent_wide, *cameras]

    def _use(self, selection: Selection, options: DetectionFilter) -> None:
        engine = selection.engine
        self.engine, self.options = engine, options
        self.backend_reason, self.fallbacks = selection.reason, selection.fallbacks
        log.info("%s on %s (%s)", engine.backend, engine.device, selection.reason)

    def use_model(self, selection: Selection, options: DetectionFilter) -> list[threading.Event]:
        """A deploy or rollback (edge_agent.models, a command thread): the new engine for
        cameras started from now on, and for each running pipeline at its next frame
        boundary; each event is set when that camera has no frame of the old engine in
        flight. Runs on the main loop, so it never races a reload or camera restart."""
        return self.tasks.call(lambda: self._use_model(selection, options), MODEL_SWAP_S)

    def _use_model(self, selection: Selection, options: DetectionFilter) -> list[threading.Event]:
        self._use(selection, options)
        swapped = [p.use_engine(selection.engine, options) for p in self.pipelines.values()]
        self._announce()  # entities name the new model's classes (a no-op for the same ones)
        return swapped

    def publish_info(self) -> None:
        self._publish_info()

    def _publish_info(self) -> None:
        engine, config = self.engine, self.config
        if engine is None or self.publisher is None:
            return
        self.publisher.publish_info(
            info_payload(
                version=__version__,
                device_id=config.device_id,
                started_at=self.started_at,
                backend=engine.backend,
                device=engine.device,
                backend_reason=self.backend_reason,
                fallbacks=self.fallbacks,
                model=engine.info,
                input_spec=engine.input,
                cameras=[(cam.id, cam.type) for cam in config.cameras if cam.enabled],
                config_path=str(self.config_path) if self.config_path else None,
                last_reload=self.last_reload,
                input_shapes=engine.input_shapes.describe() if engine.input_shapes else None,
                models=self.models.info(),
                int8=self.int8.as_info() if self.int8 else None,
            )
        )

    def _start_camera(self, camera_config: CameraConfig) -> None:
        # run() sets these before any camera starts.
        assert self.engine is not None
        assert self.options is not None
        assert self.publisher is not None
        # Sequences continue across restarts of a camera, so consumers never see one twice.
        first = self._next_sequence.get(camera_config.id, 0)
        camera = Camera(camera_config, first_sequence=first)
        pipeline = CameraPipeline(camera, self.engine, self.publisher, self.options)
        pipeline.delivery = CameraDelivery(camera_config, self.engine.info.class_names,
                                           self.publisher, self.config.state_dir)
        if self.removed_topics is not None:  # a camera of this id was removed earlier
            self.removed_topics.camera_started(camera_config.id, pipeline.delivery)
        drift = self.config.health.drift
        if drift.enabled:  # from the first frame, so the baseline is the camera's start
            pipeline.drift = DriftWatch(drift, self.engine.info.class_names)
        self.pipelines[camera_config.id] = pipeline
        if self.camera_states is not None:  # STARTING goes out before the first open
            self.camera_states.update(self.pipelines)
        pipeline.start()
        camera.start()

    def _stop_camera(self, camera_id: str, *, removed: bool = False) -> None:
        """Stop one camera; its visits end with exits, a removed one's topics are deleted."""
        pipeline = self.pipelines.pop(camera_id)
        pipeline.stop()
        pipeline.end_visits("camera_removed" if removed else "camera_restarted", removed=removed)
        if removed and self.removed_topics is not None:  # the deletes the broker missed
            self.removed_topics.camera_removed(camera_id, pipeline.delivery)
        self._next_sequence[camera_id] = pipeline.camera.next_sequence

    def restart_camera(self, camera_config: CameraConfig) -> None:
        """Stop one camera's capture and pipeline and start them again (main loop only)."""
        self._stop_camera(camera_config.id)
        self._start_camera(camera_config)

    def _stop_cameras(self) -> None:
        """All captures stop at once; then each pipeline drains what it already has."""
        for pipeline in self.pipelines.values():
            pipeline.camera.request_stop()
        # Kept in `pipelines`, so the last health message still shows every camera.
        for pipeline in self.pipelines.values():
            pipeline.stop()
        for pipeline in self.pipelines.values():  # visits end: exits, occupancy 0
            pipeline.end_visits("agent_stopped")
        if self.camera_states is not None:  # retained: STOPPED, not the last RUNNING
            self.camera_states.update(self.pipelines)

    def _wait(self) -> int:
        """The main loop; returns the exit status."""
        while True:
            received = self.signals.wait(0.5)
            # WATCHDOG=1 only while frames flow: a hung engine or dead loop gets restarted.
            self.watchdog.beat(sum(p.frames_handled for p in self.pipelines.values()))
            if self.camera_states is not None:
                self.camera_states.update(self.pipelines)
            self._report_status()
            if self.discovery is not None:
                self.discovery.flush()
            if self.removed_topics is not None:
                self.removed_topics.flush()
            for pipeline in self.pipelines.values():  # retained states need no frame
                if pipeline.delivery is not None:
                    pipeline.delivery.flush_retained()
            for signum in received:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("received %s", signal.Signals(signum).name)
                    return 0
                self.reload_now()
            self.tasks.run_pending()
            problem = self._cannot_continue()
            if problem:
                if self.camera_states is not None:  # the last word: which camera FAILED
                    self.camera_states.update(self.pipelines)
                log.critical(
                    "cannot continue: %s; exiting with status 1 so that systemd restarts "
                    "the agent", problem,
                )
                if self.health is not None:
                    self.health.exit_reason = f"agent exited with status 1: {problem}"
                return 1
            if all(pipeline.finished for pipeline in self.pipelines.values()):
                log.info("every camera has played its video file to the end")
                return 0

    def _cannot_continue(self) -> str | None:
        """Why the agent must exit non-zero: an agent-wide worker (health, metrics, MQTT)
        is dead, or no camera can work any more and at least one of them failed.

        A camera counts as done only when its file played to the end; a live camera
        never finishes, so a dead camera worker is never mistaken for success.
        """
        essential = self.health.essential_workers() if self.health is not None else []
        for worker in essential:
            if is_broken(worker):
                return f"worker {worker.name} is dead ({worker.last_error})"
        pipelines = self.pipelines.values()
        failed = [p for p in pipelines if p.broken]
        if failed and all(p.broken or p.finished for p in pipelines):
            details = "; ".join(p.camera.last_error or p.camera.id for p in failed)
            return f"every camera has stopped and {len(failed)} failed: {details}"
        return None

    def _report_status(self) -> None:
        """systemctl status shows one line: cameras running, and which are not, and why."""
        engine = self.engine
        states = {cid: p.state for cid, p in self.pipelines.items()}
        running = sum(state is CameraState.RUNNING for state in states.values())
        text = f"{running}/{len(states)} cameras running"
        if engine is not None:
            text += f" on {engine.backend}/{engine.device}"
        down = [f"{cid} {state}" for cid, state in states.items()
                if state is not CameraState.RUNNING]
        if down:
            text += "; " + ", ".join(down)
        if self.publisher is not None and not self.publisher.connected:
            text += f"; MQTT down, {self.publisher.queued} in the spool"
        if text != self._status_text:
            self._status_text = text
            self.notifier.status(text)

    def reload_now(self) -> dict[str, object]:
        """SIGHUP's path (main loop only): reload, telling systemd; the outcome record."""
        self.notifier.reloading()
        self.reload()
        self.notifier.ready()
        return dict(self.last_reload or {})

    def reload(self) -> None:
        """Validate the file first; then apply only what changed.

        An invalid file, or a new model that does not load, keeps everything running as
        it was. Camera changes restart only those cameras; a model or backend change
        loads the new engine first and swaps it in; MQTT, device_id, state_dir and health
        changes need a restart (`systemctl restart edge-agent`), and the outcome says so.
        """
        if self.config_path is None or self.engine is None:
            return
        swap: Selection | None = None
        try:
            new = load_config(self.config_path)
            running = self.int8.model_sha256 if self.int8 and self.int8.running else None
            plan = plan_reload(self.config, new,
                               self.models.reload_reference(running or self.engine.info.sha256))
            swap = self._load_new_model(new) if plan.model_changed else None
            engine = swap.engine if swap is not None else self.engine
            check_classes(new, engine.info.class_names, self.config_path)  # with FILE:LINE
            options = detection_filter(new.model, engine.info.class_names)
        except Exception as exc:  # whatever goes wrong, the running config stays in service
            if swap is not None:
                swap.engine.close()
            if not isinstance(exc, ConfigError | EngineError):
                log.exception("reload failed unexpectedly")
            log.error("reload rejected, the running config stays in service:\n%s", exc)
            self._reloaded(ok=False, error=str(exc) or type(exc).__name__, applied=[])
            return
        discovery_changed = new.homeassistant != self.config.homeassistant
        applied = self._apply(plan, swap, options)
        if discovery_changed:  # sent by _reloaded -> _announce
            applied.append(f"homeassistant (enabled: {new.homeassistant.enabled})")
        if swap is not None:  # the config's model replaced a deployed one (docs/models.md)
            self.models.config_model_took_over(plan.kept)
        log.info("reload applied: %s", "; ".join(applied) or "nothing changed")
        self._reloaded(ok=True, error=None, applied=applied)

    def _apply(
        self, plan: ReloadPlan, swap: Selection | None, options: DetectionFilter
    ) -> list[str]:
        """Stop what goes or changes, swap the engine, start what is new; what was done."""
        applied = list(plan.needs_restart_notes)
        for camera_id in plan.cameras_removed:
            if camera_id in self.pipelines:
                log.info("reload: stopping camera %s (removed or disabled)", camera_id)
                self._stop_camera(camera_id, removed=True)
        restart = set(plan.cameras_changed)
        if swap is not None or plan.filter_changed:
            restart |= {cam.id for cam in plan.kept.cameras if cam.enabled}
        if plan.log_level_changed:
            logging.getLogger().setLevel(plan.kept.log_level.upper())
            applied.append(f"log_level {plan.kept.log_level}")
        for camera_id in [c for c in self.pipelines if c in restart]:
            log.info("reload: stopping camera %s", camera_id)
            self._stop_camera(camera_id)
        if swap is not None and self.engine is not None:
            old = self.engine
            self._use(swap, options)
            self.int8 = self._next_int8
            old.close()
            applied.append(f"model {swap.engine.info.name} ({swap.engine.info.sha256[:12]})")
        self.options = options
        previous = {camera.id: camera for camera in self.config.cameras}
        self.config = plan.kept
        for camera in self.config.cameras:
            if camera.enabled and camera.id in restart and camera.id not in self.pipelines:
                log.info("reload: starting camera %s", camera.id)
                self._start_camera(camera)
        applied += [f"camera {c} restarted" for c in sorted(restart) if c in self.pipelines]
        applied += self._retune(plan.cameras_retuned, restart, previous)
        applied += [f"camera {c} removed" for c in plan.cameras_removed]
        if self.camera_states is not None:
            self.camera_states.forget(plan.cameras_removed)
        return applied

    def _retune(
        self, camera_ids: tuple[str, ...], restarted: set[str],
        previous: dict[str, CameraConfig],
    ) -> list[str]:
        """Apply in-place camera edits (reload_plan.IN_PLACE_CAMERA_FIELDS) to the running
        camera: detect and masks to its pipeline, zones, lines, tracker, snapshots and
        publish to its events delivery. Its capture and other cameras go on undisturbed."""
        applied = []
        for camera in self.config.cameras:
            pipeline = self.pipelines.get(camera.id)
            if camera.id not in camera_ids or camera.id in restarted or pipeline is None:
                continue
            old = previous.get(camera.id)
            if old is None or (old.detect, old.masks) != (camera.detect, camera.masks):
                pipeline.retune(camera)
                applied.append(f"camera {camera.id} detect/masks applied in place")
            events = ("zones", "lines", "tracker", "publish", "snapshots")
            changed = old is None or any(getattr(old, k) != getattr(camera, k) for k in events)
            if changed and pipeline.delivery is not None:
                pipeline.delivery.reconfigure(camera)
                applied.append(f"camera {camera.id} events reconfigured")
        return applied

    def _load_new_model(self, new: AgentConfig) -> Selection:
        """The new engine, loaded while the old one keeps serving; raises on failure."""
        log.info("reload: loading model %s", new.model.path)
        swap, self._next_int8 = apply_int8(new, select_engine(new, probe(), self.config_path),
                                           self._int8_progress)
        return with_batching(swap, new)

    def _int8_progress(self, text: str) -> None:
        """An INT8 build at start takes minutes: tell systemd what runs, and to wait."""
        self.notifier.status(text)
        self.notifier.extend_timeout(INT8_BUILD_S)

    def _reloaded(self, *, ok: bool, error: str | None, applied: list[str]) -> None:
        """Record the outcome: log, retained info, and the file `edge-agent reload` reads."""
        error = redact(error) if error else error  # goes to a file and the retained info
        self.last_reload = {"at": iso_utc(time.time()), "ok": ok, "error": error,
                            "applied": applied}
        state_files.write_reload_result(self.config.state_dir, self.last_reload)
        self._publish_info()
        self._announce()

    def _announce(self) -> None:
        """Home Assistant discovery for the running config (docs/homeassistant.md)."""
        if self.discovery is not None and self.engine is not None:
            self.discovery.announce(self.config, self.engine.info.class_names,
                                    f"{self.engine.backend}/{self.engine.device}")
            self.discovery.flush()
