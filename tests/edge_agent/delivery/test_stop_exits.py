"""Stopping the agent (SIGTERM, as systemctl stop does) ends every visit with an `exit`,
reason `agent_stopped`, and leaves each zone's retained occupancy at 0: a subscriber that
pairs enter with exit, or reads the retained state, never keeps an object "inside" a
zone of an agent that is gone. Before, a stop sent no exits.

Real agent on the sample street video, real Mosquitto; the events are checked against
the published JSON schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import REPO, Broker, Collector, start_agent, stop_agent, wait_until, write_config

CAMERA = """\
  - id: street
    type: file
    path: {video}
    loop: true
    zones:
      - {{name: all, points: [[0, 0], [1, 0], [1, 1], [0, 1]], min_frames: 1}}
"""
SCHEMA = json.loads((REPO / "docs" / "schemas" / "events.schema.json").read_text())


def inside(collector: Collector) -> set[int]:
    """Track ids a subscriber pairing enter with exit believes inside zone `all`."""
    open_: set[int] = set()
    for event in collector.json_on("/street/events"):
        if event["type"] == "enter":
            open_.add(event["track_id"])
        elif event["type"] == "exit":
            open_.discard(event["track_id"])
    return open_


@pytest.mark.slow
def test_a_stop_ends_every_visit(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    config = write_config(tmp_path, samples, broker, unique_prefix,
                          CAMERA.format(video=samples / "media" / "vtest.mp4"))
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_until(lambda: len(inside(collector)) >= 2, timeout=90)  # people in the street
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()[-3000:]
    wait_until(lambda: not inside(collector), timeout=10)
    events = collector.json_on("/street/events")
    for event in events:
        jsonschema.validate(event, SCHEMA)
    stopped = [e for e in events if e.get("reason") == "agent_stopped"]
    assert len(stopped) >= 2
    assert all(e["type"] == "exit" for e in stopped)
    assert json.loads(collector.on_topic("/street/zones/all/occupancy")[-1].payload)["total"] == 0
