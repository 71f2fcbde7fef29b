"""The channel's checks, one row per kind of hostile or unlucky request, each result
validated against docs/schemas/command-result.schema.json.

The agent is replaced by `TableBox` at the `Box` interface (what handlers may reach);
test_commands_agent.py runs the same channel inside the real agent with a real broker.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from edge_agent.commands import Call, Command, LatestFrame, Reply
from edge_agent.commands.channel import INBOX_MESSAGES, CommandChannel
from edge_agent.commands.dedupe import RequestLog
from edge_agent.commands.registry import Registry, default_registry
from edge_agent.commands.stats import ChannelStats
from edge_agent.config.model import AgentConfig
from edge_agent.redact import MASK
from engines.base import Detections
from tests.helpers import REPO

RESULT_SCHEMA = json.loads((REPO / "docs/schemas/command-result.schema.json").read_text())
LONG = "x" * 2000


class TableBox:
    """A box with one camera `cam1`; camera/restart waits for `release` (to test busy)."""

    def __init__(self, allow: list[str]) -> None:
        self.config = AgentConfig.model_validate({
            "device_id": "box1", "model": {"path": "/m.onnx"},
            "cameras": [{"id": "cam1", "type": "file", "path": "/v.mp4"},
                        {"id": "door", "type": "rtsp", "url": "rtsp://admin:hunter22@cam/x"}],
            "mqtt": {"username": "op", "password": "hunter22"},
            "commands": {"enabled": True, "allow": allow},
        })
        self.release = threading.Event()
        self.restarts = 0
        self.limit = 1 << 20
        image = np.zeros((480, 1280, 3), np.uint8)
        boxes = np.array([[100, 100, 300, 400]], np.float32)
        self.latest = LatestFrame("cam1", 7, time.time(), image,
                                  Detections(boxes, np.array([0.9], np.float32),
                                             np.array([0], np.int32)), ("person",))

    device_id = "box1"
    state_dir = Path("/nonexistent")

    def running_config(self) -> AgentConfig:
        return self.config

    def camera_ids(self) -> list[str]:
        return ["cam1"]

    def latest_frame(self, camera_id: str) -> LatestFrame | None:
        return self.latest if camera_id == "cam1" else None

    def reload(self, timeout: float) -> dict[str, Any]:
        return {"at": "2026-01-01T00:00:00.000Z", "ok": True, "error": None, "applied": []}

    def restart_camera(self, camera_id: str, timeout: float) -> int:
        self.release.wait(timeout)
        self.restarts += 1
        return 100

    def health_now(self) -> dict[str, Any]:
        return {"status": "ok"}

    def publish(self, subtopic: str, payload: bytes) -> bool:
        return True

    def message_limit(self, subtopic: str) -> int:
        return self.limit


class Recorder:
    """Stands in for ResultSender: keeps (command, parsed result)."""

    def __init__(self) -> None:
        self.results: list[tuple[str, dict]] = []
        self.lock = threading.Condition()
        self.refuse_over = 1 << 30
        """As the client does with a message over the broker's stated limit."""

    def send(self, command: str, payload: bytes) -> bool:
        if len(payload) > self.refuse_over:
            return False
        body = json.loads(payload)
        jsonschema.validate(body, RESULT_SCHEMA, format_checker=jsonschema.FormatChecker())
        with self.lock:
            self.results.append((command, body))
            self.lock.notify_all()
        return True

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict]]:
        with self.lock:
            self.lock.wait_for(lambda: len(self.results) >= count, timeout)
            assert len(self.results) >= count, self.results
            return list(self.results)


def boom(_call: Call) -> Reply:
    raise RuntimeError("cannot open rtsp://admin:hunter22@cam/x")


def make_channel(tmp_path: Path, allow: list[str], registry: Registry | None = None
                 ) -> tuple[CommandChannel, TableBox, Recorder]:
    box, recorder = TableBox(allow), Recorder()
    log = RequestLog(tmp_path / "commands.db", 3600, 1000)
    channel = CommandChannel(registry or default_registry(), box, lambda _stop: recorder, log)
    channel.start()
    return channel, box, recorder


@pytest.fixture
def channel(tmp_path: Path):
    made, box, recorder = make_channel(tmp_path, ["camera/restart"])
    yield made, box, recorder
    box.release.set()
    made.stop(2.0)


