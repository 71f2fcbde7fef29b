"""What health says of commands, read as an operator reads it: the retained health message
of the real agent, after requests through a real Mosquitto.

The inbox is overflowed for certain by crashing the channel's worker (EDGE_AGENT_FAULT):
while it waits to restart (about a second) nothing reads the inbox, so a QoS 0 flood
of more than INBOX_MESSAGES requests fills it and the rest are dropped unanswered.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_agent.commands.channel import INBOX_MESSAGES
from tests.helpers import (
    Broker,
    CommandClient,
    health_config,
    restart_with,
    start_agent,
    stop_agent,
    subscribed,
    wait_for_health,
    wait_until,
)

pytestmark = pytest.mark.slow
FLOOD = 2 * INBOX_MESSAGES
"""Sent while the worker is down: about half of it is dropped."""


def test_health_counts_requests_by_outcome_duplicates_and_drops(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    restart_with(broker, "max_queued_messages 20000\n")  # the operator takes 1,000+ results
    cameras = (f"  - id: vtest\n    type: file\n    path: {samples / 'media' / 'vtest.mp4'}\n"
               "    loop: true\n    realtime: true\n    detect: {fps: 2}\n")
    config = health_config(tmp_path, samples, broker, unique_prefix, cameras,
                           "  interval_s: 1\n  metrics_address: ''\n")
    config.write_text(config.read_text() + "commands: {enabled: true}\n")
    base = f"{unique_prefix}/box1"
    operator = CommandClient(broker, base, validate=False)
    health = subscribed(broker, f"{base}/health")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log, env={"EDGE_AGENT_FAULT": "commands@3"})
    try:
        wait_until(lambda: "worker commands crashed" in log.read_text(), timeout=120)
        for index in range(FLOOD):  # QoS 0: the broker hands each on at once
            operator.send("bogus", {"request_id": f"flood-{index}"}, qos=0)
        flood_answered = _settled(operator, "flood-")  # the worker is back, the inbox empty
        ok = operator.call("config/get")
        rejected = operator.call("snapshot", quality="80")
        unknown = operator.call("no/such-command")
        operator.send("config/get", {"request_id": ok["request_id"]})
        duplicate = operator.result(ok["request_id"], count=2)
        assert _answered(operator, "flood-") == flood_answered
        body = wait_for_health(
            health, lambda h: (h.get("commands") or {}).get("duplicates") == 1, timeout=30)
        assert agent.poll() is None, log.read_text()[-3000:]
    finally:
        stop_agent(agent, log)
        operator.close()
        health.client.loop_stop()

    assert ok["outcome"] == "ok", ok
    assert (rejected["outcome"], rejected["code"]) == ("rejected", "bad_arguments")
    assert (unknown["outcome"], unknown["code"]) == ("rejected", "unknown_command")
    assert duplicate["duplicate"] is True
    assert 0 < flood_answered < FLOOD  # the inbox held some, not all
    dropped = FLOOD - flood_answered
    assert body["commands"] == {
        "received": FLOOD + 4, "ok": 1, "rejected": 2 + flood_answered, "failed": 0,
        "duplicates": 1, "dropped": dropped, "dropped_recently": dropped, "waiting": 0,
        "running": 0,
    }
    assert body["status"] == "degraded"
    assert (f"commands dropped {dropped} request(s) unanswered in the last 60 s (inbox "
            "full, or a command name too long to answer on)") in body["reasons"]
    workers = {worker["name"]: worker for worker in body["workers"]}
    assert workers["commands"]["crashes"] == 1  # the channel's worker is watched too


def _answered(operator: CommandClient, prefix: str) -> int:
    """Results so far for requests whose id starts with `prefix` (each answered once)."""
    return sum(1 for body in operator.finals()
               if (body["request_id"] or "").startswith(prefix))


def _settled(operator: CommandClient, prefix: str, quiet_s: float = 1.0) -> int:
    """The number of answers to `prefix` requests, once some came and then no more for
    `quiet_s` (the restarted worker has emptied the inbox)."""
    deadline = time.monotonic() + 60
    count, since = 0, time.monotonic()
    while time.monotonic() < deadline:
        now_count = _answered(operator, prefix)
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif count and time.monotonic() - since >= quiet_s:
            return count
        time.sleep(0.05)
    raise AssertionError(f"answers to {prefix}* never settled: {count}")
