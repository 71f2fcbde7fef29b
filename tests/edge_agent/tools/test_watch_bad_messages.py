"""`edge-agent watch` against messages that are not what the agent sends.

Anyone allowed on the broker can leave a retained message on the box's topics. The kind:
any payload on any of the topics watch reads. The table test walks every field watch
reads and gives it each wrong type; the fuzz test throws a few thousand random payloads;
the end-to-end test leaves retained garbage on a real broker and runs the real command.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_agent.tools.watch_message import BOOLEAN, DETECTIONS, HEALTH, INFO, INTEGER, NUMBER, TEXT
from edge_agent.tools.watch_view import CONTROL, WatchState, render
from tests.helpers import Broker, FakeAgentTraffic, frame_payload, table_row, watch, watch_config

BASE = "p/box1"
WALL = 1_800_000_000.0

VALID_HEALTH = {
    "status": "ok", "reasons": [], "uptime_s": 10,
    "system": {"cpu_percent": 5.0, "rss_bytes": 1000, "disk": {"free_percent": 50.0},
               "temperatures": [{"celsius": 40.0}]},
    "mqtt": {"connected": True, "queued": 0, "dropped": 0},
    "cameras": [{"id": "lobby", "state": "RUNNING", "input_fps": 10.0, "frames_dropped": 0,
                 "last_error": None, "processing_error": None, "drift": {"reasons": []}}],
}
VALID_INFO = {
    "agent_version": "1.0", "backend": "openvino", "device": "CPU", "started_at": "x",
    "model": {"name": "m", "input": {"width": 416, "height": 416}},
    "cameras": [{"id": "lobby"}],
}
VALID_DETECTIONS = json.loads(frame_payload("lobby", 1, [0, 2], WALL))

WRONG = {  # JSON text of values that are not of each kind
    TEXT: ["1", "[]", "{}", "true", '["a"]', "1e400", '{"a": {"b": [1]}}'],
    NUMBER: ['"1"', "[]", "{}", "true", "1e400", "-1e400", "NaN", "Infinity", "1" + "0" * 400,
             "1e300", "[" * 50 + "]" * 50],
    INTEGER: ['"1"', "[]", "{}", "true", "1.5", "9" * 5000, "1e400"],
    BOOLEAN: ['"yes"', "1", "[]", "{}"],
}
NOT_AN_OBJECT = [b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true", b"1e400", b"NaN",
                 b"   ", b"{", b'{"a": }', b"\xff\xfe{}", b"\xc3\x28", b"{}" * 3,
                 b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                 b"9" * 5000, b"\x00" * 10]


def leaf_paths(spec: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(path, kind) of every leaf field; a list element is path item 0."""
    if isinstance(spec, dict):
        return [leaf for key, inner in spec.items() for leaf in leaf_paths(inner, (*path, key))]
    if isinstance(spec, list):
        return leaf_paths(spec[0], (*path, 0))
    return [(path, spec)]


def with_raw(valid: dict, path: tuple, raw: str) -> bytes:
    """`valid` as JSON with the value at `path` replaced by the JSON text `raw`."""
    body = json.loads(json.dumps(valid))
    marker = "\u2603MARK\u2603"
    node = body
    for index, step in enumerate(path[:-1]):
        if isinstance(step, int):
            if not node:
                node.append({})
            node = node[0]
        else:
            node = node.setdefault(step, [] if isinstance(path[index + 1], int) else {})
    if isinstance(path[-1], int):
        node[:] = [marker]
    else:
        node[path[-1]] = marker
    return json.dumps(body).replace(json.dumps(marker), raw).encode()


