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
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent import __version__
from edge_agent.clock import TRUST
from edge_agent.health.drift import DriftWatch
from edge_agent.health.system_stats import UNRELIABLE_SENSORS, SystemSnapshot, SystemStats
from edge_agent.publish.payload import iso_utc
from edge_agent.supervision import GuardedWorker, WorkerWatch
from edge_agent.workers import InjectedFaultError, Worker

if TYPE_CHECKING:
    from edge_agent.config.model import AgentConfig, HealthConfig
    from edge_agent.pipeline import CameraPipeline
    from edge_agent.publish.publisher import Publisher
    from engines.base import Engine

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
POLL_S = 1.0
RATE_WINDOW_S = 10.0
"""Input and processed fps are averaged over this long."""
DROP_WINDOW_S = 60.0
"""MQTT drops within this long make the agent degraded."""
MIN_PUBLISH_GAP_S = 1.0
"""A flapping camera cannot turn health into a stream."""
FAILING_STATES = frozenset({"BACKOFF", "FAILED", "FATAL"})

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Compact like the detection payloads; NaN is refused rather than sent as invalid JSON."""


class AgentView(Protocol):
    """What health reads from the agent (edge_agent.service.agent.Agent)."""

    config: AgentConfig
    pipelines: dict[str, CameraPipeline]
    engine: Engine | None
    backend_reason: str
    started_at: float
    started_mono: float
    publisher: Publisher | None


class RateMeter:
    """Rate of a growing counter over the last `window_s`, from a few timed samples."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=256)

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
        self._latest: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker = GuardedWorker("health", self._run)
        self._watch = WorkerWatch()
        self.metrics_server: object | None = None
        """The /metrics server when one runs (start_health); its workers count too."""

    # -- public API ------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish a last snapshot with the final counts, then end the thread."""
        self._stop.set()
        self._worker.stop()
        self._worker.join(timeout)
        self._publish(self.refresh())

    def workers(self) -> list[Worker]:
        """Agent-wide threads: this monitor's and the metrics server's."""
        return [self._worker, *_workers_of(self.metrics_server)]

    def essential_workers(self) -> list[Worker]:
        """Threads without which the agent is blind or mute: health, metrics, MQTT."""
        return [*self.workers(), *_workers_of(self.agent.publisher)]

    def latest(self) -> dict[str, Any] | None:
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

    def refresh(self) -> dict[str, Any]:
        """Sample the counters and build a new snapshot (the health thread's job).

        The agent keeps its stopped pipelines until it exits, so the last snapshot at
        shutdown still shows every camera with its final counts.
        """
        now = time.monotonic()
        pipelines = dict(self.agent.pipelines)
        self._adopt(pipelines)
        for camera_id, pipeline in pipelines.items():
            self._meter(camera_id, "input").add(now, pipeline.camera.captured)
            self._meter(camera_id, "processed").add(now, pipeline.times.frames)
        publisher = self.agent.publisher
        if publisher is not None:
            self._mqtt_drops.add(now, publisher.dropped)
            self._dead_letters.add(now, publisher.outbox.dead_lettered)
        snapshot = self._snapshot(pipelines, self.system.read(), now)
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
            signature = (
                snapshot["status"], tuple((c["id"], c["state"]) for c in snapshot["cameras"])
            )
            now = time.monotonic()
            due = now - last_sent >= self.config.interval_s
            changed = signature != last_signature and now - last_sent >= MIN_PUBLISH_GAP_S
            if (due or changed) and self._publish(snapshot):
                last_sent, last_signature = now, signature

    def _publish(self, snapshot: dict[str, Any]) -> bool:
        publisher = self.agent.publisher
        if publisher is None:
            return False
        sent = publisher.publish_retained("health", health_payload(snapshot))
        if sent:
            self.published += 1
        return sent

    def _adopt(self, pipelines: dict[str, CameraPipeline]) -> None:
        """Forget cameras that are gone; a pipeline the agent did not give a drift watch
        (built outside the agent, as in tests) gets one here."""
        drift = self.config.drift
        engine = self.agent.engine
        for pipeline in pipelines.values():
            if drift.enabled and pipeline.drift is None and engine is not None:
                pipeline.drift = DriftWatch(drift, engine.info.class_names)
        for key in [k for k in self._meters if k[0] not in pipelines]:
            del self._meters[key]

    def _meter(self, camera_id: str, kind: str) -> RateMeter:
        return self._meters.setdefault((camera_id, kind), RateMeter())

    def _snapshot(
        self, pipelines: dict[str, CameraPipeline], system: SystemSnapshot, now: float
    ) -> dict[str, Any]:
        agent = self.agent
        engine = agent.engine
        publisher = agent.publisher
        cameras = [self._camera(pipeline, now) for pipeline in pipelines.values()]
        info = engine.info if engine is not None else None
        fallbacks = list(getattr(agent, "fallbacks", ()) or ())
        mqtt = {
            "connected": bool(publisher and publisher.connected),
            "queued": _int_or_none(getattr(publisher, "queued", None)),
            "published": publisher.published if publisher else 0,
            "acknowledged": publisher.acknowledged if publisher else 0,
            "dropped": publisher.dropped if publisher else 0,
            "dropped_recently": self._mqtt_drops.increase(),
            "last_error": publisher.last_error if publisher else None,
            "spool_error": publisher.outbox.spool_error if publisher else None,
            "spool_dropped_total": publisher.outbox.dropped_total if publisher else 0,
            **_publisher_stats(publisher),
            "dead_lettered_recently": self._dead_letters.increase(),
        }
        body: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "timestamp": iso_utc(time.time()),
            "agent_version": __version__,
            "device_id": agent.config.device_id,
            "clock_synced": TRUST.synced(),
            "started_at": iso_utc(agent.started_at),
            "uptime_s": round(now - agent.started_mono, 1),
            "status": "ok",
            "reasons": [],
            "backend": {
                "name": engine.backend if engine else None,
                "device": engine.device if engine else None,
                "reason": agent.backend_reason,
                "fallbacks": fallbacks,
            },
            "model": {
                "name": info.name if info else None,
                "version": (info.metadata.get("version") or None) if info else None,
                "sha256": info.sha256 if info else None,
            },
            "cameras": cameras,
            "mqtt": mqtt,
            "system": _system(system, self.agent.config.state_dir),
            "workers": WorkerWatch.describe(self._all_workers(pipelines)),
        }
        status, reasons = self._status(body, system, pipelines, now)
        body["status"], body["reasons"] = status, reasons
        return body

    def _camera(self, pipeline: CameraPipeline, now: float) -> dict[str, Any]:
        camera = pipeline.camera
        inference = pipeline.latency.percentiles("inference_ms", (50, 95, 99))
        end_to_end = pipeline.latency.percentiles("end_to_end_ms", (50, 95))
        drift = pipeline.drift.report() if pipeline.drift is not None else None
        last = camera.last_frame_at
        return {
            "id": camera.id,
            "state": pipeline.state,
            "input_fps": round(self._meter(camera.id, "input").rate(), 2),
            "processed_fps": round(self._meter(camera.id, "processed").rate(), 2),
            "frames_captured": camera.captured,
            "frames_processed": pipeline.times.frames,
            "frames_dropped": camera.frames.dropped,
            "messages_published": pipeline.published,
            "messages_not_delivered": pipeline.not_delivered,
            "last_frame_age_s": None if last is None else round(max(0.0, now - last), 3),
            "reconnects": camera.reconnects,
            "last_error": camera.last_error,
            "processing_error": pipeline.last_error,
            "frames_failed": pipeline.frames_failed,
            "nonfinite_values": pipeline.nonfinite_values,
            "output_problem": pipeline.output_problem,
            "inference_ms": _quantiles(inference, ("p50", "p95", "p99")),
            "end_to_end_ms": _quantiles(end_to_end, ("p50", "p95")),
            "queue": {"frames": len(camera.frames), "in_flight": pipeline.in_flight},
            "drift": None if drift is None else {
                "state": drift.state,
                "score": drift.score,
                "reasons": list(drift.reasons),
                "samples": drift.samples,
                "baseline": drift.baseline,
                "current": drift.current,
                "components": drift.components,
                "class_rates": drift.class_rates,
            },
        }

    def _all_workers(self, pipelines: dict[str, CameraPipeline]) -> list[Worker]:
        cameras = [worker for pipeline in pipelines.values() for worker in pipeline.workers()]
        return [*self.essential_workers(), *cameras]

    def _status(
        self,
        body: dict[str, Any],
        system: SystemSnapshot,
        pipelines: dict[str, CameraPipeline],
        now: float,
    ) -> tuple[str, list[str]]:
        """failed: nothing useful can happen; degraded: something needs a look; else ok."""
        failed, degraded = self._watch.reasons(self.essential_workers(), now, essential=True)
        camera_workers = [w for pipeline in pipelines.values() for w in pipeline.workers()]
        _, camera_degraded = self._watch.reasons(camera_workers, now, essential=False)
        degraded.extend(camera_degraded)
        cameras = body["cameras"]
        if self.agent.engine is None:
            failed.append("inference engine is not loaded")
        if not cameras:
            failed.append("no camera is running")
        elif all(camera["state"] in FAILING_STATES for camera in cameras):
            failed.append("no camera is delivering frames")
        for camera in cameras:
            if camera["state"] in FAILING_STATES:
                error = camera["last_error"] or "no detail"
                degraded.append(f"camera {camera['id']} {camera['state']}: {error}")
            if camera["output_problem"]:
                degraded.append(f"camera {camera['id']} model output: {camera['output_problem']}")
            drift = camera["drift"]
            for reason in drift["reasons"] if drift else ():
                degraded.append(f"camera {camera['id']} drift: {reason}")
        degraded.extend(f"backend fallback: {item}" for item in body["backend"]["fallbacks"])
        degraded.extend(mqtt_reasons(body["mqtt"]))
        degraded.extend(system_reasons(system, self.config, self.agent.config.state_dir))
        with self._lock:
            degraded.extend(self._problems.values())
        if failed:
            return "failed", failed + degraded
        return ("degraded", degraded) if degraded else ("ok", [])


