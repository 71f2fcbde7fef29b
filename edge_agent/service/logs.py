"""Logging a journal reader can use: one line per event, journal priorities, no floods.

A camera that is down retries every few seconds and would log the same warning
thousands of times a day, burying everything else and wearing out flash. `RepeatFilter`
lets the first REPEAT_BURST occurrences through, one line each (the first attempts of a
broker or camera retry are each in the log), then holds repeats back and logs at most
one line per window with how many were held back. An event quiet for a whole window
starts over with a fresh burst. A line whose own code already limits its rate (the MQTT
drop summary) passes with `extra=SELF_LIMITED`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable

from edge_agent.redact import RedactFilter

JOURNAL_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
"""syslog priority of each level, as journald reads it from a `<N>` prefix."""

REPEAT_WINDOW_S = 60.0
REPEAT_BURST = 5
"""Occurrences logged one line each before repeats are held back."""
SELF_LIMITED = {"rate_limited": True}
"""`log.warning(..., extra=SELF_LIMITED)`: this line is already rate-limited by its caller."""
MAX_TRACKED = 1000
"""Distinct repeating messages remembered at once; the oldest are forgotten beyond this."""


class JournalFormatter(logging.Formatter):
    """journald reads a leading <0>..<7> as the syslog priority of a stderr line."""

    def format(self, record: logging.LogRecord) -> str:
        priority = JOURNAL_PRIORITY.get(record.levelname, 6)
        # A traceback's lines would each become a journal entry at the default priority:
        # keep the whole event on one line so `journalctl -p err` shows all of it.
        return f"<{priority}>{super().format(record)}".replace("\n", " | ")


class RepeatFilter(logging.Filter):
    """Burst, then one line per window with a count, for repeats of a WARNING or worse.

    Two records repeat each other when logger, level, message template and text
    arguments are the same: "camera %s: cannot open %s" for camera a and camera b are
    different events and both get through, while numbers (a retry delay, a frame
    number, a count) are ignored so that a retry loop still counts as one event.
    """

    def __init__(
        self,
        window_s: float = REPEAT_WINDOW_S,
        min_level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        burst: int = REPEAT_BURST,
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.min_level = min_level
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[Hashable, _Repeats] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level or getattr(record, "rate_limited", False):
            return True
        key = _event_key(record)
        now = self._clock()
        with self._lock:
            entry = self._seen.pop(key, None)  # re-inserted below: oldest first
            held_back = 0
            if entry is None or now - entry.last_seen >= self.window_s:
                # New, or quiet for a window: a fresh burst; repeats held back before
                # the quiet spell are told with this line.
                held_back = entry.held_back if entry is not None else 0
                entry = _Repeats(window_start=now)
            entry.last_seen = now
            self._seen[key] = entry
            if len(self._seen) > MAX_TRACKED:
                del self._seen[next(iter(self._seen))]
            if entry.logged < self.burst:
                entry.logged += 1
            elif now - entry.window_start < self.window_s:
                entry.held_back += 1
                return False
            else:
                held_back, entry.held_back, entry.window_start = entry.held_back, 0, now
        if held_back:
            record.msg = (
                f"{record.getMessage()} (repeated {held_back} times since the last such line)"
            )
            record.args = None
        return True


class _Repeats:
    """One repeating event: lines logged in its burst, held back in this window."""

    __slots__ = ("held_back", "last_seen", "logged", "window_start")

    def __init__(self, window_start: float) -> None:
        self.window_start = window_start
        self.last_seen = window_start
        self.logged = 0
        self.held_back = 0


def _event_key(record: logging.LogRecord) -> Hashable:
    args = record.args
    if isinstance(args, tuple):
        texts: tuple[object, ...] = tuple(
            str(arg) for arg in args if not isinstance(arg, (int, float))
        )
    elif args:  # a mapping: logger.info("%(name)s", {"name": ...})
        texts = tuple(sorted(
            (name, str(value)) for name, value in args.items()
            if not isinstance(value, (int, float))
        ))
    else:
        texts = ()
    return (record.name, record.levelno, str(record.msg), texts)


def setup_logging(level: str, repeat_window_s: float = REPEAT_WINDOW_S) -> None:
    """One line per event to stderr; under systemd the journal adds its own timestamps."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(RepeatFilter(repeat_window_s))
    handler.addFilter(RedactFilter())  # last: masks the final text, from any logger
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def quiet_opencv_log(level: str) -> None:
    """OpenCV's own warnings (`[ WARN:0@1.8] global cap.cpp:212 open VIDEOIO(V4L2): ...`)
    go to stderr on every retry of a camera that cannot open, past the repeat filter and
    without a journal priority; the agent says what failed itself. Errors still print, and
    at `debug` (or with OPENCV_LOG_LEVEL set) OpenCV logs as it would."""
    if level.upper() == "DEBUG" or "OPENCV_LOG_LEVEL" in os.environ:
        return
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

