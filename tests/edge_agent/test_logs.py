"""Logs a journal reader can use: repeats collapse with a count, priorities are right."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from edge_agent.logs import JOURNAL_PRIORITY, JournalFormatter, RepeatFilter
from tests.conftest import REPO


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
    assert lines == ["ERROR " + logger.name + ": camera gate: cannot open rtsp; retrying in 0.0 s"]

    clock.now += 15.0  # past the window
    logger.error("camera %s: cannot open %s; retrying in %.1f s", "gate", "rtsp", 7.5)
    assert len(lines) == 2
    assert lines[1].endswith(
        "camera gate: cannot open rtsp; retrying in 7.5 s (repeated 49 times in the last 60 s)"
    )
    clock.now += 61.0  # a new window, nothing held back: no count
    logger.error("camera %s: cannot open %s; retrying in %.1f s", "gate", "rtsp", 1.0)
    assert lines[2].endswith("retrying in 1.0 s")


def test_different_messages_are_not_merged(captured) -> None:
    logger, lines, clock = captured
    for _ in range(3):
        logger.warning("camera %s: stream stopped", "gate")
        logger.warning("camera %s: stream stopped", "yard")  # same template, other camera
        logger.warning("MQTT connection lost: %s", "keepalive timeout")
        logger.error("camera %s: stream stopped", "gate")  # same text, other level
        clock.now += 1.0
    assert [line.split(": ", 1)[1] for line in lines] == [
        "camera gate: stream stopped",
        "camera yard: stream stopped",
        "MQTT connection lost: keepalive timeout",
        "camera gate: stream stopped",
    ]
    other = logging.getLogger(logger.name + ".other")  # same text from another logger
    other.warning("camera %s: stream stopped", "gate")
    assert len(lines) == 5


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
        from edge_agent.logs import setup_logging
        setup_logging("info", repeat_window_s=0.5)
        log = logging.getLogger("edge_agent.capture")
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
    assert lines[0] == "<6>edge_agent.capture: camera gate opened"
    assert lines[1] == "<4>edge_agent.capture: camera gate: stream stopped delivering frames"
    assert lines[2] == ("<4>edge_agent.capture: camera gate: stream stopped delivering frames "
                        "(repeated 19 times in the last 0.5 s)")
    # The traceback stays in the same journal entry, at error priority.
    assert lines[3].startswith("<3>edge_agent.capture: decoder crashed | Traceback")
    assert "ValueError: bad | value" in lines[3]
    assert len(lines) == 4
