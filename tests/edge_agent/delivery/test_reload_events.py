"""SIGHUP with new zones, lines and publish settings, against the real agent: the camera
is reconfigured in place (its frames go on, never restarted, the other camera untouched),
a removed zone's visits end with exits and its retained occupancy is cleared, a new zone
starts at 0, and `publish.detections: off` stops the detections stream. A second SIGHUP
removes the other camera: its visits end too and its zone's topic is deleted (every kind
of change, one by one: test_reload_exits.py)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import (
    Broker,
    Collector,
    start_agent,
    stop_agent,
    wait_until,
    write_config,
)

STREET = """\
  - id: street
    type: file
    path: {video}
    loop: true
{events}
  - id: other
    type: file
    path: {video}
    loop: true
    zones:
      - {{name: all, points: [[0, 0], [1, 0], [1, 1], [0, 1]], min_frames: 1}}
"""
BEFORE = """\
    zones:
      - {name: left, points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    lines:
      - {name: middle, points: [[0.5, 0], [0.5, 1]]}
"""
AFTER = """\
    zones:
      - {name: right, points: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}
    lines:
      - {name: middle, points: [[0.5, 0], [0.5, 1]]}
    publish: {detections: "off"}
"""


def occupied(collector: Collector, suffix: str) -> bool:
    found = collector.json_on(suffix)
    return bool(found) and found[-1]["total"] > 0


def open_visits(events: list[dict], zone: str) -> set[int]:
    """The visits a subscriber that pairs enter with exit believes open in `zone`."""
    inside: set[int] = set()
    for event in events:
        if event["zone"] == zone and event["type"] == "enter":
            inside.add(event["track_id"])
        elif event["zone"] == zone and event["type"] == "exit":
            inside.discard(event["track_id"])
    return inside


def wait_for_log(log: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log.read_text()}"
        time.sleep(0.1)


@pytest.mark.slow
def test_zones_change_on_the_running_camera(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    video = samples / "media" / "vtest.mp4"
    config = write_config(tmp_path, samples, broker, unique_prefix,
                          STREET.format(video=video, events=BEFORE))
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for("/street/zones/left/occupancy", timeout=60)
        collector.wait_for("/street/detections", count=5, timeout=30)
        # Someone is inside both zones when the reloads come (else nothing is tested).
        wait_until(lambda: occupied(collector, "/street/zones/left/occupancy")
                   and occupied(collector, "/other/zones/all/occupancy"), timeout=60)
        write_config(tmp_path, samples, broker, unique_prefix,
                     STREET.format(video=video, events=AFTER))
        agent.send_signal(signal.SIGHUP)
        wait_for_log(log, "reload applied")
        collector.wait_for("/street/zones/right/occupancy", timeout=10)
        time.sleep(0.5)
        street = len(collector.on_topic("/street/detections"))
        other = len(collector.on_topic("/other/detections"))
        time.sleep(2.0)
        assert len(collector.on_topic("/street/detections")) == street  # publish: off
        assert len(collector.on_topic("/other/detections")) > other + 5
        text = log.read_text()
        assert "camera street events reconfigured" in text
        assert "stopping camera" not in text  # neither camera was restarted
        result = json.loads((tmp_path / "state" / "last-reload.json").read_text())
        assert result["applied"] == ["camera street events reconfigured"]
        street_events = collector.json_on("/street/events")
        assert not open_visits(street_events, "left")  # each ended: left, lost or removed
        assert any(e.get("reason") == "zone_removed" for e in street_events)
        assert all(e.get("reason") in (None, "left", "lost")  # the unchanged camera
                   for e in collector.json_on("/other/events"))

        without_other = STREET.format(video=video, events=AFTER).split("  - id: other")[0]
        write_config(tmp_path, samples, broker, unique_prefix, without_other)
        agent.send_signal(signal.SIGHUP)
        wait_until(lambda: "camera other removed" in
                   (tmp_path / "state" / "last-reload.json").read_text(), timeout=30)
        wait_until(lambda: collector.on_topic("/other/zones/all/occupancy")[-1].payload
                   == b"", timeout=10)
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    other_events = collector.json_on("/other/events")
    assert not open_visits(other_events, "all")
    assert any(e.get("reason") == "camera_removed" for e in other_events)
    assert collector.on_topic("/street/zones/left/occupancy")[-1].payload == b""
    right = json.loads(collector.on_topic("/street/zones/right/occupancy")[0].payload)
    assert right["total"] == 0
    sequences = [p["sequence"] for p in collector.json_on("/street/detections")]
    assert sequences == list(range(len(sequences)))  # never restarted
    assert all("track_id" in d for p in collector.json_on("/street/detections")
               for d in p["detections"])
