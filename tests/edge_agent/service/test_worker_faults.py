"""Fault injection: kill each kind of worker thread inside a real agent.

A real agent (real Mosquitto, a looping file camera, OpenVINO on the sample model) runs
with `EDGE_AGENT_FAULT=<thread>@<seconds>`, which raises inside that live thread. Each row
checks that the crash is logged, that the camera state or health names the worker, and
that the agent either recovers (detections keep arriving, a clean exit 0 on SIGTERM) or,
when a worker crash-loops and is given up, exits non-zero for systemd to restart it.

Drift has no thread of its own: it runs on the pipeline thread, where a drift failure is
contained per frame (tests/edge_agent/test_pipeline_faults.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import (
    Broker,
    first_frames,
    free_port,
    health_config,
    start_agent,
    stop_agent,
    wait_for_health,
)

CRASH_LOOP = (3.0, 7.0, 12.0, 20.0)
"""Four crashes, each after the previous restart's backoff (1, 2, 4 s +-20%) is over:
GIVE_UP_AFTER crashes within CRASH_WINDOW_S, so the worker is given up."""


@dataclass(frozen=True)
class Fault:
    thread: str
    """EDGE_AGENT_FAULT's target: a thread-name prefix (the full name of ours)."""
    at: tuple[float, ...] = (4.0,)
    camera: bool = False
    """A camera's worker: its retained state must name the crash."""
    exits: bool = False
    """True: the agent must exit 1; False: it must recover and keep publishing."""
    metrics: bool = False
    """Start /metrics (its thread is the target)."""
    swallowed: bool = False
    """paho's loop catches what lands in its select() and resets the connection: the
    fault shows as a logged reconnect, not as a worker crash."""


FAULTS = [
    pytest.param(Fault("capture-street", camera=True), id="capture"),
    pytest.param(Fault("pipeline-street", camera=True), id="pipeline"),
    pytest.param(Fault("health"), id="health"),
    pytest.param(
        Fault("pipeline-street", CRASH_LOOP, camera=True, exits=True), id="pipeline-crash-loop"
    ),
    pytest.param(
        Fault("capture-street", CRASH_LOOP, camera=True, exits=True), id="capture-crash-loop"
    ),
    pytest.param(Fault("health", CRASH_LOOP, exits=True), id="health-crash-loop"),
    pytest.param(Fault("mqtt-sender"), id="mqtt-sender"),
    pytest.param(Fault("mqtt-network", swallowed=True), id="mqtt-network"),
    pytest.param(Fault("metrics", metrics=True), id="metrics"),
]


