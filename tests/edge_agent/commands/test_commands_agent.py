"""Commands against the real agent process through a real Mosquitto: configs/demo.yaml
plus the one line `commands: {enabled: true}`; the allow-list through a reload; busy and
duplicates; 10,000 fuzz payloads while frames flow; request ids across a restart.

One agent run is shared by the module (tests run in file order and build on each other).
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from tests.helpers import (
    COMMAND_RESULT,
    REPO,
    Broker,
    Collector,
    CommandClient,
    free_port,
    start_agent,
    stop_agent,
    validated_health,
    wait_until,
)

pytestmark = pytest.mark.slow
FUZZ_MESSAGES = 10_000
STALL_S = 5.0
"""Longest time without a detection message that still counts as flowing (10 fps file)."""
CHUNK = 1000
"""Sent at once, then the answers awaited: within the agent's inbox (1024 requests)."""


@dataclass
class Run:
    broker: Broker
    config: Path
    log: Path
    base: str
    operator: CommandClient
    detections: Collector
    agent: object


def demo_config(tmp: Path, samples: Path, port: int, prefix: str, commands: str) -> str:
    """configs/demo.yaml as shipped, pointed at this test's broker, files and prefix."""
    text = (REPO / "configs" / "demo.yaml").read_text()
    for old, new in {"../samples": str(samples), "../.state": str(tmp / "state"),
                     "port: 1883": f"port: {port}", "topic_prefix: edge-agent":
                     f"topic_prefix: {prefix}"}.items():
        assert old in text
        text = text.replace(old, new)
    return text + "health: {metrics_address: ''}\n" + commands


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("commands")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 20000\n")
    broker = Broker(port=port, conf=conf, log=tmp / "mosquitto.log")
    broker.start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    config = tmp / "agent.yaml"
    config.write_text(demo_config(tmp, samples, port, prefix, "commands: {enabled: true}\n"))
    base = f"{prefix}/demo"
    operator = CommandClient(broker, base)
    detections = subscriber(broker, f"{base}/vtest/detections")
    log = tmp / "agent.log"
    state = Run(broker, config, log, base, operator, detections, start_agent(config, log))
    try:
        wait_until(lambda: len(detections.on_topic("/detections")) >= 3, timeout=60)
        yield state
    finally:
        stop_agent(state.agent, state.log)  # type: ignore[arg-type]  (the last one started)
        state.operator.close()
        state.detections.client.loop_stop()
        broker.stop()


def subscriber(broker: Broker, topic: str) -> Collector:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    collector = Collector(client)
    client.on_message = collector.on_message
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    return collector


def sequences(run: Run) -> list[int]:
    return [json.loads(m.payload)["sequence"] for m in run.detections.on_topic("/detections")]


