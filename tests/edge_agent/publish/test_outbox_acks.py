"""Delivered rows leave the spool in batches (ACK_BATCH rows or ACK_LINGER_S), never
counted as waiting meanwhile, and at once when the publisher closes. Real Mosquitto."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from edge_agent.publish import outbox
from edge_agent.publish.outbox import ACK_BATCH
from tests.helpers import config_for, detection_message, wait_until


def rows_on_disk(state_dir: Path) -> int:
    with sqlite3.connect(state_dir / "spool.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def test_acknowledged_rows_are_deleted_in_batches(
    broker, subscribe, unique_prefix, publishers, tmp_path: Path, monkeypatch
) -> None:
    linger = 2.0  # longer than the default, so a slow test box still sees the rows wait
    monkeypatch.setattr(outbox, "ACK_LINGER_S", linger)
    collector = subscribe(f"{unique_prefix}/#")
    publisher = publishers(config_for(broker, unique_prefix), state_dir=tmp_path)
    publisher.start()
    wait_until(lambda: publisher.connected)
    few = 3
    assert few < ACK_BATCH
    for _ in range(few):
        publisher.publish_detections("cam", detection_message(2))
    wait_until(lambda: publisher.acknowledged == few)
    stats = publisher.outbox.stats()
    assert stats.queued == 0  # delivered: not waiting, even before the rows are deleted
    assert rows_on_disk(tmp_path) == few  # within the linger, one DELETE for all of them
    wait_until(lambda: rows_on_disk(tmp_path) == 0, timeout=linger + 5)

    many = ACK_BATCH * 2 + 5  # a full batch is deleted without waiting for the linger
    started = time.monotonic()
    for _ in range(many):
        publisher.publish_detections("cam", detection_message(1))
    wait_until(lambda: publisher.acknowledged == few + many, timeout=20)
    wait_until(lambda: rows_on_disk(tmp_path) <= ACK_BATCH, timeout=10)
    assert len(collector.wait_for("/cam/detections", count=few + many)) == few + many

    publisher.publish_detections("cam", detection_message(1))
    wait_until(lambda: publisher.acknowledged == few + many + 1)
    publisher.close()  # closing deletes what was delivered at once
    assert time.monotonic() - started < 30
    assert rows_on_disk(tmp_path) == 0
