"""Home Assistant MQTT discovery configs built from the agent's config (docs/homeassistant.md).

Pure: config in, `{topic: JSON payload}` out. The entities read the retained topics the
events delivery already publishes (edge_agent.delivery): occupancy per zone, counts per
line, the newest snapshot per camera and class. Keys follow Home Assistant's documented
discovery options for the `sensor`, `binary_sensor` and `image` platforms.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_agent import __version__
from edge_agent.camera_filter import class_id
from edge_agent.config.model import AgentConfig, CameraConfig
from edge_agent.delivery.shapes import counts_topic, occupancy_topic, snapshot_topic

_SAFE = frozenset(string.ascii_letters + string.digits + "-")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)
ALL = None
"""The class of an entity that counts every class together (a zone or line without a
class filter, and no `homeassistant.classes`)."""


@dataclass(frozen=True)
class DeviceInfo:
    """What Home Assistant shows on the device page; from the agent's info message."""

    device_id: str
    hardware: str  # e.g. "openvino/CPU"
    version: str = __version__


def slug(*parts: str) -> str:
    """Join `parts` into one id of [A-Za-z0-9_-] that is unique for every distinct tuple.

    Home Assistant allows only these characters in a discovery topic's node and object
    ids. Letters, digits and '-' stay; every other character becomes `_xx` per UTF-8 byte
    (so "a.b" -> "a_2eb", "a_b" -> "a_5fb"), and parts are joined by "__", which an
    escaped part never contains: different tuples can never give the same id.
    """
    escaped = []
    for part in parts:
        chars = []
        for char in part:
            if char in _SAFE:
                chars.append(char)
            else:
                chars.extend(f"_{byte:02x}" for byte in char.encode("utf-8"))
        escaped.append("".join(chars))
    return "__".join(escaped)


def _literal(text: str) -> str:
    """A Jinja string literal for `text` (JSON's double-quoted form; Jinja reads its
    escapes)."""
    return json.dumps(text)


def occupancy_template(label: str | None) -> str:
    """value_template of a zone's occupancy `sensor`: objects of `label` inside (0 when
    the payload lists none of them), or of every class (`label` None)."""
    if label is ALL:
        return "{{ value_json.total }}"
    return f"{{{{ value_json.occupancy[{_literal(label)}] | default(0) }}}}"


def occupied_template(label: str | None) -> str:
    """value_template of a zone's `binary_sensor`: ON while anything of `label` is inside."""
    if label is ALL:
        return "{{ 'ON' if value_json.total > 0 else 'OFF' }}"
    count = f"(value_json.occupancy[{_literal(label)}] | default(0))"
    return f"{{{{ 'ON' if {count} > 0 else 'OFF' }}}}"


def counts_template(direction: str, label: str | None) -> str:
    """value_template of a line counter: crossings in `direction` of `label` (or of
    every class) since the counts' `since`."""
    per_label = f"(value_json.counts[{_literal(direction)}] | default({{}}))"
    if label is ALL:
        return f"{{{{ {per_label}.values() | sum }}}}"
    return f"{{{{ {per_label}[{_literal(label)}] | default(0) }}}}"


def _label(value: str | int, labels: Sequence[str]) -> str:
    """A class entry as the label payloads use: resolved as the running agent resolves it
    (camera_filter.class_id: an id or "2" is looked up, "traffic light" finds an IR's
    traffic_light); one the model lacks stays as written (check-config warns of it)."""
    found = class_id(value, labels)
    return labels[found] if found is not None and found < len(labels) else str(value)


def _classes(
    filter_: Sequence[str | int] | None, labels: Sequence[str], default: Sequence[str]
) -> list[str | None]:
    """The classes that get entities: the filter's, else `default`, else one for all."""
    chosen = [_label(c, labels) for c in (filter_ or default)]
    return list(dict.fromkeys(chosen)) or [ALL]


def _camera_snapshot_classes(
    camera: CameraConfig, labels: Sequence[str], default: Sequence[str]
) -> list[str]:
    """Classes whose snapshot topic gets an image entity: those the camera's zones and
    lines count, plus `default` when a shape counts every class (or there is none)."""
    found: list[str] = []
    shapes = [*camera.zones, *camera.lines]
    for shape in shapes:
        found += [_label(c, labels) for c in shape.classes or ()]
    if not shapes or any(not shape.classes for shape in shapes):
        found += [_label(c, labels) for c in default]
    return list(dict.fromkeys(found))


