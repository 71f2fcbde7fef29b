"""The snapshot's parts, typed, from what each component's `stats()` offers.

`HealthMonitor` asks every part once per tick (`CameraPipeline.stats()`,
`Publisher.stats()`, `CommandChannel.stats()`, `SystemStats.read()`, the workers) and
these functions turn the answers into the classes of edge_agent.health.snapshot, rounded
as the message carries them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from edge_agent.health.drift import DriftReport
from edge_agent.health.snapshot import (
    BackendHealth,
    CommandsHealth,
    DetectionsIgnored,
    DiskHealth,
    DriftHealth,
    FramesSkipped,
    ModelHealth,
    MqttHealth,
    SystemHealth,
    TemperatureHealth,
    WorkerHealth,
)
from edge_agent.health.system_stats import SystemSnapshot
from edge_agent.supervision import is_broken
from edge_agent.workers import Worker

if TYPE_CHECKING:
    from edge_agent.camera_filter import FilterStats
    from edge_agent.commands.stats import ChannelStats
    from edge_agent.gate import GateStats
    from edge_agent.publish.stats import PublisherStats
    from engines.base import Engine


def engine_health(
    engine: Engine | None, reason: str, fallbacks: tuple[str, ...]
) -> tuple[BackendHealth, ModelHealth]:
    """The engine's own description (`Engine.info`, the model it loaded)."""
    backend = BackendHealth(
        name=engine.backend if engine else None, device=engine.device if engine else None,
        reason=reason, fallbacks=fallbacks,
    )
    info = engine.info if engine is not None else None
    if info is None:
        return backend, ModelHealth(name=None, version=None, sha256=None)
    return backend, ModelHealth(
        name=info.name, version=info.metadata.get("version") or None, sha256=info.sha256
    )


def mqtt_health(
    stats: PublisherStats | None, dropped_recently: int, dead_lettered_recently: int
) -> MqttHealth:
    if stats is None:  # no publisher (yet): nothing sent, nothing known
        return MqttHealth(
            connected=False, queued=None, published=0, acknowledged=0, dropped=0,
            dropped_recently=dropped_recently, last_error=None, spool_error=None,
            spool_dropped_total=0, protocol=None, max_message_bytes=None, disconnects=0,
            last_disconnect=None, trimmed=0, dead_lettered_total=0, spool_salvaged=0,
            spool_unreadable=0, spool_salvage=None,
            dead_lettered_recently=dead_lettered_recently,
        )
    return MqttHealth(
        connected=stats.connected, queued=stats.queued, published=stats.published,
        acknowledged=stats.acknowledged, dropped=stats.dropped,
        dropped_recently=dropped_recently, last_error=stats.last_error,
        spool_error=stats.spool_error, spool_dropped_total=stats.spool_dropped_total,
        protocol=stats.protocol, max_message_bytes=stats.max_message_bytes,
        disconnects=stats.disconnects, last_disconnect=stats.last_disconnect,
        trimmed=stats.trimmed, dead_lettered_total=stats.dead_lettered_total,
        spool_salvaged=stats.spool_salvaged, spool_unreadable=stats.spool_unreadable,
        spool_salvage=stats.spool_salvage, dead_lettered_recently=dead_lettered_recently,
    )


def commands_health(stats: ChannelStats | None, dropped_recently: int) -> CommandsHealth | None:
    """None where no channel runs (commands.enabled false): the message says null."""
    if stats is None:
        return None
    return CommandsHealth(**asdict(stats), dropped_recently=dropped_recently)


def system_health(system: SystemSnapshot, state_dir: object) -> SystemHealth:
    return SystemHealth(
        cpu_percent=round(system.cpu_percent, 1),
        rss_bytes=system.rss_bytes,
        load=tuple(round(value, 2) for value in system.load),
        disk=DiskHealth(
            path=str(state_dir),
            free_bytes=system.disk_free_bytes,
            total_bytes=system.disk_total_bytes,
            free_percent=round(system.disk_free_percent, 2),
        ),
        temperatures=tuple(
            TemperatureHealth(sensor=t.sensor, celsius=round(t.celsius, 1), source=t.source,
                              critical_c=t.critical_c)
            for t in system.temperatures
        ),
        gpu_load_percent=system.gpu_load_percent,
    )


def worker_health(worker: Worker) -> WorkerHealth:
    return WorkerHealth(
        name=worker.name, state="dead" if is_broken(worker) else worker.state.value,
        crashes=worker.crashes, last_error=worker.last_error,
    )


def drift_health(report: DriftReport) -> DriftHealth:
    return DriftHealth(
        state=report.state, score=report.score, reasons=tuple(report.reasons),
        samples=report.samples, baseline=report.baseline, current=report.current,
        components=report.components, class_rates=report.class_rates,
    )


def gate_health(
    gate: GateStats | None, ignored: FilterStats | None
) -> tuple[FramesSkipped, bool | None, DetectionsIgnored]:
    """The camera's frame gate and detection rules: frames_skipped, motion_active and
    detections_ignored of CameraHealth."""
    return (
        FramesSkipped(rate=gate.skipped_rate if gate else 0,
                      motion=gate.skipped_motion if gate else 0),
        gate.motion_active if gate else None,
        DetectionsIgnored(min_score=ignored.min_score if ignored else 0,
                          min_area=ignored.min_area if ignored else 0,
                          mask=ignored.mask if ignored else 0),
    )


def rounded(values: tuple[float, ...] | None, count: int) -> tuple[float | None, ...]:
    if values is None:
        return (None,) * count
    return tuple(round(value, 2) for value in values)
