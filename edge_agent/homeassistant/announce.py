"""Publish Home Assistant discovery configs, retained, and remove the ones not wanted.

Home Assistant keeps an entity as long as its retained config is on the broker, so a
zone removed from the file must have its config topic emptied (an empty retained
message), also when the agent was restarted in between with a smaller config. The
topics ever announced and not yet removed are kept in `<state_dir>/homeassistant.json`
for that.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from edge_agent.config.model import AgentConfig
from edge_agent.delivery.retained import RetainedStates
from edge_agent.homeassistant.discovery import DeviceInfo, discovery_configs

log = logging.getLogger(__name__)

STATE_FILE = "homeassistant.json"


class TopicSink(Protocol):
    """The publisher's side used here (edge_agent.publish.publisher.Publisher)."""

    @property
    def connected(self) -> bool: ...

    disconnects: int

    def publish_retained_topic(self, topic: str, payload: bytes) -> bool: ...


class _FullTopics:
    """RetainedStates speaks subtopics of the agent's base; discovery topics are not."""

    def __init__(self, sink: TopicSink) -> None:
        self._sink = sink

    @property
    def connected(self) -> bool:
        return self._sink.connected

    @property
    def disconnects(self) -> int:
        return self._sink.disconnects

    def publish_retained(self, subtopic: str, payload: bytes) -> bool:
        return self._sink.publish_retained_topic(subtopic, payload)


class DiscoveryAnnouncer:
    """Keeps the broker's discovery configs equal to what the config wants.

    `announce()` takes the wanted set (start, reload); `flush()` (the agent's main loop,
    twice a second) sends what the broker lacks: changes, removals, and everything
    again after a lost connection. Never raises for a state file it cannot use.
    """

    def __init__(self, sink: TopicSink, state_dir: Path) -> None:
        self._states = RetainedStates(_FullTopics(sink))  # type: ignore[arg-type]
        self._path = state_dir / STATE_FILE
        self._announced = self._load()
        self._wanted: dict[str, bytes] = {}

    def announce(self, config: AgentConfig, labels: Sequence[str], hardware: str) -> None:
        """Want exactly the entities of `config` (none when homeassistant is disabled)."""
        device = DeviceInfo(device_id=config.device_id, hardware=hardware)
        self.want(discovery_configs(config, labels, device))

    def want(self, configs: Mapping[str, bytes]) -> None:
        """Set the wanted `{topic: payload}`; every other topic announced is removed."""
        gone = (self._announced | self._wanted.keys()) - configs.keys()
        for topic in sorted(gone):
            self._states.clear(topic)
        for topic, payload in configs.items():
            self._states.set(topic, payload)
        if gone or configs.keys() - self._wanted.keys():
            log.info("Home Assistant discovery: %d entities, %d to remove",
                     len(configs), len(gone))
        self._wanted = dict(configs)
        # Recorded before sending: a crash in between still knows what may be out there.
        self._save(self._announced | configs.keys())

    def flush(self) -> int:
        """Send what is pending; how many configs are still unsent."""
        pending = self._states.flush()
        if pending == 0 and self._announced != self._wanted.keys():
            self._save(set(self._wanted))
        return pending

    @property
    def announced(self) -> frozenset[str]:
        """Config topics that may be on the broker (wanted, or not yet removed)."""
        return frozenset(self._announced)

    def _load(self) -> set[str]:
        try:
            topics = json.loads(self._path.read_text())["topics"]
            if not isinstance(topics, list):
                raise TypeError(f"topics is {type(topics).__name__}, not a list")
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Home Assistant discovery: cannot read %s (%s); entities of an "
                        "earlier config that are gone from this one stay in Home Assistant "
                        "until deleted there", self._path, exc)
            return set()
        return {topic for topic in topics if isinstance(topic, str) and topic}

    def _save(self, topics: set[str]) -> None:
        if topics == self._announced and self._path.exists() == bool(topics):
            return
        self._announced = set(topics)
        try:
            if not topics:
                self._path.unlink(missing_ok=True)
                return
            temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}")
            temporary.write_text(json.dumps({"topics": sorted(topics)}, indent=1) + "\n")
            temporary.replace(self._path)
        except OSError as exc:
            log.warning("Home Assistant discovery: cannot write %s: %s", self._path, exc)
