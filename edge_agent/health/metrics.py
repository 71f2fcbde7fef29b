"""Prometheus /metrics and /healthz, read from the health snapshot (one source of truth).

A custom collector turns the newest snapshot of `HealthMonitor` into metric families at
scrape time, so a scrape costs no work on the pipeline threads and always agrees with
the retained health message. The server binds loopback unless told otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_agent.capture.state import CameraState
from edge_agent.health.local_http import LocalHTTPServer, QuietHandler
from edge_agent.health.snapshot import (
    CameraHealth,
    CommandsHealth,
    HealthSnapshot,
    HealthStatus,
    MqttHealth,
    SystemHealth,
)

if TYPE_CHECKING:
    from edge_agent.health.monitor import HealthMonitor
    from edge_agent.workers import Worker

log = logging.getLogger(__name__)

STATUS_CODES = {HealthStatus.OK: 0, HealthStatus.DEGRADED: 1, HealthStatus.FAILED: 2}
QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99"}

CAMERA_COUNTERS = (
    ("frames_captured", "edge_agent_camera_frames_captured", "Frames read from the source."),
    ("frames_processed", "edge_agent_camera_frames_processed", "Frames through inference."),
    ("frames_dropped", "edge_agent_camera_frames_dropped",
     "Frames dropped at capture because inference was busy (live sources only)."),
    ("messages_published", "edge_agent_camera_messages_published",
     "Detection messages accepted by the MQTT publisher."),
    ("messages_not_delivered", "edge_agent_camera_messages_not_delivered",
     "Detection messages the publisher refused."),
    ("reconnects", "edge_agent_camera_reconnects", "Times the source failed and was reopened."),
)
CAMERA_GAUGES = (
    ("input_fps", "edge_agent_camera_input_fps", "Frames/s read from the source (10 s)."),
    ("processed_fps", "edge_agent_camera_processed_fps", "Frames/s through inference (10 s)."),
    ("last_frame_age_s", "edge_agent_camera_last_frame_age_seconds",
     "Seconds since the last frame was read."),
)
MQTT_COUNTERS = (
    ("published", "edge_agent_mqtt_messages_published", "Detection messages accepted."),
    ("acknowledged", "edge_agent_mqtt_messages_acknowledged", "Detection messages acknowledged."),
    ("dropped", "edge_agent_mqtt_messages_dropped", "Detection messages dropped."),
    ("spool_dropped_total", "edge_agent_mqtt_spool_dropped",
     "Detection messages ever dropped from the spool file (bounds), across restarts."),
)

COMMANDS_COUNTERS = (
    ("received", "edge_agent_commands_received", "Command requests taken off the network."),
    ("duplicates", "edge_agent_commands_duplicates",
     "Repeated request_ids answered from the record, not run again."),
    ("dropped", "edge_agent_commands_dropped",
     "Command requests never answered (inbox full, name too long to answer on)."),
)
COMMANDS_GAUGES = (
    ("waiting", "edge_agent_commands_waiting", "Command requests in the inbox now."),
    ("running", "edge_agent_commands_running", "Command handlers running now."),
)
COMMAND_OUTCOMES = ("ok", "rejected", "failed")
"""The final outcomes (edge_agent.commands.spec.Outcome), each a field of CommandsHealth."""


class HealthCollector(Collector):
    """Metric families from the newest snapshot; nothing before the first one."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        snapshot = self.monitor.latest()
        if snapshot is None:
            return
        yield from _agent_metrics(snapshot)
        yield from _camera_metrics(snapshot.cameras)
        yield from _mqtt_metrics(snapshot.mqtt)
        yield from _commands_metrics(snapshot.commands)
        yield from _system_metrics(snapshot.system)


def _agent_metrics(snapshot: HealthSnapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "edge_agent_info", "Agent version, backend and model (value 1).",
        labels=["version", "device_id", "backend", "device", "model", "model_sha256"],
    )
    backend, model = snapshot.backend, snapshot.model
    info.add_metric(
        [snapshot.agent_version, snapshot.device_id, backend.name or "", backend.device or "",
         model.name or "", model.sha256 or ""], 1,
    )
    yield info
    yield GaugeMetricFamily(
        "edge_agent_uptime_seconds", "Seconds since the agent started.", value=snapshot.uptime_s
    )
    yield GaugeMetricFamily(
        "edge_agent_health_status", "0 ok, 1 degraded, 2 failed.",
        value=STATUS_CODES[snapshot.status],
    )
    yield GaugeMetricFamily(
        "edge_agent_health_reasons", "Reasons for the current status (0 when ok).",
        value=len(snapshot.reasons),
    )