def state_is_bad(raw: bytes) -> bool:
    """A camera state may be a bare word: only objects, long or non-UTF-8 ones are bad."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return raw.lstrip().startswith(b"{") or len(raw) > 1024


CASES = [
    (topic, valid, path, kind, raw)
    for topic, valid, spec in (
        (f"{BASE}/health", VALID_HEALTH, HEALTH),
        (f"{BASE}/info", VALID_INFO, INFO),
        (f"{BASE}/lobby/detections", VALID_DETECTIONS, DETECTIONS),
    )
    for path, kind in leaf_paths(spec)
    for raw in WRONG[kind]
] + [
    (f"{BASE}/{rest}", None, (), "object", raw.decode("latin-1"))
    for rest in ("health", "info", "lobby/detections", "lobby/state")
    for raw in NOT_AN_OBJECT if not rest.endswith("state") or state_is_bad(raw)
]


def feed(state: WatchState, topic: str, payload: bytes, now: float = 100.0) -> None:
    state.on_message(topic, payload, now, WALL)


def test_every_field_with_every_wrong_type_is_shown_as_bad_and_watching_goes_on() -> None:
    assert len(CASES) > 250
    for topic, valid, path, _kind, raw in CASES:
        state = WatchState(base_topic=BASE, broker="b:1883")
        payload = raw.encode("latin-1") if valid is None else with_raw(valid, path, raw)
        feed(state, topic, payload)  # must not raise
        where = ".".join(map(str, path)) or "payload"
        assert topic in state.bad, (topic, where, raw[:60])
        text = render(state, 101.0, WALL)
        assert f"bad message on {topic}: " in text, (where, raw[:60])
        # ... and the next good messages are taken as usual.
        for index in range(3):
            feed(state, f"{BASE}/lobby/detections", frame_payload("lobby", index, [0], WALL),
                 101.0 + index * 0.1)
        feed(state, f"{BASE}/health", json.dumps(VALID_HEALTH).encode())
        feed(state, f"{BASE}/info", json.dumps(VALID_INFO).encode())
        assert state.cameras["lobby"].total == 3
        assert topic not in state.bad or topic.endswith("/state"), state.bad
        assert table_row(render(state, 101.5, WALL), "lobby")[1] == "RUNNING"


def test_the_issue_examples_say_why() -> None:
    state = WatchState(base_topic=BASE, broker="b:1883")
    examples = {
        f"{BASE}/info": (b'{"model": "yolox", "cameras": 5}', "info.model: expected an object"),
        f"{BASE}/health": (b"[" * 10_000 + b"]" * 10_000, "JSON nested too deeply"),
        f"{BASE}/gate/detections": (b'{"inference_ms": 1e400}', "number 1e400 out of range"),
        f"{BASE}/yard/detections": (b'{"inference_ms": NaN}', "NaN is not a JSON number"),
        f"{BASE}/dock/detections": (b"\xff\xfe\x00", "not UTF-8 text"),
        f"{BASE}/lane/detections": (b'["a", "b"]', "JSON a list, not an object"),
        f"{BASE}/lane/state": (b"\xc3\x28", "not UTF-8 text"),
    }
    for topic, (payload, _why) in examples.items():
        feed(state, topic, payload)
    text = render(state, 101.0, WALL)
    shown = [line for line in text.splitlines() if line.startswith("bad message on ")]
    assert len(shown) == 5  # the newest five, then a count
    assert "(7 bad message(s) in all since watch started)" in text
    for topic, (_payload, why) in list(examples.items())[-5:]:
        assert any(line.startswith(f"bad message on {topic}: {why}") for line in shown), shown


def test_an_empty_retained_message_clears_the_topic() -> None:
    state = WatchState(base_topic=BASE, broker="b:1883")
    feed(state, f"{BASE}/health", b"[]")
    feed(state, f"{BASE}/info", json.dumps(VALID_INFO).encode())
    for topic in (f"{BASE}/health", f"{BASE}/info"):
        feed(state, topic, b"")  # how a retained message is deleted
    assert state.health is None
    assert state.info is None
    assert not state.bad


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return rng.choice([None, True, False])
    if choice == 1:
        return rng.choice([0, -1, 2**63, 10**15 + 1, 1.5, 1e300, -0.0])
    if choice == 2:
        return rng.choice(["", "x" * 5000, "\x1b[2J\x1b[H", "ok", "RUNNING", "\u202e", "é"])
    if choice in (3, 4, 5):
        return rng.choice(["person", "lobby", "2026-01-01T00:00:00Z", "9999-99-99"])
    if choice in (6, 7):
        keys = ["status", "reasons", "cameras", "model", "input", "id", "state", "label",
                "detections", "timestamp", "inference_ms", "system", "mqtt", "drift", "x"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(6))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_fuzz_never_raises_never_breaks_the_terminal() -> None:
    """3000 random payloads on every topic: each is taken or shown as bad; the table is
    always drawn, with no terminal control characters and bounded lines."""
    rng = random.Random(9)
    rests = ["status", "info", "health", "lobby/detections", "lobby/state",
             "\x1b[2J/detections", "x" * 2000 + "/state"]
    state = WatchState(base_topic=BASE, broker="b:1883")
    started = time.monotonic()
    for index in range(3000):
        body = random_json(rng)
        if rng.random() < 0.5 and not isinstance(body, dict):
            body = {"cameras": body, "model": body, "detections": body, "reasons": body}
        payload = json.dumps(body).encode()
        if rng.random() < 0.1:
            payload = payload[: rng.randrange(len(payload) + 1)] + bytes([rng.randrange(256)])
        feed(state, f"{BASE}/{rng.choice(rests)}", payload, 100.0 + index * 0.01)
        if index % 50 == 0:
            text = render(state, 100.0 + index * 0.01, WALL)
            assert not set(text) & {chr(code) for code in CONTROL}
            assert max(map(len, text.splitlines())) <= 300
    assert time.monotonic() - started < 60
    assert state.bad_total > 100  # the generator does make bad ones


def test_retained_garbage_on_a_real_broker_is_shown_and_watching_goes_on(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    """Before: the first deep or oversized message killed paho's network thread, and the
    live frames that followed never reached the table."""
    base = f"{unique_prefix}/box1"
    garbage = {
        f"{base}/health": b"[" * 100_000 + b"]" * 100_000,
        f"{base}/info": b'{"model": {"input": {"width": 1e400}}}',
        f"{base}/street/state": b"\xff\xfe\xfd",
        f"{base}/yard/detections": b'{"inference_ms": ' + b"9" * 5000 + b"}",
    }
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="garbage")
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    try:
        for topic, payload in garbage.items():
            publisher.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
        config = watch_config(tmp_path, samples, broker, unique_prefix)
        traffic = FakeAgentTraffic(broker, base)
        traffic.thread.start()  # live frames only: the retained info/status stay garbage
        try:
            done = watch(config, "--once", "--seconds", "4")
        finally:
            traffic.__exit__()
    finally:
        for topic in garbage:
            publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        publisher.loop_stop()
        publisher.disconnect()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"bad message on {base}/health: JSON nested too deeply" in out
    assert f"bad message on {base}/info: number 1e400 out of range" in out
    assert f"bad message on {base}/street/state: not UTF-8 text" in out
    assert f"bad message on {base}/yard/detections: not JSON" in out or (
        f"bad message on {base}/yard/detections: number 9999" in out)
    street = table_row(out, "street")
    assert float(street[2]) == pytest.approx(20.0, rel=0.3)  # live frames still arrive
    assert "Traceback" not in done.stderr
