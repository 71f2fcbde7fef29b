"""configs/mosquitto-acl.conf as shipped, in a real Mosquitto with a password file: a
box reads only its own commands and writes only its own topics; an operator commands
every box and reads everything."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import REPO, Broker, Collector, free_port

USERS = {"boxa": "pw-a-123", "boxb": "pw-b-456", "operator": "pw-op-789"}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    passwords = tmp_path / "passwd"
    for index, (user, password) in enumerate(USERS.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if index == 0 else []), "-b",
                        str(passwords), user, password], check=True, capture_output=True)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
                    f"persistence false\npassword_file {passwords}\n"
                    f"acl_file {REPO / 'configs' / 'mosquitto-acl.conf'}\n")
    broker = Broker(port=port, conf=conf, log=tmp_path / "mosquitto.log")
    broker.start()
    yield broker
    broker.stop()


def connect(broker: Broker, user: str | None, *topics: str) -> Collector:
    """A logged-in MQTT 5 client subscribed to `topics` (QoS 1)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"{user}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    if user is not None:
        client.username_pw_set(user, USERS[user])
    collector = Collector(client)
    client.on_message = collector.on_message
    connected, done = threading.Event(), threading.Event()
    refused: list[str] = []

    def on_connect(_c: object, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: done.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(10)
    if refused:
        client.loop_stop()
        raise ConnectionRefusedError(refused[0])
    if topics:
        client.subscribe([(topic, 1) for topic in topics])
        assert done.wait(10)
    return collector


def publish(collector: Collector, topic: str, payload: bytes) -> None:
    collector.client.publish(topic, payload, qos=1).wait_for_publish(10)


def test_each_box_only_its_own_topics_and_the_operator_everything(acl_broker: Broker) -> None:
    box_a = connect(acl_broker, "boxa", "edge-agent/boxa/cmd/#", "edge-agent/boxb/cmd/#",
                    "edge-agent/boxb/#")
    box_b = connect(acl_broker, "boxb", "edge-agent/boxb/cmd/#")
    operator = connect(acl_broker, "operator", "edge-agent/#")
    try:
        # The operator commands both; A gets only its own (B's was sent first, same client).
        publish(operator, "edge-agent/boxb/cmd/reload", b"for-b")
        publish(operator, "edge-agent/boxa/cmd/reload", b"for-a")
        box_a.wait_for("edge-agent/boxa/cmd/reload", timeout=10)
        box_b.wait_for("edge-agent/boxb/cmd/reload", timeout=10)
        assert [m.payload for m in box_a.messages] == [b"for-a"]

        # A cannot speak for B (status, results, commands), only for itself.
        for topic in ("edge-agent/boxb/status", "edge-agent/boxb/cmd/reload/result",
                      "edge-agent/boxb/cmd/reload"):
            publish(box_a, topic, b"forged")
        publish(box_a, "edge-agent/boxa/status", b"online")
        operator.wait_for("edge-agent/boxa/status", timeout=10)
        time.sleep(0.3)
        assert b"forged" not in [m.payload for m in operator.messages]
        assert [m.payload for m in box_b.messages] == [b"for-b"]

        # B's result reaches the operator; A, subscribed to all of B, still sees nothing.
        publish(box_b, "edge-agent/boxb/cmd/reload/result", b'{"outcome":"ok"}')
        operator.wait_for("edge-agent/boxb/cmd/reload/result", timeout=10)
        time.sleep(0.3)
        assert [m.payload for m in box_a.messages] == [b"for-a"]
    finally:
        for collector in (box_a, box_b, operator):
            collector.client.loop_stop()
            collector.client.disconnect()


def test_no_login_no_access(acl_broker: Broker) -> None:
    with pytest.raises(ConnectionRefusedError):
        connect(acl_broker, None)
