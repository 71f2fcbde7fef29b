"""configs/mosquitto-bridge.conf as shipped, run by two real Mosquittos: the box's local
broker bridged to a central one. The real agent publishes to the local broker; the
central broker is stopped for 30 s mid-run; a central subscriber must still get every
detection, and the bridge must not echo anything back (no loop). A command sent on the
central broker reaches the agent through the bridge, and its result comes back."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    Broker,
    CommandClient,
    first_frames,
    free_port,
    persistent_subscriber,
    start_agent,
    wait_until,
)

SHIPPED = REPO / "configs" / "mosquitto-bridge.conf"
OUTAGE_S = 30.0


def local_broker_conf(tmp_path: Path, port: int, central: int, device: str) -> Path:
    """Installed as the shipped file's header says: Debian's main mosquitto.conf (its
    persistence lines and include_dir) with the shipped file in conf.d, changed only where
    a technician edits it per box (device id, central address), plus test ports and paths;
    the central broker here speaks plain MQTT, so its CA line goes."""
    text = SHIPPED.read_text()
    text = text.replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    text = text.replace("central.example.lan:8883", f"127.0.0.1:{central}")
    text = re.sub(r"^bridge_cafile .*$", "", text, flags=re.MULTILINE)
    text = text.replace("restart_timeout 2 30", "restart_timeout 1 2")  # faster test
    text = re.sub(r"\bbox1\b", device, text)
    (tmp_path / "local").mkdir()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "edge-agent-bridge.conf").write_text(text)
    conf = tmp_path / "mosquitto.conf"  # what Debian's /etc/mosquitto/mosquitto.conf sets
    conf.write_text(f"user root\npersistence true\npersistence_location {tmp_path}/local/\n"
                    f"include_dir {tmp_path}/conf.d\n")
    return conf


def central_broker(tmp_path: Path) -> Broker:
    port = free_port()
    (tmp_path / "central").mkdir()
    conf = tmp_path / "central.conf"
    conf.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {tmp_path}/central/\n"
    )
    return Broker(port=port, conf=conf, log=tmp_path / "central.log")


def test_shipped_bridge_names_every_setting_a_box_changes() -> None:
    text = SHIPPED.read_text()
    for setting in ("connection central", "cleansession false", "autosave_interval",
                    "topic edge-agent/box1/# out 1", "topic edge-agent/box1/cmd/# in 1",
                    "max_queued_bytes"):
        assert setting in text, setting


@pytest.mark.slow
def test_central_outage_of_30_s_loses_no_detection(tmp_path: Path, samples: Path) -> None:
    device = "gate-7"
    central = central_broker(tmp_path)
    central.start()
    local_port = free_port()
    local = Broker(port=local_port, conf=local_broker_conf(tmp_path, local_port, central.port,
                                                           device), log=tmp_path / "local.log")
    local.start()
    agent = None
    watcher = persistent_subscriber(central, f"edge-agent/{device}/#")
    try:
        clip = first_frames(samples, tmp_path / "street.mp4", 450)  # 45 s at 10 frames/s
        config = tmp_path / "agent.yaml"
        config.write_text(f"""
device_id: {device}
state_dir: {tmp_path / "state"}
model:
  path: {samples / "models" / "yolox_nano.onnx"}
backend: {{type: openvino, device: CPU}}
mqtt: {{host: 127.0.0.1, port: {local_port}}}
health: {{interval_s: 5, metrics_address: ""}}
commands: {{enabled: true}}
cameras:
  - {{id: street, type: file, path: {clip}}}
""")
        log = tmp_path / "agent.log"
        agent = start_agent(config, log)
        watcher.wait_for("/street/detections", count=20, timeout=120)
        operator = CommandClient(central, f"edge-agent/{device}")
        try:  # central -> bridge -> agent -> bridge -> central
            answer = operator.call("health/now", timeout=60)
        finally:
            operator.close()
        assert answer["outcome"] == "ok", answer
        assert len(watcher.on_topic("/cmd/health/now")) == 1, "the command looped"
        central.stop()  # SIGTERM: the central broker saves its sessions and goes away
        down_at = time.monotonic()
        time.sleep(OUTAGE_S)
        central.start()
        outage = time.monotonic() - down_at
        code = agent.wait(timeout=180)  # the file plays to its end
        assert code == 0, log.read_text()
        published = int(re.search(r"(\d+) frames published", log.read_text()).group(1))
        assert published >= 400, log.read_text()

        def sequences() -> list[int]:
            return [json.loads(m.payload)["sequence"]
                    for m in watcher.on_topic("/street/detections")]

        wait_until(lambda: len(set(sequences())) >= published, timeout=120)
        got = sequences()
        assert sorted(set(got)) == list(range(published)), "a detection was lost"
        assert len(got) - published <= 20, "QoS 1 may repeat a few; more is a loop"
        assert outage >= OUTAGE_S
        # Still one command and one result a minute later: nothing went round the bridge.
        assert len(watcher.on_topic("/cmd/health/now")) == 1
        assert len(watcher.on_topic("/cmd/health/now/result")) == 1
        bridge = [m.payload for m in watcher.on_topic(f"{device}/bridge")]
        assert b"1" in bridge, "the bridge's state notification did not reach the centre"
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        watcher.client.loop_stop()
        local.stop()
        central.stop()
