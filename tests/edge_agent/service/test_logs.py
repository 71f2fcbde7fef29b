"""Logs a journal reader can use: repeats collapse with a count, priorities are right."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from edge_agent.service.logs import JOURNAL_PRIORITY, JournalFormatter, RepeatFilter
from tests.helpers import REPO, free_port, start_agent, stop_agent


class Clock:
    """A hand-wound clock, so the window can pass without the test sleeping a minute."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> tuple[logging.Logger, list[str], Clock]:
    """A real logger with a real handler that keeps each formatted line."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    clock = Clock()
    handler = Keep()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter(window_s=60.0, clock=clock))
    logger = logging.getLogger(f"test_logs.{id(lines)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, lines, clock
    logger.removeHandler(handler)


def test_repeated_error_collapses_with_its_count(captured) -> None:
    logger, lines, clock = captured
    for attempt in range(50):
        logger.error("camera %s: cannot open %s; retrying in %.1f s", "gate", "rtsp", attempt)
        clock.now += 1.0  # 50 s: all inside the window
    assert lines == [  # the first five attempts, one line each
        f"ERROR {logger.name}: camera gate: cannot open rtsp; retrying in {n:.1f} s"
        for n in range(5)
    ]
    clock.now += 15.0  # past the window
    logger.error("camera %s: cannot open %s; retrying in %.1f s", "gate", "rtsp", 7.5)
    assert len(lines) == 6
    assert lines[5].endswith(
        "camera gate: cannot open rtsp; retrying in 7.5 s (repeated 45 times since the last "
        "such line)"
    )
    clock.now += 61.0  # quiet for a window, nothing held back: a fresh burst, no count
    for delay in (1.0, 2.0):
        logger.error("camera %s: cannot open %s; retrying in %.1f s", "gate", "rtsp", delay)
    assert lines[6].endswith("retrying in 1.0 s")
    assert lines[7].endswith("retrying in 2.0 s")


def attempt_times(delays: list[float], total_s: float) -> list[float]:
    times, now, index = [], 0.0, 0
    while now < total_s:
        times.append(now)
        now += delays[min(index, len(delays) - 1)]
        index += 1
    return times


@pytest.mark.parametrize(("what", "delays"), [
    ("broker down: 1, 2, 4, 8 then every 10 s", [1, 2, 4, 8, 10]),
    ("camera down: the same backoff, jittered", [1.1, 1.7, 4.4, 7.2, 11.9, 8.1, 10.3]),
    ("a tight loop: every 0.2 s", [0.2]),
    ("slow: every 59 s", [59]),
    ("every 70 s: each one a fresh event", [70]),
    ("bursts with quiet spells", [0.5] * 20 + [120] + [0.5] * 20 + [200]),
])
def test_retry_loops_log_their_first_attempts_then_a_line_a_minute(
    captured, what: str, delays: list[float]
) -> None:
    """The promise of docs/tools.md for every retry schedule: each of the first 5
    attempts is a line; later at most one line per 60 s; no attempt goes uncounted."""
    logger, lines, clock = captured
    times = attempt_times(delays, 30 * 60)
    logged_at = []
    for moment in times:
        clock.now = 1000.0 + moment
        before = len(lines)
        logger.warning("MQTT cannot connect to %s:%d: %s", "broker", 1883, "refused")
        if len(lines) > before:
            logged_at.append(moment)
    assert logged_at[:5] == times[:5], what
    bursts = [0] + [i for i in range(1, len(times)) if times[i] - times[i - 1] >= 60]
    for start in bursts:  # after a quiet minute: the first 5 again
        assert set(times[start:start + 5]) <= set(logged_at), what
    burst_lines = {t for start in bursts for t in times[start:start + 5]}
    summaries = sorted(set(logged_at) - burst_lines)
    assert all(b - a >= 60 for a, b in itertools.pairwise(summaries)), what
    counted = sum(int(line.split("(repeated ")[1].split()[0]) for line in lines
                  if "(repeated " in line)
    assert counted + len(lines) <= len(times)
    assert len(times) - (counted + len(lines)) <= len(times) - len(logged_at), what
    last_line = max(logged_at)
    assert counted + len(lines) == len([t for t in times if t <= last_line]), what


def test_self_limited_lines_are_never_held_back(captured) -> None:
    """The MQTT drop summary limits itself to one line per 10 s; the filter lets it be."""
    from edge_agent.service.logs import SELF_LIMITED
    logger, lines, clock = captured
    for index in range(20):
        logger.warning("MQTT dropped %d detection message(s) (%d in total): %s", 3, 3 * index,
                       "spool full", extra=SELF_LIMITED)
        clock.now += 10.0
    assert len(lines) == 20


def test_different_messages_are_not_merged(captured) -> None:
    logger, lines, clock = captured
    for _ in range(8):
        logger.warning("camera %s: stream stopped", "gate")
        logger.warning("camera %s: stream stopped", "yard")  # same template, other camera
        logger.warning("MQTT connection lost: %s", "keepalive timeout")
        logger.error("camera %s: stream stopped", "gate")  # same text, other level
        clock.now += 1.0
    assert Counter(line for line in lines) == {  # each its own burst of 5
        f"WARNING {logger.name}: camera gate: stream stopped": 5,
        f"WARNING {logger.name}: camera yard: stream stopped": 5,
        f"WARNING {logger.name}: MQTT connection lost: keepalive timeout": 5,
        f"ERROR {logger.name}: camera gate: stream stopped": 5,
    }
    other = logging.getLogger(logger.name + ".other")  # same text from another logger
    other.warning("camera %s: stream stopped", "gate")
    assert len(lines) == 21


def test_info_and_debug_are_never_held_back(captured) -> None:
    logger, lines, _clock = captured
    for _ in range(5):
        logger.info("frame %d published", 1)
        logger.debug("tick")
    assert len(lines) == 10


def test_levels_map_to_journal_priorities() -> None:
    formatter = JournalFormatter("%(name)s: %(message)s")
    expected = {logging.DEBUG: "<7>", logging.INFO: "<6>", logging.WARNING: "<4>",
                logging.ERROR: "<3>", logging.CRITICAL: "<2>"}
    for level, prefix in expected.items():
        record = logging.LogRecord("edge_agent.x", level, __file__, 1, "hello %s", ("a",), None)
        assert formatter.format(record) == f"{prefix}edge_agent.x: hello a"
    assert JOURNAL_PRIORITY["WARNING"] == 4


def test_agent_logging_under_the_journal_is_one_line_per_event() -> None:
    """setup_logging in a real process, as systemd starts it (JOURNAL_STREAM set)."""
    script = textwrap.dedent("""
        import logging
        from edge_agent.service.logs import setup_logging
        setup_logging("info", repeat_window_s=0.5)
        log = logging.getLogger("edge_agent.capture.camera")
        log.info("camera %s opened", "gate")
        for _ in range(20):
            log.warning("camera %s: stream stopped delivering frames", "gate")
        import time; time.sleep(0.6)
        log.warning("camera %s: stream stopped delivering frames", "gate")
        try:
            raise ValueError("bad\\nvalue")
        except ValueError:
            log.exception("decoder crashed")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=REPO,
        env={**os.environ, "JOURNAL_STREAM": "8:1234"}, check=True,
    )
    lines = done.stderr.splitlines()
    assert lines[0] == "<6>edge_agent.capture.camera: camera gate opened"
    assert lines[1:6] == ["<4>edge_agent.capture.camera: camera gate: stream stopped delivering "
                          "frames"] * 5
    assert lines[6] == ("<4>edge_agent.capture.camera: camera gate: stream stopped delivering "
                        "frames (repeated 15 times since the last such line)")
    # The traceback stays in the same journal entry, at error priority.
    assert lines[7].startswith("<3>edge_agent.capture.camera: decoder crashed | Traceback")
    assert "ValueError: bad | value" in lines[7]
    assert len(lines) == 8


