"""Health: one snapshot of the whole agent, published retained and served as metrics.

`HealthMonitor` polls once a second: it samples the counters behind the rates, builds the
snapshot (`docs/health.md`, `docs/schemas/health.schema.json`) and publishes it on
`<prefix>/<device_id>/health` every `health.interval_s` and at once when the status or a
camera's state changes. /metrics reads the same snapshot (edge_agent.health.metrics), so the
message and the scrape never disagree.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from edge_agent import __version__
from edge_agent.clock import TRUST
from edge_agent.health.drift import DriftWatch
from edge_agent.health.parts import (
    commands_health,
    drift_health,
    engine_health,
    gate_health,
    mqtt_health,
    rounded,
    system_health,
    worker_health,
)
from edge_agent.health.snapshot import (
    SCHEMA_VERSION,
    CameraHealth,
    EndToEndLatency,
    HealthSnapshot,
    HealthStatus,
    InferenceLatency,
    QueueHealth,
    fitted_json,
)
from edge_agent.health.status import (
    DROP_WINDOW_S,
    camera_reasons,
    commands_reasons,
    mqtt_reasons,
    system_reasons,
    verdict,
)
from edge_agent.health.system_stats import SystemSnapshot, SystemStats
from edge_agent.publish.payload import iso_utc
from edge_agent.supervision import GuardedWorker, WorkerWatch
from edge_agent.workers import InjectedFaultError, Worker

if TYPE_CHECKING:
    from edge_agent.commands.stats import ChannelStats
    from edge_agent.config.model import AgentConfig, HealthConfig
    from edge_agent.pipeline_stats import PipelineStats
    from edge_agent.publish.stats import PublisherStats
    from engines.base import Engine

__all__ = ["HealthMonitor", "mqtt_reasons", "start_health", "system_reasons"]

log = logging.getLogger(__name__)

POLL_S = 1.0
RATE_WINDOW_S = 10.0
"""Input and processed fps are averaged over this long."""
MIN_PUBLISH_GAP_S = 1.0
"""A flapping camera cannot turn health into a stream."""


class PipelinePart(Protocol):
    """All health reads of a camera (edge_agent.pipeline.CameraPipeline): its stats, its
    threads, and the drift watch slot it fills when the agent did not."""

    drift: DriftWatch | None

    def stats(self) -> PipelineStats: ...

    def workers(self) -> list[Worker]: ...


class PublisherPart(Protocol):
    """All health uses of MQTT (edge_agent.publish.publisher.Publisher)."""

    def stats(self) -> PublisherStats: ...

    def workers(self) -> list[Worker]: ...

    def publish_retained(self, subtopic: str, payload: bytes) -> bool: ...

    def retained_limit(self, subtopic: str) -> int | None: ...


class CommandsPart(Protocol):
    """All health reads of the command channel (edge_agent.commands.channel.CommandChannel)."""

    def stats(self) -> ChannelStats: ...

    def workers(self) -> list[Worker]: ...


class AgentView(Protocol):
    """What health reads from the agent (edge_agent.service.agent.Agent)."""

    config: AgentConfig
    pipelines: Mapping[str, PipelinePart]
    engine: Engine | None
    backend_reason: str
    started_at: float
    started_mono: float
    publisher: PublisherPart | None
    commands: CommandsPart | None
    """None while commands.enabled is false (no channel runs)."""


@dataclass(frozen=True)
class _Workers:
    """The threads health watches: agent-wide (essential: a death fails the agent), and
    the cameras' and the command channel's (a crash degrades it)."""

    essential: list[Worker]
    others: list[Worker]

    @property
    def all(self) -> list[Worker]:
        return [*self.essential, *self.others]


class RateMeter:
    """Rate of a growing counter over the last `window_s`, from a few timed samples.

    `origin`: the monotonic time the counter started from 0, its first sample, so the
    first reading is already a rate (since the start), not 0.0 for a whole interval."""

    def __init__(self, window_s: float = RATE_WINDOW_S, origin: float | None = None) -> None:
        self.window_s = window_s
        self.origin = origin
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=256)
        if origin is not None:
            self._samples.append((origin, 0))

    def add(self, now: float, count: int) -> None:
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (then, before), (now, count) = self._samples[0], self._samples[-1]
        return (count - before) / (now - then) if now > then else 0.0

    def increase(self) -> int:
        if len(self._samples) < 2:
            return 0
        return self._samples[-1][1] - self._samples[0][1]


class HealthMonitor:
    """Builds the snapshot every POLL_S; publishes it on schedule and on change."""

    def __init__(self, agent: AgentView, system: SystemStats | None = None) -> None:
        self.agent = agent
        self.config: HealthConfig = agent.config.health
        self.system = system or SystemStats(agent.config.state_dir)
        self.published = 0
        self._problems: dict[str, str] = {}
        self._meters: dict[tuple[str, str], RateMeter] = {}
        self._mqtt_drops = RateMeter(DROP_WINDOW_S)
        self._dead_letters = RateMeter(DROP_WINDOW_S)
        self._command_drops = RateMeter(DROP_WINDOW_S)
        self._command_drops.add(time.monotonic(), 0)  # the channel starts later, from 0
        self._latest: HealthSnapshot | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.exit_reason: str | None = None
        """Set by the agent when it exits because it cannot continue: the last health says so."""
        self._worker = GuardedWorker("health", self._run)
        self._watch = WorkerWatch()
        self.metrics_server: object | None = None
        """The /metrics server when one runs (start_health); its workers count too."""

    # -- public API ------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish a last snapshot with the final counts, then end the thread.

        The cameras are stopped by then, so that snapshot alone would read "ok": it keeps
        the status and reasons seen while running (failed or degraded), and an agent that
        exits because it cannot continue says so (`exit_reason`), as its retained word.
        """
        before = self.latest()
        self._stop.set()
        self._worker.stop()
        self._worker.join(timeout)
        final = self.refresh()
        if self.exit_reason is not None:
            final = replace(final, status=HealthStatus.FAILED,
                            reasons=(self.exit_reason, *final.reasons))
        elif before is not None and before.status is not HealthStatus.OK:
            final = replace(final, status=before.status,
                            reasons=tuple(dict.fromkeys((*before.reasons, *final.reasons))))
        self._publish(final)

    def workers(self) -> list[Worker]:
        """Agent-wide threads: this monitor's and the metrics server's."""
        return [self._worker, *_workers_of(self.metrics_server)]

    def essential_workers(self) -> list[Worker]:
        """Threads without which the agent is blind or mute: health, metrics, MQTT."""
        return [*self.workers(), *_workers_of(self.agent.publisher)]

    def latest(self) -> HealthSnapshot | None:
        """The newest snapshot (at most POLL_S old); None before the first poll."""
        with self._lock:
            return self._latest

    def report_problem(self, key: str, text: str | None) -> None:
        """A degraded reason from outside (the metrics server cannot listen); None clears."""
        with self._lock:
            if text is None:
                self._problems.pop(key, None)
            else:
                self._problems[key] = text

    def refresh(self) -> HealthSnapshot:
        """Ask each part for its stats and build a new snapshot (the health thread's job).

        The agent keeps its stopped pipelines until it exits, so the last snapshot at
        shutdown still shows every camera with its final counts.
        """
        now = time.monotonic()
        pipelines = dict(self.agent.pipelines)
        self._adopt(pipelines)
        stats = {camera_id: pipeline.stats() for camera_id, pipeline in pipelines.items()}
        for camera_id, camera in stats.items():
            started = camera.camera.started_at
            self._meter(camera_id, "input", started).add(now, camera.camera.captured)
            self._meter(camera_id, "processed", started).add(now, camera.frames_processed)
        sender = self.agent.publisher
        publisher = sender.stats() if sender is not None else None
        if publisher is not None:
            self._mqtt_drops.add(now, publisher.dropped)
            self._dead_letters.add(now, publisher.dead_lettered)
        channel = self.agent.commands
        commands = channel.stats() if channel is not None else None
        if commands is not None:
            self._command_drops.add(now, commands.dropped)
        others = [w for pipeline in pipelines.values() for w in pipeline.workers()]
        workers = _Workers(self.essential_workers(),
                           [*others, *(channel.workers() if channel is not None else ())])
        snapshot = self._snapshot(stats, publisher, workers, self.system.read(), now,
                                  channel=commands)
        with self._lock:
            self._latest = snapshot
        return snapshot

    # -- internals -------------------------------------------------------------------

    def _run(self) -> None:
        last_sent = float("-inf")
        last_signature: tuple | None = None
        while not self._stop.wait(POLL_S):
            try:
                snapshot = self.refresh()
            except InjectedFaultError:
                raise  # a fault test: crash the worker, as a bug outside this guard would
            except Exception:  # a health bug must never take the agent down
                log.exception("health snapshot failed")
                continue
            signature = (snapshot.status, tuple((c.id, c.state) for c in snapshot.cameras))
            now = time.monotonic()
            due = now - last_sent >= self.config.interval_s
            changed = signature != last_signature and now - last_sent >= MIN_PUBLISH_GAP_S
            if (due or changed) and self._publish(snapshot):
                last_sent, last_signature = now, signature

    def _publish(self, snapshot: HealthSnapshot) -> bool:
        publisher = self.agent.publisher
        if publisher is None:
            return False
        sent = publisher.publish_retained(
            "health", fitted_json(snapshot, publisher.retained_limit("health"))
        )
        if sent:
            self.published += 1
        return sent

    def _adopt(self, pipelines: Mapping[str, PipelinePart]) -> None:
        """Forget cameras that are gone; a pipeline the agent did not give a drift watch
        (built outside the agent, as in tests) gets one here."""
        drift = self.config.drift
        engine = self.agent.engine
        for pipeline in pipelines.values():
            if drift.enabled and pipeline.drift is None and engine is not None:
                pipeline.drift = DriftWatch(drift, engine.info.class_names)
        for key in [k for k in self._meters if k[0] not in pipelines]:
            del self._meters[key]

    def _meter(self, camera_id: str, kind: str, started: float | None = None) -> RateMeter:
        """The camera's meter; a new one when the camera (re)started since, as its
        counters start again from 0 (a reload's restart: no negative rate)."""
        meter = self._meters.get((camera_id, kind))
        if meter is None or (started is not None and meter.origin != started):
            meter = self._meters[(camera_id, kind)] = RateMeter(origin=started)
        return meter

    def _snapshot(
        self, pipelines: dict[str, PipelineStats], publisher: PublisherStats | None,
        workers: _Workers, system: SystemSnapshot, now: float, *, channel: ChannelStats | None,
    ) -> HealthSnapshot:
        agent = self.agent
        config = agent.config
        backend, model = engine_health(
            agent.engine, agent.backend_reason, tuple(getattr(agent, "fallbacks", ()) or ())
        )
        cameras = tuple(self._camera(stats, now) for stats in pipelines.values())
        mqtt = mqtt_health(publisher, self._mqtt_drops.increase(), self._dead_letters.increase())
        commands = commands_health(channel, self._command_drops.increase())
        failed, degraded = self._watch.reasons(workers.essential, now, essential=True)
        degraded.extend(self._watch.reasons(workers.others, now, essential=False)[1])
        if agent.engine is None:
            failed.append("inference engine is not loaded")
        camera_failed, camera_degraded = camera_reasons(cameras)
        failed.extend(camera_failed)
        degraded.extend(camera_degraded)
        degraded.extend(f"backend fallback: {item}" for item in backend.fallbacks)
        degraded.extend(mqtt_reasons(mqtt))
        degraded.extend(commands_reasons(commands))
        degraded.extend(system_reasons(system, self.config, config.state_dir))
        with self._lock:
            degraded.extend(self._problems.values())
        status, reasons = verdict(failed, degraded)
        return HealthSnapshot(
            schema_version=SCHEMA_VERSION,
            timestamp=iso_utc(time.time()),
            agent_version=__version__,
            device_id=config.device_id,
            clock_synced=TRUST.synced(),
            started_at=iso_utc(agent.started_at),
            uptime_s=round(now - agent.started_mono, 1),
            status=status,
            reasons=reasons,
            backend=backend,
            model=model,
            cameras=cameras,
            mqtt=mqtt,
            system=system_health(system, config.state_dir),
            workers=tuple(worker_health(worker) for worker in workers.all),
            commands=commands,
        )

    def _camera(self, stats: PipelineStats, now: float) -> CameraHealth:
        camera = stats.camera
        last = camera.last_frame_at
        skipped, motion, ignored = gate_health(stats.gate, stats.ignored)
        return CameraHealth(
            id=camera.id,
            state=stats.state,
            input_fps=round(self._meter(camera.id, "input").rate(), 2),
            processed_fps=round(self._meter(camera.id, "processed").rate(), 2),
            frames_captured=camera.captured,
            frames_processed=stats.frames_processed,
            frames_dropped=camera.dropped,
            messages_published=stats.published,
            messages_not_delivered=stats.not_delivered,
            last_frame_age_s=None if last is None else round(max(0.0, now - last), 3),
            reconnects=camera.reconnects,
            last_error=camera.last_error,
            processing_error=stats.processing_error,
            frames_failed=stats.frames_failed,
            nonfinite_values=stats.nonfinite_values,
            output_problem=stats.output_problem,
            inference_ms=InferenceLatency(*rounded(stats.inference_ms, 3)),
            end_to_end_ms=EndToEndLatency(*rounded(stats.end_to_end_ms, 2)),
            queue=QueueHealth(frames=camera.queued, in_flight=stats.in_flight),
            drift=None if stats.drift is None else drift_health(stats.drift),
            frames_skipped=skipped, motion_active=motion, detections_ignored=ignored,
            events=stats.events,
        )


def start_health(agent: AgentView, stack: contextlib.ExitStack) -> HealthMonitor:
    """Start health messages and /metrics; they stop (in reverse) when `stack` unwinds."""
    from edge_agent.health.metrics import MetricsServer  # prometheus_client only when started

    monitor = HealthMonitor(agent)
    monitor.start()
    stack.callback(monitor.stop)
    address = agent.config.health.metrics_address
    if address:
        server = MetricsServer(monitor, address)
        server.start()
        monitor.metrics_server = server
        stack.callback(server.stop)
    return monitor


def _workers_of(component: object | None) -> list[Worker]:
    """A component's `workers()`, or none where it has no such method (yet)."""
    workers = getattr(component, "workers", None)
    return list(workers()) if callable(workers) else []
