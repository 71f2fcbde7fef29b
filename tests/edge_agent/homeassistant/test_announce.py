"""The announcer against a real broker and Publisher: configs come back after a broker
that forgot them (no persistence) is reachable again, removals survive a restart of the
agent through the state file, and a broken state file costs a warning, not the agent."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from edge_agent.homeassistant.announce import STATE_FILE, DiscoveryAnnouncer
from tests.helpers import Broker, config_for, wait_until


def flushed(announcer: DiscoveryAnnouncer, timeout: float = 10.0) -> None:
    """Flush as the agent's main loop does until nothing is pending."""
    deadline = time.monotonic() + timeout
    while announcer.flush():
        assert time.monotonic() < deadline, "discovery configs not sent"
        time.sleep(0.1)
    time.sleep(0.5)  # queued in the client: give the broker the time to have them


def retained(subscribe, topic_filter: str, settle: float = 1.0) -> dict[str, bytes]:
    collector = subscribe(topic_filter)
    time.sleep(settle)
    return {m.topic: m.payload for m in collector.messages if m.retain}


@pytest.mark.slow
def test_configs_are_sent_again_after_the_broker_forgot_them(
    tmp_path: Path, broker: Broker, subscribe, publishers, unique_prefix: str
) -> None:
    publisher = publishers(config_for(broker, unique_prefix))
    publisher.start()
    wait_until(lambda: publisher.connected, timeout=10)
    announcer = DiscoveryAnnouncer(publisher, tmp_path)
    wanted = {f"{unique_prefix}-ha/sensor/box/a/config": b'{"a":1}',
              f"{unique_prefix}-ha/sensor/box/b/config": b'{"b":2}'}
    announcer.want(wanted)
    flushed(announcer)
    assert retained(subscribe, f"{unique_prefix}-ha/#") == wanted

    broker.stop()  # persistence false: the retained configs are gone with it
    wait_until(lambda: not publisher.connected, timeout=10)
    broker.start()
    wait_until(lambda: publisher.connected, timeout=30)
    flushed(announcer)
    assert retained(subscribe, f"{unique_prefix}-ha/#") == wanted


@pytest.mark.slow
def test_a_smaller_config_after_a_restart_removes_the_rest(
    tmp_path: Path, broker: Broker, subscribe, publishers, unique_prefix: str
) -> None:
    topics = [f"{unique_prefix}-ha/binary_sensor/box/{n}/config" for n in "abc"]
    first = publishers(config_for(broker, unique_prefix))
    first.start()
    wait_until(lambda: first.connected, timeout=10)
    before = DiscoveryAnnouncer(first, tmp_path)
    before.want(dict.fromkeys(topics, b"{}"))
    flushed(before)
    first.close()

    second = publishers(config_for(broker, unique_prefix))  # "the agent restarted"
    second.start()
    wait_until(lambda: second.connected, timeout=10)
    after = DiscoveryAnnouncer(second, tmp_path)
    assert after.announced == frozenset(topics)
    after.want({topics[0]: b"{}"})
    flushed(after)
    assert retained(subscribe, f"{unique_prefix}-ha/#") == {topics[0]: b"{}"}
    assert after.announced == frozenset(topics[:1])

    after.want({})  # homeassistant.enabled: false
    flushed(after)
    assert retained(subscribe, f"{unique_prefix}-ha/#") == {}
    assert not (tmp_path / STATE_FILE).exists()


@pytest.mark.parametrize("content", ["{not json", '{"topics": 3}', '["a"]', ""])
def test_a_broken_state_file_is_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE).write_text(content)

    class Offline:  # nothing is sent here: only the file is read
        connected = False
        disconnects = 0

        def publish_retained_topic(self, topic: str, payload: bytes) -> bool:
            raise AssertionError("not connected")

    with caplog.at_level(logging.WARNING):
        announcer = DiscoveryAnnouncer(Offline(), tmp_path)
    assert announcer.announced == frozenset()
    assert "cannot read" in caplog.text
    announcer.want({"ha/sensor/x/y/config": b"{}"})
    assert announcer.flush() == 1