REJECTIONS = [
    # (topic part, payload, code, request_id in the answer)
    ("snapshot", f'{{"request_id":"r1","camera":"{LONG}"}}'.encode(), "too_large", None),
    ("nope", b"[" * 70000, "too_large", None),
    ("snapshot", b'{"request_id": ', "malformed", None),
    ("snapshot", b"\xff\xfe{}", "malformed", None),
    ("nope", b"[" * 60000, "malformed", None),
    ("snapshot", b'{"request_id":"r1","request_id":', "malformed", None),
    ("snapshot", b"", "malformed", None),
    ("snapshot", b"NaN", "not_object", None),
    ("snapshot", b"[1, 2]", "not_object", None),
    ("snapshot", b'"request_id"', "not_object", None),
    ("snapshot", b"null", "not_object", None),
    ("snapshot", b"{}", "bad_request_id", None),
    ("snapshot", b'{"request_id": 5}', "bad_request_id", None),
    ("snapshot", b'{"request_id": null}', "bad_request_id", None),
    ("snapshot", b'{"request_id": ["r"]}', "bad_request_id", None),
    ("snapshot", b'{"request_id": ""}', "bad_request_id", None),
    ("snapshot", b'{"request_id": "a b"}', "bad_request_id", None),
    ("snapshot", b'{"request_id": "\\u202e"}', "bad_request_id", None),
    ("snapshot", json.dumps({"request_id": "r" * 129}).encode(), "bad_request_id", None),
    ("snapshot", json.dumps({"request_id": "nl1\n"}).encode(), "bad_request_id", None),
    ("snapshot", json.dumps({"request_id": "r" * 128 + "\n"}).encode(), "bad_request_id", None),
    ("bogus", b'{"request_id": "r1"}', "unknown_command", "r1"),
    ("snapshot/extra", b'{"request_id": "r1"}', "unknown_command", "r1"),
    ("reload", b'{"request_id": "r1"}', "not_allowed", "r1"),
    ("snapshot", b'{"request_id": "r1", "camera": 5}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "quality": "80"}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "quality": 80.0}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "quality": true}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "quality": 200}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "camera": "../etc"}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "topic": "a/#"}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "rm": "-rf"}', "bad_arguments", "r1"),
    ("health/now", b'{"request_id": "r1", "x": 1}', "bad_arguments", "r1"),
    ("camera/restart", b'{"request_id": "r1"}', "bad_arguments", "r1"),
    ("snapshot", b'{"request_id": "r1", "camera": "cam9"}', "not_found", "r1"),
    ("camera/restart", b'{"request_id": "r1", "camera": "cam9"}', "not_found", "r1"),
]


@pytest.mark.parametrize(("name", "payload", "code", "request_id"), REJECTIONS)
def test_each_hostile_request_is_rejected_with_its_reason(
        channel, name: str, payload: bytes, code: str, request_id: str | None) -> None:
    made, box, recorder = channel
    made.on_message(name, payload)
    [(topic, body)] = recorder.wait(1)
    assert (topic, body["outcome"], body["code"]) == (name, "rejected", code), body
    assert body["request_id"] == request_id
    assert body["reason"]
    assert body["duplicate"] is False
    assert box.restarts == 0


def test_results_are_never_answered(channel) -> None:
    made, _box, recorder = channel
    for name in ("snapshot/result", "result", "x/y/result"):
        made.on_message(name, b'{"request_id": "r1"}')
    made.on_message("health/now", b'{"request_id": "r2"}')
    assert [body["request_id"] for _, body in recorder.wait(1)] == ["r2"]
    time.sleep(0.1)
    assert len(recorder.results) == 1


def test_commands_answer_once_busy_and_duplicates(channel) -> None:
    made, box, recorder = channel
    made.on_message("camera/restart", b'{"request_id": "a", "camera": "cam1"}')
    made.on_message("camera/restart", b'{"request_id": "b", "camera": "cam1"}')  # busy
    made.on_message("camera/restart", b'{"request_id": "a", "camera": "cam1"}')  # running
    made.on_message("snapshot", b'{"request_id": "s", "max_width": 320}')  # other kind runs
    first = recorder.wait(3)
    by_id = {body["request_id"]: body for _, body in first}
    assert by_id["b"]["code"] == "busy"
    assert (by_id["a"]["outcome"], by_id["a"]["step"], by_id["a"]["duplicate"]) == (
        "progress", "running", True)
    snap = by_id["s"]["result"]
    assert (snap["width"], snap["height"], snap["detections"]) == (320, 120, 1)
    box.release.set()
    done = recorder.wait(4)[-1][1]
    assert (done["request_id"], done["outcome"], done["result"]) == (
        "a", "ok", {"camera": "cam1", "next_sequence": 100})
    made.on_message("camera/restart", b'{"request_id": "a", "camera": "cam1"}')  # repeat
    again = recorder.wait(5)[-1][1]
    assert again["duplicate"] is True
    assert again["result"] == done["result"]
    assert again["finished_at"] == done["finished_at"]  # the stored one, not a new run
    assert box.restarts == 1