def _gate_metrics(cameras: tuple[CameraHealth, ...]) -> Iterator[Metric]:
    """Frames the gate skipped and detections the camera's rules removed, by reason."""
    skipped = CounterMetricFamily(
        "edge_agent_camera_frames_skipped", "Frames not inferred: rate (detect.fps) or "
        "motion (still scene, detect.motion).", labels=["camera", "reason"])
    ignored = CounterMetricFamily(
        "edge_agent_camera_detections_ignored", "Detections removed by min_score, min_area "
        "or a mask.", labels=["camera", "rule"])
    for camera in cameras:
        frames, rules = camera.frames_skipped, camera.detections_ignored
        for reason, count in (("rate", frames.rate), ("motion", frames.motion)):
            skipped.add_metric([camera.id, reason], count)
        for rule, count in (("min_score", rules.min_score), ("min_area", rules.min_area),
                            ("mask", rules.mask)):
            ignored.add_metric([camera.id, rule], count)
    yield skipped
    yield ignored


def _camera_metrics(cameras: tuple[CameraHealth, ...]) -> Iterator[Metric]:
    for key, name, text in CAMERA_COUNTERS:
        family = CounterMetricFamily(name, text, labels=["camera"])
        for camera in cameras:
            family.add_metric([camera.id], getattr(camera, key))
        yield family
    for key, name, text in CAMERA_GAUGES:
        family = GaugeMetricFamily(name, text, labels=["camera"])
        for camera in cameras:
            value = getattr(camera, key)
            if value is not None:
                family.add_metric([camera.id], value)
        yield family
    yield from _gate_metrics(cameras)
    state = GaugeMetricFamily(
        "edge_agent_camera_state", "1 for the camera's current state.", labels=["camera", "state"]
    )
    inference = GaugeMetricFamily(
        "edge_agent_camera_inference_seconds",
        "Inference time percentiles over the last 1024 frames.", labels=["camera", "quantile"],
    )
    end_to_end = GaugeMetricFamily(
        "edge_agent_camera_end_to_end_seconds",
        "Capture-to-publish time percentiles over the last 1024 frames.",
        labels=["camera", "quantile"],
    )
    queue = GaugeMetricFamily(
        "edge_agent_camera_queue_depth", "Frames waiting: queue (capture -> inference) and "
        "in_flight (submitted, not yet published).", labels=["camera", "stage"],
    )
    drift = GaugeMetricFamily(
        "edge_agent_camera_drift_score", "0 like the baseline .. 1 very different.",
        labels=["camera"],
    )
    drift_reason = GaugeMetricFamily(
        "edge_agent_camera_drift_reason", "1 for each drift reason now present.",
        labels=["camera", "reason"],
    )
    for camera in cameras:
        camera_id = camera.id
        for member in CameraState:
            state.add_metric([camera_id, member.value], 1 if member is camera.state else 0)
        for target, values in ((inference, vars(camera.inference_ms)),
                               (end_to_end, vars(camera.end_to_end_ms))):
            for label, value in values.items():
                if value is not None:
                    target.add_metric([camera_id, QUANTILES[label]], value / 1000)
        queue.add_metric([camera_id, "queue"], camera.queue.frames)
        queue.add_metric([camera_id, "in_flight"], camera.queue.in_flight)
        if camera.drift is not None:
            drift.add_metric([camera_id], camera.drift.score)
            for reason in camera.drift.reasons:
                drift_reason.add_metric([camera_id, reason], 1)
    yield from (state, inference, end_to_end, queue, drift, drift_reason)
    yield from _event_metrics(cameras)


def _event_metrics(cameras: tuple[CameraHealth, ...]) -> Iterator[Metric]:
    events = CounterMetricFamily(
        "edge_agent_camera_events", "Events (enter, exit, dwell, cross) since the camera "
        "started.", labels=["camera"],
    )
    rate = GaugeMetricFamily(
        "edge_agent_camera_events_per_second", "Events/s over the last minute.",
        labels=["camera"],
    )
    for camera in cameras:
        if camera.events is not None:
            events.add_metric([camera.id], camera.events.events_total)
            rate.add_metric([camera.id], camera.events.events_per_s)
    yield from (events, rate)


