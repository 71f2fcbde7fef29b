"""`edge-agent watch` against a real broker fed by a real paho publisher."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_agent.tools.watch import WatchState, render
from tests.helpers import (
    WATCH_RATE,
    Broker,
    FakeAgentTraffic,
    frame_payload,
    table_row,
    watch,
    watch_config,
)


def test_watch_shows_each_camera_with_fps_and_classes(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    config = watch_config(tmp_path, samples, broker, unique_prefix)
    with FakeAgentTraffic(broker, f"{unique_prefix}/box1"):
        time.sleep(0.5)
        done = watch(config, "--once", "--seconds", "3")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out, "no terminal escapes when stdout is not a tty"
    assert f"{unique_prefix}/box1 on 127.0.0.1:{broker.port}   status: online" in out
    assert "openvino on CPU, model yolox_nano (416x416)" in out
    street = table_row(out, "street")
    # camera, state, fps, in fps, dropped, infer ms, delay ms, last msg, classes
    fps = float(street[2])
    assert 0.75 * WATCH_RATE <= fps <= 1.25 * WATCH_RATE, out
    assert float(street[5]) == pytest.approx(8.0)
    assert "person 2.0" in " ".join(street)
    assert "car 1.0" in " ".join(street)
    # A camera the info names but that sent nothing is shown, not hidden.
    assert "never" in table_row(out, "yard")


def test_watch_redraws_every_second_until_seconds(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    config = watch_config(tmp_path, samples, broker, unique_prefix)
    with FakeAgentTraffic(broker, f"{unique_prefix}/box1"):
        started = time.monotonic()
        done = watch(config, "--seconds", "2.5")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    tables = done.stdout.count(f"{unique_prefix}/box1 on ")
    assert 3 <= tables <= 5, done.stdout
    assert "street" in done.stdout.split(f"{unique_prefix}/box1 on ")[-1]


def test_watch_reports_a_broker_it_cannot_reach(tmp_path: Path, samples: Path, broker: Broker,
                                                unique_prefix: str) -> None:
    config = watch_config(tmp_path, samples, broker, unique_prefix)
    broker.stop()
    done = watch(config, "--once", "--seconds", "1")
    assert done.returncode == 1
    assert f"nothing listens on 127.0.0.1:{broker.port}" in done.stderr
    assert "fix: check mqtt.host and mqtt.port" in done.stderr


def test_render_is_a_function_of_the_state() -> None:
    state = WatchState(base_topic="p/box1", broker="broker:1883", window_s=10.0)
    wall = 1_800_000_000.0
    state.on_message("p/box1/status", b"offline", 0.0, wall)
    state.on_message("p/box1/health", json.dumps({
        "schema_version": 1, "uptime_s": 3720, "status": "degraded",
        "reasons": ["camera gate: BACKOFF"],
        "mqtt": {"connected": True, "queued": 0, "dropped": 3},
        "system": {"cpu_percent": 45.2, "rss_bytes": 300 * 2**20,
                   "disk": {"free_percent": 78.0}, "temperatures": [{"celsius": 61.5}]},
        "cameras": [
            {"id": "gate", "state": "BACKOFF", "input_fps": 0.0, "frames_dropped": 0,
             "last_error": "cannot open RTSP stream", "drift": None},
            {"id": "lobby", "state": "RUNNING", "input_fps": 10.1, "frames_dropped": 7,
             "drift": {"state": "watching", "reasons": ["covered"]}},
        ],
    }).encode(), 0.0, wall)
    for index in range(11):  # 10 fps by capture time, arriving 0.1 s apart
        arrived = 100.0 + index * 0.1
        body = frame_payload("lobby", index, [0] if index % 2 else [], wall + index * 0.1)
        state.on_message("p/box1/lobby/detections", body, arrived, wall + index * 0.1 + 0.05)
    state.on_message("p/box1/lobby/detections", b"not json", 101.0, wall)
    state.on_message("other/box2/lobby/detections", b"{}", 101.0, wall)  # not this box

    text = render(state, now=101.5, wall=wall + 1.5)
    assert text == render(state, now=101.5, wall=wall + 1.5)
    lines = text.splitlines()
    assert "p/box1 on broker:1883   status: offline" in lines[0]
    assert lines[1] == "health: degraded (camera gate: BACKOFF)"
    assert lines[2].split() == ["up", "1h02m,", "cpu", "45%,", "rss", "300", "MiB,", "disk",
                                "78%", "free,", "hottest", "62", "C,", "mqtt", "connected,",
                                "queued", "0,", "dropped", "3"]
    lobby = table_row(text, "lobby")
    # camera, state, fps, in fps, dropped, infer ms, delay ms, last msg, classes
    assert lobby[1:7] == ["RUNNING", "10.0", "10.1", "7", "8.0", "50"]
    assert "person 0.5" in " ".join(lobby)  # 5 people in 11 frames, shown per frame
    assert "view changed: covered" in text
    gate = table_row(text, "gate")
    assert gate[1:4] == ["BACKOFF", "-", "0.0"]
    assert "last error: cannot open RTSP stream" in text
    assert ("bad message on p/box1/lobby/detections: not JSON (Expecting value: line 1 "
            "column 1 (char 0))") in text

    later = render(state, now=200.0, wall=wall + 100)  # everything aged out of the window
    lobby = table_row(later, "lobby")
    assert lobby[2] == "-"  # no fps without messages in the window
    assert "(none in the window)" in later