@pytest.fixture(scope="module")
def clip(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return first_frames(samples, tmp_path_factory.mktemp("faults") / "street.mp4", 30)


def last_json(collector, suffix: str, ready, timeout: float = 10.0) -> dict:
    """The newest JSON message on `suffix` once `ready(message)` holds (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        messages = collector.json_on(suffix)
        if messages and ready(messages[-1]):
            return messages[-1]
        assert time.monotonic() < deadline, messages[-3:]
        time.sleep(0.1)


def names_worker(health: dict, thread: str) -> bool:
    return health["status"] != "ok" and any(f"worker {thread}" in r for r in health["reasons"])


@pytest.mark.parametrize("fault", FAULTS)
def test_a_killed_worker_is_reported_and_recovers_or_exits_non_zero(
    fault: Fault, tmp_path: Path, samples: Path, broker: Broker, subscribe,
    unique_prefix: str, clip: Path,
) -> None:
    collector = subscribe(f"{unique_prefix}/#")
    cameras = f"  - id: street\n    type: file\n    path: {clip}\n    loop: true\n"
    metrics = f"127.0.0.1:{free_port()}" if fault.metrics else "''"
    config = health_config(
        tmp_path, samples, broker, unique_prefix, cameras,
        f"  interval_s: 1\n  metrics_address: {metrics}\n",
    )
    log = tmp_path / "agent.log"
    spec = ",".join(f"{fault.thread}@{seconds}" for seconds in fault.at)
    agent = start_agent(config, log, env={"EDGE_AGENT_FAULT": spec})
    try:
        if fault.exits:
            agent.wait(timeout=120)
        elif fault.swallowed:
            collector.wait_for("/street/detections", count=10, timeout=60)
            deadline = time.monotonic() + 60
            while "reset by an error in the network loop" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            seen = len(collector.on_topic("/street/detections"))
            collector.wait_for("/street/detections", count=seen + 25, timeout=60)
        else:
            health = wait_for_health(collector, lambda h: names_worker(h, fault.thread), 90)
            (worker,) = [w for w in health["workers"] if w["name"] == fault.thread]
            assert worker["crashes"] >= 1
            assert "InjectedFaultError" in worker["last_error"]
            # Recovered: detections keep arriving after health reported the crash.
            seen = len(collector.on_topic("/street/detections"))
            collector.wait_for("/street/detections", count=seen + 25, timeout=60)
    finally:
        if agent.poll() is None:
            stop_agent(agent, log)
    text = log.read_text()
    assert f"InjectedFaultError in thread {fault.thread}" in text, text[-3000:]
    if not fault.swallowed:
        assert f"worker {fault.thread} crashed (InjectedFaultError" in text, text[-3000:]
    if fault.exits:
        assert agent.returncode == 1, text[-3000:]
        assert "given up" in text
        assert "cannot continue" in text
        # The retained last word says why, never "ok" (found by the breaker review).
        final = last_json(collector, "/health", lambda h: h["reasons"][:1] and
                          h["reasons"][0].startswith("agent exited with status 1"))
        assert final["status"] == "failed", final
    else:
        assert agent.returncode == 0, text[-3000:]
        states = [s["state"] for s in collector.json_on("/street/state")]
        assert states[0] == "STARTING", states
        assert last_json(collector, "/street/state", lambda s: True)["state"] == "STOPPED"
    if fault.camera:
        states = collector.json_on("/street/state")
        assert any("worker crashed" in (s["last_error"] or "") for s in states), states
        if fault.exits:
            assert states[-1]["state"] == "FAILED", states[-1]


def test_one_camera_given_up_fails_alone_while_the_others_go_on(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str, clip: Path,
) -> None:
    """A crash-looping camera is FAILED and named in health; the agent and the other camera
    keep running, since a restart would cost the healthy camera its frames."""
    collector = subscribe(f"{unique_prefix}/#")
    cameras = (
        f"  - id: street\n    type: file\n    path: {clip}\n    loop: true\n"
        f"  - id: yard\n    type: file\n    path: {clip}\n    loop: true\n"
    )
    health_settings = "  interval_s: 1\n  metrics_address: ''\n"
    config = health_config(tmp_path, samples, broker, unique_prefix, cameras, health_settings)
    log = tmp_path / "agent.log"
    spec = ",".join(f"pipeline-street@{seconds}" for seconds in CRASH_LOOP)
    agent = start_agent(config, log, env={"EDGE_AGENT_FAULT": spec})
    try:
        health = wait_for_health(
            collector,
            lambda h: any(c["id"] == "street" and c["state"] == "FAILED" for c in h["cameras"]),
            90,
        )
        seen = len(collector.on_topic("/yard/detections"))
        collector.wait_for("/yard/detections", count=seen + 25, timeout=60)
        assert agent.poll() is None, log.read_text()[-3000:]
    finally:
        stop_agent(agent, log)
    assert agent.returncode == 0, log.read_text()[-3000:]
    assert health["status"] == "degraded"
    assert any(r.startswith("worker pipeline-street is dead") for r in health["reasons"])
    assert any(r.startswith("camera street FAILED") for r in health["reasons"])
    yard = next(c for c in health["cameras"] if c["id"] == "yard")
    assert yard["state"] == "RUNNING"
    assert collector.json_on("/street/state")[-1]["state"] == "FAILED"
