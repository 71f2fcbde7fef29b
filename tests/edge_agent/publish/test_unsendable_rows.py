"""Spooled rows no broker can take (a damaged or edited spool): each is set aside at once
and counted, and every good row around them still arrives, in order. Real spool file,
real Mosquitto."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge_agent.publish.poison import unsendable_topic
from edge_agent.publish.spool import Spool
from tests.helpers import DEVICE, Broker, config_for, wait_until

# (how the topic is stored, value): str is stored as text, bytes as text that is not
# UTF-8 ("text") or as a BLOB ("blob").
BAD_TOPICS: list[tuple[str, object]] = [
    ("text", "+"),
    ("text", "#"),
    ("text", "cams/+/detections"),
    ("text", "cams/door/#"),
    ("text", ""),
    ("text", "cams/\x00/detections"),
    ("text", "t" * 65536),
    ("text", b"cams/\xff\xfe/detections"),
    ("blob", b"cams/\xc3\x28"),
]
GOOD_BETWEEN = 20  # good rows before each bad one, and after the last


def _fill(path: Path, base: str) -> tuple[list[int], int]:
    """A spool file: runs of good rows with one bad row between each; the good sequences."""
    spool = Spool(path, max_messages=10**6, max_bytes=10**9, max_age_s=3600.0)
    good: list[int] = []
    bad_ids: list[tuple[int, str, object]] = []
    sequence = 0
    for kind, topic in [*BAD_TOPICS, (None, None)]:
        for _ in range(GOOD_BETWEEN):
            spool.append(f"{base}/cam/detections", json.dumps({"sequence": sequence}).encode())
            good.append(sequence)
            sequence += 1
        if kind is not None:
            spool.append("placeholder", b'{"bad": true}')
            bad_ids.append((spool.last_id, kind, topic))
    spool.close()
    with sqlite3.connect(path) as db:
        for row, kind, topic in bad_ids:
            if isinstance(topic, str):
                db.execute("UPDATE messages SET topic = ? WHERE id = ?", (topic, row))
            elif kind == "text":
                db.execute("UPDATE messages SET topic = CAST(? AS TEXT) WHERE id = ?", (topic, row))
            else:
                db.execute("UPDATE messages SET topic = ? WHERE id = ?", (topic, row))
    return good, len(bad_ids)


def test_unsendable_rows_are_dead_lettered_and_the_rest_arrive_in_order(
    tmp_path: Path, broker: Broker, subscribe, unique_prefix: str, publishers,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    good, bad = _fill(state / "spool.sqlite3", f"{unique_prefix}/{DEVICE}")
    collector = subscribe(f"{unique_prefix}/#")
    publisher = publishers(config_for(broker, unique_prefix, qos=1), state_dir=state)
    publisher.start()
    arrived = collector.wait_for("/cam/detections", count=len(good), timeout=60)
    assert [json.loads(m.payload)["sequence"] for m in arrived] == good
    wait_until(lambda: publisher.outbox.dead_lettered == bad, 20)
    wait_until(lambda: publisher.queued == 0, 20)
    assert publisher.outbox.worker.crashes == 0  # set aside, not a crash-loop
    letters = publisher.outbox.spool.dead_letters()
    assert len(letters) == bad == publisher.outbox.spool.dead_lettered_total
    assert all(reason and payload == b'{"bad": true}' for reason, _, payload in letters)


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("+", "wildcard"), ("#", "wildcard"), ("a/+/b", "wildcard"), ("a/#", "wildcard"),
        ("", "empty"), ("a\x00b", "NUL"), ("t" * 65536, "65536 bytes"),
        ("é" * 32768, "65536 bytes"),
        (b"\xff".decode("utf-8", "surrogateescape"), "UTF-8"), (None, "not text"),
    ],
)
def test_topics_no_broker_takes_are_named(topic: object, why: str) -> None:
    reason = unsendable_topic(topic)
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize("topic", ["a", "a/b/c", "/", "é/カメラ", "t" * 65535, "$x/y"])
def test_ordinary_topics_pass(topic: str) -> None:
    assert unsendable_topic(topic) is None