class _Builder:
    """Collects one agent's entities as `{config topic: payload}`."""

    def __init__(self, config: AgentConfig, device: DeviceInfo) -> None:
        self.prefix = config.homeassistant.discovery_prefix
        self.base = f"{config.mqtt.topic_prefix.rstrip('/')}/{config.device_id}"
        self.device_id = config.device_id
        self.node = slug(config.device_id)
        self.common = {
            "availability_topic": f"{self.base}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [f"edge-agent_{config.device_id}"],
                "name": config.homeassistant.device_name or config.device_id,
                "manufacturer": "edge-agent",
                "model": "edge-agent",
                "sw_version": device.version,
                "hw_version": device.hardware,
            },
            "origin": {"name": "edge-agent", "sw_version": device.version},
        }
        self.default_classes = tuple(config.homeassistant.classes)
        self.configs: dict[str, bytes] = {}

    def add(self, component: str, parts: Iterable[str], body: dict[str, object]) -> None:
        object_id = slug(*parts)
        topic = f"{self.prefix}/{component}/{self.node}/{object_id}/config"
        unique_id = f"edge-agent__{self.node}__{object_id}"
        payload = {**self.common, **body, "unique_id": unique_id}
        self.configs[topic] = _ENCODER.encode(payload).encode("utf-8")

    def camera(self, camera: CameraConfig, labels: Sequence[str]) -> None:
        default = self.default_classes
        for zone in camera.zones:
            state = f"{self.base}/{occupancy_topic(camera.id, zone.name)}"
            for label in _classes(zone.classes, labels, default):
                shown = label or "all"
                parts = ("zone", camera.id, zone.name, shown if label else "")
                self.add("sensor", (*parts, "count"), {
                    "name": f"{camera.id} {zone.name} {shown}",
                    "state_topic": state, "qos": 1,
                    "value_template": occupancy_template(label),
                    "state_class": "measurement", "icon": "mdi:account-group",
                })
                self.add("binary_sensor", (*parts, "occupied"), {
                    "name": f"{camera.id} {zone.name} {shown} occupied",
                    "state_topic": state, "qos": 1,
                    "value_template": occupied_template(label),
                    "payload_on": "ON", "payload_off": "OFF", "device_class": "occupancy",
                })
        for line in camera.lines:
            state = f"{self.base}/{counts_topic(camera.id, line.name)}"
            for direction in (line.directions.forward, line.directions.backward):
                for label in _classes(line.classes, labels, default):
                    shown = label or "all"
                    self.add("sensor", ("line", camera.id, line.name, direction,
                                        label or "", "count"), {
                        "name": f"{camera.id} {line.name} {direction} {shown}",
                        "state_topic": state, "qos": 1,
                        "value_template": counts_template(direction, label),
                        "state_class": "total_increasing", "icon": "mdi:counter",
                    })
        if camera.snapshots.enabled:
            for label in _camera_snapshot_classes(camera, labels, default):
                self.add("image", ("snapshot", camera.id, label), {
                    "name": f"{camera.id} {label} snapshot",
                    "image_topic": f"{self.base}/{snapshot_topic(camera.id, label)}",
                    "content_type": "image/jpeg",
                })


def discovery_configs(
    config: AgentConfig, labels: Sequence[str], device: DeviceInfo
) -> dict[str, bytes]:
    """Every entity of this agent as `{discovery config topic: retained JSON payload}`.

    Empty when `homeassistant.enabled` is false. `labels` are the model's class names
    (to name classes given by id). Zones get an occupancy `sensor` and an occupied
    `binary_sensor` per class, lines a counter `sensor` per direction and class, and
    cameras with snapshots an `image` per class; only enabled cameras count.
    """
    settings = config.homeassistant
    if not settings.enabled:
        return {}
    builder = _Builder(config, device)
    for camera in config.cameras:
        if camera.enabled:
            builder.camera(camera, labels)
    return builder.configs