def mqtt_reasons(mqtt: dict[str, Any]) -> list[str]:
    """Degraded reasons of the broker link: disconnected, spool unusable or damaged, drops."""
    reasons: list[str] = []
    if not mqtt["connected"]:
        reasons.append(f"mqtt disconnected: {mqtt['last_error'] or 'not connected yet'}")
    if mqtt["spool_error"]:
        reasons.append(f"mqtt spool not usable, an outage would lose detections: "
                        f"{mqtt['spool_error']}")
    if mqtt["dead_lettered_recently"]:
        reasons.append(
            f"mqtt set aside {mqtt['dead_lettered_recently']} message(s) the broker refused "
            f"in the last {DROP_WINDOW_S:.0f} s: {mqtt['last_disconnect'] or 'see the log'}"
        )
    if mqtt["spool_unreadable"]:
        reasons.append(f"mqtt spool was damaged: {mqtt['spool_salvage']}")
    if mqtt["dropped_recently"]:
        reasons.append(
            f"mqtt dropped {mqtt['dropped_recently']} detection message(s) in the last "
            f"{DROP_WINDOW_S:.0f} s"
        )
    return reasons


def system_reasons(system: SystemSnapshot, config: HealthConfig, state_dir: object) -> list[str]:
    """Degraded reasons of the box itself: a nearly full disk, a sensor near its limit."""
    reasons = []
    if system.disk_total_bytes and system.disk_free_percent < config.disk_min_free_percent:
        reasons.append(
            f"disk almost full: {system.disk_free_percent:.1f}% free in {state_dir} "
            f"(minimum {config.disk_min_free_percent:g}%)"
        )
    for sensor in system.temperatures:
        if sensor.sensor in UNRELIABLE_SENSORS:
            continue
        limit = sensor.critical_c or config.thermal_limit_c
        if sensor.celsius >= limit - config.thermal_margin_c:
            reasons.append(
                f"temperature {sensor.sensor} at {sensor.celsius:.1f} °C, limit {limit:.0f} °C"
            )
    return reasons