def test_one_line_enables_the_safe_commands(run: Run) -> None:
    operator = run.operator
    health = operator.call("health/now")
    assert health["outcome"] == "ok", health
    validated_health(json.dumps(health["result"]["health"]).encode())

    config = operator.call("config/get")["result"]["config"]
    assert config["device_id"] == "demo"
    assert config["commands"] == {**config["commands"], "enabled": True, "allow": []}

    shot = operator.call("snapshot", camera="vtest", max_width=384)
    assert shot["outcome"] == "ok", shot
    image = cv2.imdecode(np.frombuffer(base64.b64decode(shot["result"]["jpeg_base64"]),
                                       np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (288, 384, 3)  # vtest is 768x576
    assert shot["result"]["sequence"] in sequences(run) or shot["result"]["sequence"] > 0

    client = CommandClient(run.broker, run.base)
    client.client.subscribe(f"{run.base}/snapshot/#", qos=1)
    time.sleep(0.2)
    named = client.call("snapshot", topic="door")
    jpeg = client.collector.wait_for("/snapshot/door", timeout=10)[0].payload
    client.close()
    assert named["result"]["topic"] == "snapshot/door"
    assert "jpeg_base64" not in named["result"]
    assert jpeg[:2] == b"\xff\xd8"
    assert len(jpeg) == named["result"]["bytes"]

    for name, args in (("reload", {}), ("camera/restart", {"camera": "vtest"})):
        refused = operator.call(name, **args)
        assert (refused["outcome"], refused["code"]) == ("rejected", "not_allowed")


def test_the_allow_list_a_reload_busy_and_duplicates(run: Run) -> None:
    operator = run.operator
    run.config.write_text(run.config.read_text().replace(
        "commands: {enabled: true}", "commands: {enabled: true, allow: [reload, camera/restart]}"))
    run.agent.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
    wait_until(lambda: "reload applied" in run.log.read_text(), timeout=30)

    reload = operator.call("reload")
    assert reload["outcome"] == "ok", reload
    assert reload["result"]["reload"]["ok"] is True

    before = max(sequences(run))
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    operator.send("camera/restart", {"request_id": first, "camera": "vtest"})
    operator.send("camera/restart", {"request_id": second, "camera": "vtest"})
    done, busy = operator.result(first), operator.result(second)
    assert done["outcome"] == "ok", done
    assert (busy["outcome"], busy["code"]) == ("rejected", "busy")
    assert done["result"]["next_sequence"] > before
    wait_until(lambda: max(sequences(run)) > done["result"]["next_sequence"] + 3, timeout=30)

    operator.send("camera/restart", {"request_id": first, "camera": "vtest"})
    again = operator.result(first, count=2)
    assert again["duplicate"] is True
    assert (again["result"], again["finished_at"]) == (done["result"], done["finished_at"])
    assert run.log.read_text().count("command: restarting camera vtest") == 1
    seen = sequences(run)
    assert seen == sorted(set(seen))  # continued across the restart, never repeated


def answers(operator: CommandClient) -> bool:
    request_id = uuid.uuid4().hex
    operator.send("health/now", {"request_id": request_id})
    try:
        operator.result(request_id, timeout=1.0)
    except AssertionError:
        return False
    return True


def fuzz_payload(rng: random.Random, index: int) -> tuple[str, bytes, str | None, int]:
    """(command part, payload, request_id expected in the answer or None, qos)."""
    names = ["snapshot", "health/now", "config/get", "reload", "camera/restart", "bogus",
             "model/deploy", "snapshot/x", "Ünï/cødé", "a" * 300]
    name = rng.choice(names)
    qos = rng.choice((0, 1))
    rid = f"f{index}"
    kind = rng.randrange(12)
    payload, answered_as = b"", None
    if kind == 0:
        payload = rng.randbytes(rng.randrange(0, 300))
    elif kind == 1:
        payload = json.dumps(rng.choice([[1, 2], "x", 3.5, None, True, [{}]])).encode()
    elif kind == 2:
        bad_id = rng.choice([None, 5, "", "a b", "x" * 200, ["r"], {"r": 1}, "\u202e"])
        payload = json.dumps({"request_id": bad_id}).encode()
    elif kind == 3:
        good = json.dumps({"request_id": rid, "camera": "vtest"}).encode()
        payload = good[: rng.randrange(1, len(good))]  # cut short
    elif kind == 4 and index % 50 == 0:  # too large: refused unread, so answered as null
        payload = b'{"request_id":"' + rid.encode() + b'","x":"' + b"y" * 70_000 + b'"}'
    elif kind == 5:
        payload = b"[" * rng.randrange(2000, 20000)
    else:
        values = [1, -1, 2**70, 1.5, "vtest", "", "../../etc/passwd", None, True, [], {},
                  "x" * 50, float("1e308"), "\x00", "/etc/shadow"]
        body: dict[str, object] = {"request_id": rid}
        for _ in range(rng.randrange(0, 3)):
            key = rng.choice(["camera", "quality", "max_width", "topic", "path", "url", "rm"])
            body[key] = rng.choice(values)
        payload, answered_as = json.dumps(body).encode(), rid
    return name, payload, answered_as, qos


def test_fuzz_never_crashes_never_stalls_frames_answers_each_request_once(run: Run) -> None:
    run.operator.close()  # one subscriber to the 10,000 results is enough
    operator = CommandClient(run.broker, run.base, validate=False)
    rng = random.Random(12)
    before = 0
    expected_ids: set[str] = set()
    anonymous = 0
    frames_before = sequences(run)
    started = time.monotonic()
    sent = 0
    for chunk_start in range(0, FUZZ_MESSAGES, CHUNK):
        for index in range(chunk_start, chunk_start + CHUNK):
            name, payload, request_id, qos = fuzz_payload(rng, index)
            operator.send(name, payload, qos)
            if request_id is None:
                anonymous += 1
            else:
                expected_ids.add(request_id)
        sent += CHUNK
        wait_until(lambda n=sent: len(operator.collector.messages) - before >= n, timeout=90)
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # nothing more may come
    assert run.agent.poll() is None, run.log.read_text()[-3000:]  # type: ignore[attr-defined]
    bodies = operator.results()
    operator.close()
    finals = [b for b in bodies if b["outcome"] != "progress"]
    assert len(finals) == FUZZ_MESSAGES
    answered = [b["request_id"] for b in finals if b["request_id"] is not None]
    assert len(answered) == len(set(answered))  # exactly once each
    assert set(answered) == expected_ids
    nulls = [b for b in finals if b["request_id"] is None]
    assert len(nulls) == anonymous
    assert {b["code"] for b in nulls} == {"malformed", "not_object", "bad_request_id",
                                          "too_large"}
    codes = {b["code"] for b in finals if b["request_id"] is not None}
    assert {"unknown_command", "bad_arguments", None} <= codes
    kinds = {(b["command"], b["outcome"], b["code"]): b for b in bodies}
    for body in [*kinds.values(), *rng.sample(bodies, 300)]:  # every kind, and a sample
        COMMAND_RESULT.validate(body)
    during = run.detections.on_topic("/detections")[len(frames_before):]
    frames = [json.loads(m.payload)["sequence"] for m in during]
    arrivals = [started, *(m.timestamp for m in during), time.monotonic()]
    longest = max(b - a for a, b in itertools.pairwise(arrivals))
    assert longest < STALL_S, f"no detections for {longest:.1f} s during the fuzz"
    restarts = sum(1 for b in finals if b["command"] == "camera/restart" and b["outcome"] == "ok")
    expected = list(range(frames[0], frames[-1] + 1))  # across the fuzz's camera restarts
    assert frames == expected, (f"missing {sorted(set(expected) - set(frames))} with "
                                f"{restarts} camera restarts")
    run.operator = CommandClient(run.broker, run.base)
    assert run.operator.call("health/now")["outcome"] == "ok"
    print(f"fuzz: {FUZZ_MESSAGES} requests answered in {elapsed:.1f} s")


def test_request_ids_are_remembered_across_a_restart(run: Run) -> None:
    operator = run.operator
    done = operator.call("config/get")
    stop_agent(run.agent, run.log)  # type: ignore[arg-type]
    assert run.agent.returncode == 0  # type: ignore[attr-defined]
    run.log = run.log.with_name("agent2.log")
    run.agent = start_agent(run.config, run.log)
    wait_until(lambda: answers(operator), timeout=60)  # subscribed again
    operator.send("config/get", {"request_id": done["request_id"]})
    again = operator.result(done["request_id"], timeout=60, count=2)
    assert again["duplicate"] is True
    assert again["result"] == done["result"]
    assert again["finished_at"] == done["finished_at"]
