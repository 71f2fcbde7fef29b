"""The status rules: from a snapshot's parts to ok, degraded or failed, and why.

Each rule reads typed values (edge_agent.health.snapshot); docs/health.md ("Status rules")
lists them in the words the reasons use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from edge_agent.health.snapshot import CameraHealth, CommandsHealth, HealthStatus, MqttHealth
from edge_agent.health.system_stats import UNRELIABLE_SENSORS, SystemSnapshot

if TYPE_CHECKING:
    from edge_agent.config.model import HealthConfig

DROP_WINDOW_S = 60.0
"""MQTT detection drops, and commands dropped unanswered, within this long make the agent
degraded."""


def camera_reasons(cameras: tuple[CameraHealth, ...]) -> tuple[list[str], list[str]]:
    """(failed, degraded): no camera delivering fails the agent; each failing camera, model
    output problem or drift reason degrades it. A STOPPED camera is neither."""
    failed: list[str] = []
    degraded: list[str] = []
    if not cameras:
        failed.append("no camera is running")
    elif all(camera.state.failing for camera in cameras):
        failed.append("no camera is delivering frames")
    for camera in cameras:
        if camera.state.failing:
            error = camera.last_error or "no detail"
            degraded.append(f"camera {camera.id} {camera.state}: {error}")
        if camera.output_problem:
            degraded.append(f"camera {camera.id} model output: {camera.output_problem}")
        for reason in camera.drift.reasons if camera.drift else ():
            degraded.append(f"camera {camera.id} drift: {reason}")
    return failed, degraded


def mqtt_reasons(mqtt: MqttHealth) -> list[str]:
    """Degraded reasons of the broker link: disconnected, spool unusable or damaged, drops."""
    reasons: list[str] = []
    if not mqtt.connected:
        reasons.append(f"mqtt disconnected: {mqtt.last_error or 'not connected yet'}")
    if mqtt.spool_error:
        reasons.append(f"mqtt spool not usable, an outage would lose detections: "
                       f"{mqtt.spool_error}")
    if mqtt.dead_lettered_recently:
        reasons.append(
            f"mqtt set aside {mqtt.dead_lettered_recently} message(s) the broker refused "
            f"in the last {DROP_WINDOW_S:.0f} s: {mqtt.last_disconnect or 'see the log'}"
        )
    if mqtt.spool_unreadable:
        reasons.append(f"mqtt spool was damaged: {mqtt.spool_salvage}")
    if mqtt.dropped_recently:
        reasons.append(
            f"mqtt dropped {mqtt.dropped_recently} detection message(s) in the last "
            f"{DROP_WINDOW_S:.0f} s"
        )
    return reasons


def commands_reasons(commands: CommandsHealth | None) -> list[str]:
    """Degraded while requests went unanswered in the last minute: an operator's command
    was lost without a result, and only health can say so."""
    if commands is None or not commands.dropped_recently:
        return []
    return [f"commands dropped {commands.dropped_recently} request(s) unanswered in the last "
            f"{DROP_WINDOW_S:.0f} s (inbox full, or a command name too long to answer on)"]


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


def verdict(failed: Iterable[str], degraded: Iterable[str]) -> tuple[HealthStatus, tuple[str, ...]]:
    """failed: nothing useful can happen; degraded: something needs a look; else ok.
    Reasons come most serious first."""
    failed, degraded = tuple(failed), tuple(degraded)
    if failed:
        return HealthStatus.FAILED, failed + degraded
    return (HealthStatus.DEGRADED, degraded) if degraded else (HealthStatus.OK, ())