def health_payload(snapshot: dict[str, Any]) -> bytes:
    """The snapshot as compact JSON, as the other payloads are sent."""
    return _ENCODER.encode(snapshot).encode("utf-8")


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


def _system(system: SystemSnapshot, state_dir: object) -> dict[str, Any]:
    return {
        "cpu_percent": round(system.cpu_percent, 1),
        "rss_bytes": system.rss_bytes,
        "load": [round(value, 2) for value in system.load],
        "disk": {
            "path": str(state_dir),
            "free_bytes": system.disk_free_bytes,
            "total_bytes": system.disk_total_bytes,
            "free_percent": round(system.disk_free_percent, 2),
        },
        "temperatures": [
            {"sensor": t.sensor, "celsius": round(t.celsius, 1), "source": t.source,
             "critical_c": t.critical_c}
            for t in system.temperatures
        ],
        "gpu_load_percent": system.gpu_load_percent,
    }


def _quantiles(values: list[float] | None, names: tuple[str, ...]) -> dict[str, float | None]:
    if values is None:
        return dict.fromkeys(names)
    return {name: round(value, 2) for name, value in zip(names, values, strict=True)}


PUBLISHER_STATS = ("protocol", "max_message_bytes", "disconnects", "last_disconnect",
                   "trimmed", "dead_lettered_total", "spool_salvaged", "spool_unreadable",
                   "spool_salvage")
"""Publisher.stats() fields health carries (docs/mqtt.md, "Messages the broker refuses")."""


def _publisher_stats(publisher: Any) -> dict[str, Any]:
    stats = publisher.stats() if publisher is not None else {}
    empty = {"protocol": None, "max_message_bytes": None, "last_disconnect": None,
             "spool_salvage": None}
    return {key: stats.get(key, empty.get(key, 0)) for key in PUBLISHER_STATS}


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None