@pytest.mark.slow
def test_a_real_agent_logs_its_first_retries_then_holds_back(tmp_path, samples) -> None:
    """The agent with its broker down and its cameras missing: the first 5 attempts of
    each retry loop are each one line (docs/tools.md), later ones are held back; OpenCV's
    own warnings (unfiltered, no journal priority) are not printed at all."""
    config = tmp_path / "agent.yaml"
    config.write_text(f"""
state_dir: {tmp_path / "state"}
model:
  path: {samples / "models" / "yolox_nano.onnx"}
backend:
  type: openvino
  device: CPU
mqtt:
  port: {free_port()}
health:
  metrics_address: ''
cameras:
  - id: yard
    type: file
    path: {tmp_path / "missing.mp4"}
  - id: door
    type: usb
    device: /dev/video97
""")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)

    def lines(marker: str) -> list[str]:
        return [line for line in log.read_text().splitlines() if marker in line]

    broker, camera = "MQTT cannot connect to", "camera yard:"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (len(lines(broker)) < 5
                                               or len(lines(camera)) < 5):
            time.sleep(0.5)
        assert len(lines(broker)) == 5, log.read_text()
        assert len(lines(camera)) >= 5, log.read_text()
        camera_lines = len(lines(camera))
        time.sleep(13)  # another attempt of each loop (10 s cap, +-20%): held back
        assert len(lines(broker)) == 5, lines(broker)
        assert len(lines(camera)) == camera_lines, lines(camera)
        assert lines("camera door:")  # the agent's own words for the missing device ...
        assert not lines("[ WARN:"), lines("[ WARN:")  # ... not OpenCV's, at every retry
    finally:
        stop_agent(agent, log)
