"""SIGHUP reload against the real agent: a broken file keeps the old config running;
a good one starts the added camera and leaves the unchanged one running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conftest import Broker
from tests.edge_agent.test_agent import start_agent, stop_agent, write_config


def _sequences(collector, suffix: str) -> list[int]:
    return [p["sequence"] for p in collector.json_on(suffix)]


def test_reload_bad_then_good(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    street = samples / "media" / "vtest.mp4"
    road = samples / "media" / "traffic_frames.mp4"
    one = f"  - id: street\n    type: file\n    path: {street}\n    loop: true\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, one)
    good = config.read_text()
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for("/street/detections", count=5, timeout=60)

        config.write_text(good.replace("model:", "model:\n  scor: 1"))
        agent.send_signal(signal.SIGHUP)
        time.sleep(2.0)
        before = len(_sequences(collector, "/street/detections"))
        time.sleep(2.0)
        assert agent.poll() is None
        assert len(_sequences(collector, "/street/detections")) > before + 5
        assert "reload rejected" in log.read_text()
        assert "model.scor: unknown key" in log.read_text()

        two = one + f"  - id: road\n    type: file\n    path: {road}\n    loop: true\n"
        write_config(tmp_path, samples, broker, unique_prefix, two)
        agent.send_signal(signal.SIGHUP)
        collector.wait_for("/road/detections", count=5, timeout=30)
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()
    street_seq = _sequences(collector, "/street/detections")
    # The unchanged camera was never restarted: its frame numbers never went back to 0.
    assert street_seq == list(range(len(street_seq)))
    assert "reload: starting camera road" in log.read_text()
    assert "stopping camera street" not in log.read_text()


def test_signal_storm_then_sigterm_stops_cleanly(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    """200 reload requests while frames flow, then SIGTERM: a clean, quick exit 0."""
    one = f"  - id: street\n    type: file\n    path: {samples / 'media' / 'vtest.mp4'}\n"
    config = write_config(tmp_path, samples, broker, unique_prefix, one)
    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        collector.wait_for("/street/detections", count=3, timeout=60)
        for _ in range(200):
            agent.send_signal(signal.SIGHUP)
            time.sleep(0.002)
    finally:
        started = time.monotonic()
        stop_agent(agent, log, timeout=30)
    assert agent.returncode == 0, log.read_text()
    assert time.monotonic() - started < 20
