"""A camera removed by a reload while the broker is away: once the broker is back, none
of the camera's retained topics (state, zone occupancy, line counts, snapshots) is left
on it. Before, the deletes were tried once, at the reload, and lost; subscribers (Home
Assistant, dashboards) then showed the removed camera "occupied" forever.

Real agent, real Mosquitto keeping retained messages on disk across its restart.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import (
    Broker,
    free_port,
    persist_sessions,
    start_agent,
    stop_agent,
    subscribed,
    wait_until,
    write_config,
)

KEEP = """\
  - id: keep
    type: file
    path: {video}
    loop: true
"""
GONE = """\
  - id: gone
    type: file
    path: {video}
    loop: true
    zones:
      - {{name: all, points: [[0, 0], [1, 0], [1, 1], [0, 1]], min_frames: 1}}
    lines:
      - {{name: middle, points: [[0.5, 0], [0.5, 1]]}}
    snapshots: {{enabled: true}}
"""


def retained_under(broker: Broker, topic: str, settle: float = 1.5) -> dict[str, bytes]:
    """What a new subscriber gets as retained messages on `topic` (a filter)."""
    collector = subscribed(broker, topic)
    time.sleep(settle)  # retained messages come right after SUBACK
    collector.client.loop_stop()
    collector.client.disconnect()
    return {m.topic: m.payload for m in collector.messages if m.retain}


@pytest.mark.slow
def test_a_camera_removed_while_the_broker_is_away_leaves_nothing_retained(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    persist_sessions(broker, tmp_path)
    video = samples / "media" / "vtest.mp4"
    both = KEEP.format(video=video) + GONE.format(video=video)
    config = write_config(tmp_path, samples, broker, unique_prefix, both)
    gone = f"{unique_prefix}/+/gone/#"
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_until(lambda: {"zones/all/occupancy", "lines/middle/counts", "state"}
                   <= {t.split("/gone/")[1] for t in retained_under(broker, gone, 0.5)},
                   timeout=90)
        broker.stop()
        write_config(tmp_path, samples, broker, unique_prefix, KEEP.format(video=video))
        agent.send_signal(signal.SIGHUP)
        reload_file = tmp_path / "state" / "last-reload.json"
        wait_until(lambda: reload_file.exists() and "camera gone removed" in
                   reload_file.read_text(), timeout=30)
        time.sleep(1.0)  # the agent has tried (and failed) to delete while away
        broker.start()
        wait_until(lambda: not retained_under(broker, gone), timeout=30)
        assert retained_under(broker, f"{unique_prefix}/+/keep/state")  # still reported
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()[-3000:]


DOWN_AGAIN = """\
  - id: gone
    type: rtsp
    url: rtsp://127.0.0.1:{port}/none
    zones:
      - {{name: all, points: [[0, 0], [1, 0], [1, 1], [0, 1]], min_frames: 1}}
"""


@pytest.mark.slow
def test_a_camera_added_back_while_away_that_cannot_open_still_corrects_the_broker(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    """Removed and added back (same id, now a camera that cannot open, with one zone and
    no line) while the broker is away: once it is back, the line's topic is deleted and
    the zone reads 0 from the new camera, though that camera never sends a frame (its
    retained states went out only with frames)."""
    persist_sessions(broker, tmp_path)
    video = samples / "media" / "vtest.mp4"
    config = write_config(tmp_path, samples, broker, unique_prefix,
                          KEEP.format(video=video) + GONE.format(video=video))
    gone = f"{unique_prefix}/+/gone/#"
    reload_file = tmp_path / "state" / "last-reload.json"
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_until(lambda: {"zones/all/occupancy", "lines/middle/counts"}
                   <= {t.split("/gone/")[1] for t in retained_under(broker, gone, 0.5)},
                   timeout=90)
        broker.stop()
        for cameras, applied in ((KEEP.format(video=video), "camera gone removed"),
                                 (KEEP.format(video=video) + DOWN_AGAIN.format(
                                     port=free_port()), "camera gone restarted")):
            write_config(tmp_path, samples, broker, unique_prefix, cameras)
            agent.send_signal(signal.SIGHUP)
            wait_until(lambda applied=applied: reload_file.exists()
                       and applied in reload_file.read_text(), timeout=30)
        broker.start()

        def corrected() -> bool:
            found = {t.split("/gone/")[1]: p for t, p in retained_under(broker, gone).items()}
            zone = found.get("zones/all/occupancy")
            return ("lines/middle/counts" not in found and zone is not None
                    and json.loads(zone)["total"] == 0)

        wait_until(corrected, timeout=30)
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()[-3000:]