def test_a_failing_handler_fails_the_request_with_a_redacted_reason(tmp_path: Path) -> None:
    registry = Registry([Command("test/boom", boom, "raises")])
    made, _box, recorder = make_channel(tmp_path, [], registry)
    try:
        made.on_message("test/boom", b'{"request_id": "r1"}')
        recorder.wait(1)
        made.on_message("test/boom", b'{"request_id": "r2"}')  # the channel goes on
        bodies = [body for _, body in recorder.wait(2)]
    finally:
        made.stop(2.0)
    assert [(b["outcome"], b["code"]) for b in bodies] == [("failed", "error")] * 2
    assert "hunter22" not in bodies[0]["reason"]
    assert "RuntimeError" in bodies[0]["reason"]


def test_a_request_cut_off_by_a_restart_is_never_run_again(tmp_path: Path) -> None:
    before = RequestLog(tmp_path / "commands.db", 3600, 1000)
    assert before.claim("camera/restart", "r1")
    before.close()  # the agent died before the result was stored
    made, box, recorder = make_channel(tmp_path, ["camera/restart"])
    box.release.set()
    try:
        made.on_message("camera/restart", b'{"request_id": "r1", "camera": "cam1"}')
        [(_, body)] = recorder.wait(1)
    finally:
        made.stop(2.0)
    assert (body["outcome"], body["code"], body["duplicate"]) == ("failed", "interrupted", True)
    assert box.restarts == 0


def test_config_get_masks_secrets(channel) -> None:
    made, _box, recorder = channel
    made.on_message("config/get", b'{"request_id": "c"}')
    [(_, body)] = recorder.wait(1)
    config = body["result"]["config"]
    assert config["mqtt"]["password"] == MASK
    assert config["mqtt"]["username"] == "op"
    assert "hunter22" not in json.dumps(body)
    assert config["cameras"][1]["url"] == "rtsp://***@cam/x"
    assert config["commands"]["allow"] == ["camera/restart"]


def test_a_long_result_is_answered_whole_and_kept_short_for_repeats(channel) -> None:
    made, box, recorder = channel
    noise = np.random.default_rng(1).integers(0, 255, (480, 1280, 3), np.uint8)
    box.latest = LatestFrame("cam1", 7, time.time(), noise, box.latest.detections,
                             ("person",))
    made.on_message("snapshot", b'{"request_id": "big", "quality": 95}')
    [(_, first)] = recorder.wait(1)
    assert len(base64.b64decode(first["result"]["jpeg_base64"])) == first["result"]["bytes"]
    made.on_message("snapshot", b'{"request_id": "big", "quality": 95}')
    again = recorder.wait(2)[-1][1]
    assert again["duplicate"] is True
    assert "not_kept" in again["result"]
    assert again["finished_at"] == first["finished_at"]


def test_a_request_id_that_cannot_be_recorded_is_not_run(channel) -> None:
    made, box, recorder = channel
    made.requests.close()  # stands for a disk that fails
    box.release.set()
    made.on_message("camera/restart", b'{"request_id": "r1", "camera": "cam1"}')
    [(_, body)] = recorder.wait(1)
    assert (body["outcome"], body["code"], body["request_id"]) == ("failed", "unavailable", "r1")
    assert box.restarts == 0


def test_a_result_over_the_broker_s_limit_is_still_answered(channel) -> None:
    made, box, recorder = channel
    box.limit = 2000  # the broker's stated limit: the snapshot checks it first
    made.on_message("snapshot", b'{"request_id": "s1"}')
    [(_, first)] = recorder.wait(1)
    assert (first["outcome"], first["code"]) == ("failed", "error")
    assert "over the broker's limit" in first["reason"]
    box.limit = 1 << 20
    recorder.refuse_over = 3000  # a result the client refuses for its size anyway
    made.on_message("snapshot", b'{"request_id": "c1"}')
    second = recorder.wait(2)[-1][1]
    assert (second["request_id"], second["outcome"], second["code"]) == ("c1", "failed", "error")
    assert "could not be sent" in second["reason"]


def test_a_retained_request_is_refused_never_run(channel) -> None:
    """The broker replays a retained request to every new session: once its id is
    forgotten it would run again, so it is answered `retained` and never obeyed."""
    made, box, recorder = channel
    made.on_message("camera/restart", b'{"request_id": "ret-1", "camera": "cam1"}', True)
    [(topic, body)] = recorder.wait(1)
    assert (topic, body["outcome"], body["code"]) == ("camera/restart", "rejected", "retained")
    assert body["request_id"] == "ret-1"
    assert box.restarts == 0


