"""Logging a journal reader can use: one line per event, journal priorities, no floods.

A camera that is down retries every few seconds and would log the same warning
thousands of times a day, burying everything else and wearing out flash. `RepeatFilter`
lets the first occurrence through, holds back repeats for a window, and on the first
one after the window logs it once with how many were held back.
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
    """Collapse repeats of a WARNING or worse into one line per window with a count.

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
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.min_level = min_level
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[Hashable, list[float]] = {}  # key -> [window start, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level:
            return True
        key = _event_key(record)
        now = self._clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.window_s:
                entry[1] += 1
                return False
            held_back = int(entry[1]) if entry is not None else 0
            self._seen.pop(key, None)  # re-insert: dict order is then oldest window first
            self._seen[key] = [now, 0]
            if len(self._seen) > MAX_TRACKED:
                del self._seen[next(iter(self._seen))]
        if held_back:
            record.msg = (
                f"{record.getMessage()} (repeated {held_back} times in the last "
                f"{self.window_s:g} s)"
            )
            record.args = None
        return True


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