def _mqtt_metrics(mqtt: MqttHealth) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "edge_agent_mqtt_connected", "1 while the broker connection is up.",
        value=int(mqtt.connected),
    )
    queued = GaugeMetricFamily(
        "edge_agent_mqtt_queued", "Detection messages waiting for the broker (outbox/spool)."
    )
    if mqtt.queued is not None:  # no sample where the publisher cannot tell
        queued.add_metric([], mqtt.queued)
    yield queued
    for key, name, text in MQTT_COUNTERS:
        yield CounterMetricFamily(name, text, value=getattr(mqtt, key))


def _commands_metrics(commands: CommandsHealth | None) -> Iterator[Metric]:
    """The command channel's counts; none while commands are disabled."""
    if commands is None:
        return
    answered = CounterMetricFamily(
        "edge_agent_commands_answered", "Command requests answered, by final outcome "
        "(repeats count in duplicates).", labels=["outcome"])
    for outcome in COMMAND_OUTCOMES:
        answered.add_metric([outcome], getattr(commands, outcome))
    yield answered
    for key, name, text in COMMANDS_COUNTERS:
        yield CounterMetricFamily(name, text, value=getattr(commands, key))
    for key, name, text in COMMANDS_GAUGES:
        yield GaugeMetricFamily(name, text, value=getattr(commands, key))


def _system_metrics(system: SystemHealth) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "edge_agent_process_cpu_percent", "CPU use of the agent, % of one core.",
        value=system.cpu_percent,
    )
    yield GaugeMetricFamily(
        "edge_agent_process_resident_memory_bytes", "Resident memory of the agent.",
        value=system.rss_bytes,
    )
    load = GaugeMetricFamily("edge_agent_load_average", "System load average.", labels=["period"])
    for period, value in zip(("1m", "5m", "15m"), system.load, strict=True):
        load.add_metric([period], value)
    yield load
    yield GaugeMetricFamily(
        "edge_agent_state_dir_free_bytes", "Free space in the state directory.",
        value=system.disk.free_bytes,
    )
    yield GaugeMetricFamily(
        "edge_agent_state_dir_size_bytes", "Size of the state directory's filesystem.",
        value=system.disk.total_bytes,
    )
    temperature = GaugeMetricFamily(
        "edge_agent_temperature_celsius", "Thermal zones and hwmon sensors.",
        labels=["sensor", "source"],
    )
    for sensor in system.temperatures:
        temperature.add_metric([sensor.sensor, sensor.source], sensor.celsius)
    yield temperature
    gpu = GaugeMetricFamily("edge_agent_gpu_load_percent", "Jetson GPU load (no sample elsewhere).")
    if system.gpu_load_percent is not None:
        gpu.add_metric([], system.gpu_load_percent)
    yield gpu


class MetricsServer:
    """`/metrics` (Prometheus text) and `/healthz` (JSON; 503 when failed) on HOST:PORT.

    Served by `LocalHTTPServer`: idle and half-sent clients time out, at most 16 are
    handled at once, and a bad client is one rate-limited log line (docs/health.md).
    """

    def __init__(self, monitor: HealthMonitor, address: str) -> None:
        self.monitor = monitor
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HealthCollector(monitor))
        self._server: LocalHTTPServer | None = None

    def start(self) -> None:
        """Listen; a port already taken is logged and reported in health, never fatal."""
        try:
            self._server = LocalHTTPServer("metrics", self.host, self.port, _handler(self))
        except OSError as exc:
            problem = f"metrics cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            log.error("%s (health.metrics_address)", problem)
            self.monitor.report_problem("metrics", problem)
            return
        self.port = self._server.port
        self._server.start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def workers(self) -> list[Worker]:
        """The server's accept loop (restarted if it crashes), for health to watch."""
        return [self._server.worker] if self._server is not None else []

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def _handler(server: MetricsServer) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.registry))
            elif path == "/healthz":
                snapshot = server.monitor.latest()
                body = (
                    {"status": snapshot.status.value, "reasons": list(snapshot.reasons),
                     "timestamp": snapshot.timestamp}
                    if snapshot else {"status": "starting", "reasons": [], "timestamp": None}
                )
                code = 200 if body["status"] in ("ok", "degraded") else 503
                self._send(code, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found; try /metrics or /healthz\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