# -- stats(): what health shows of the channel -------------------------------------------


def wait_for_stats(made: CommandChannel, **expected: int) -> ChannelStats:
    """The channel's stats once they show `expected` (the worker counts after it sends)."""
    deadline = time.monotonic() + 30
    while True:
        stats = made.stats()
        if all(getattr(stats, key) == value for key, value in expected.items()):
            return stats
        assert time.monotonic() < deadline, (stats, expected)
        time.sleep(0.01)


def test_stats_count_each_request_once_by_how_it_ended(tmp_path: Path) -> None:
    registry = default_registry()
    registry.register(Command("test/boom", boom, "raises"))
    made, box, recorder = make_channel(tmp_path, ["camera/restart"], registry)
    try:
        assert made.stats() == ChannelStats(0, 0, 0, 0, 0, 0, 0, 0)
        made.on_message("health/now", b'{"request_id": "ok1"}')
        made.on_message("snapshot", b'{"request_id": "bad1", "quality": "80"}')
        made.on_message("bogus", b'{"request_id": "unknown1"}')
        made.on_message("test/boom", b'{"request_id": "boom1"}')
        made.on_message("camera/restart", b'{"request_id": "a", "camera": "cam1"}')
        recorder.wait(4)
        running = wait_for_stats(made, running=1)
        made.on_message("camera/restart", b'{"request_id": "a", "camera": "cam1"}')  # running
        made.on_message("camera/restart", b'{"request_id": "b", "camera": "cam1"}')  # busy
        made.on_message("x" * 1025, b'{"request_id": "long"}')  # no topic to answer on
        made.on_message("snapshot/result", b'{"request_id": "r"}')  # a result: not a request
        recorder.wait(6)
        box.release.set()
        recorder.wait(7)
        made.on_message("camera/restart", b'{"request_id": "a", "camera": "cam1"}')  # stored
        recorder.wait(8)
        stats = wait_for_stats(made, duplicates=2, running=0)
    finally:
        box.release.set()
        made.stop(2.0)
    assert (running.ok, running.rejected, running.failed, running.waiting) == (1, 2, 1, 0)
    assert stats == ChannelStats(received=9, ok=2, rejected=3, failed=1, duplicates=2,
                                 dropped=1, waiting=0, running=0)
    outcomes = [body["outcome"] for _, body in recorder.results if not body["duplicate"]]
    assert (outcomes.count("ok"), outcomes.count("rejected"), outcomes.count("failed")) == (
        stats.ok, stats.rejected, stats.failed)
    assert stats.received == (stats.ok + stats.rejected + stats.failed + stats.duplicates
                              + stats.dropped + stats.waiting + stats.running)


def test_a_full_inbox_drops_and_counts_what_it_cannot_hold(tmp_path: Path) -> None:
    """The worker not yet reading (as while it restarts after a crash): the inbox holds
    INBOX_MESSAGES, the rest are dropped unanswered, and stats() says so."""

    class Sent:  # a thousand results: counted, not validated (the rows above check those)
        count = 0

        def send(self, _command: str, _payload: bytes) -> bool:
            self.count += 1
            return True

    sent = Sent()
    made = CommandChannel(default_registry(), TableBox([]), lambda _stop: sent,
                          RequestLog(tmp_path / "commands.db", 3600, 1000))
    extra = 7
    for index in range(INBOX_MESSAGES + extra):
        made.on_message("bogus", f'{{"request_id": "f{index}"}}'.encode())
    held = made.stats()
    assert (held.received, held.waiting, held.dropped) == (INBOX_MESSAGES + extra,
                                                           INBOX_MESSAGES, extra)
    made.start()
    try:
        done = wait_for_stats(made, rejected=INBOX_MESSAGES)
    finally:
        made.stop(2.0)
    assert done == ChannelStats(received=INBOX_MESSAGES + extra, ok=0, rejected=INBOX_MESSAGES,
                                failed=0, duplicates=0, dropped=extra, waiting=0, running=0)
    assert sent.count == INBOX_MESSAGES  # the dropped ones got no answer


def test_a_request_whose_handling_fails_counts_as_dropped(
        channel, monkeypatch: pytest.MonkeyPatch) -> None:
    made, _box, recorder = channel

    def broken(_inbound: object) -> None:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(made, "_check", broken)
    made.on_message("health/now", b'{"request_id": "lost"}')
    wait_for_stats(made, dropped=1)
    monkeypatch.undo()
    made.on_message("health/now", b'{"request_id": "next"}')  # the channel goes on
    assert [body["request_id"] for _, body in recorder.wait(1)] == ["next"]
    assert wait_for_stats(made, ok=1).received == 2
