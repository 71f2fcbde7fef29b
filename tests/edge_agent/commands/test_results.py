"""Results reach the operator through a broker outage: a result sent while the broker is
away waits in the MQTT client's queue (QoS 1) and goes out after the reconnect. Real
publisher, real Mosquitto stopped and started."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from edge_agent.commands.results import WINDOW, ResultSender, result_payload
from edge_agent.commands.spec import Outcome
from edge_agent.publish.publisher import RESULT_HEADROOM
from tests.helpers import (
    COMMAND_RESULT,
    DEVICE,
    Broker,
    config_for,
    persist_sessions,
    persistent_subscriber,
    wait_until,
)


def test_a_result_sent_during_an_outage_arrives_after_it(
    tmp_path: Path, broker: Broker, publishers, unique_prefix: str
) -> None:
    assert WINDOW <= RESULT_HEADROOM  # the client's queue has room for every one in flight
    persist_sessions(broker, tmp_path)
    watcher = persistent_subscriber(broker, f"{unique_prefix}/{DEVICE}/cmd/#")
    publisher = publishers(config_for(broker, unique_prefix))
    publisher.start()
    wait_until(lambda: publisher.connected, timeout=10)
    sender = ResultSender(publisher, threading.Event())
    broker.stop()
    wait_until(lambda: not publisher.connected, timeout=10)
    payloads = [result_payload(command="camera/restart", request_id=f"r{index}",
                               outcome=Outcome.OK, received_at=1e9, started_at=1e9,
                               finished_at=1e9 + 1, duration_ms=1000.0,
                               result={"camera": "gate", "next_sequence": index})
                for index in range(5)]
    for payload in payloads:
        assert sender.send("camera/restart", payload)  # queued, not refused
    broker.start()
    arrived = watcher.wait_for("/cmd/camera/restart/result", count=5, timeout=30)
    watcher.client.loop_stop()
    watcher.client.disconnect()
    bodies = [json.loads(message.payload) for message in arrived]
    for body in bodies:
        COMMAND_RESULT.validate(body)
    assert [body["request_id"] for body in bodies] == [f"r{index}" for index in range(5)]
    assert not any(message.retain for message in arrived)
