"""Counting and logging dropped detection messages: one line per interval, never a flood."""

from __future__ import annotations

import logging
import threading
import time

from edge_agent.service.logs import SELF_LIMITED

log = logging.getLogger("edge_agent.publish.outbox")  # the lines technicians already grep

DROP_LOG_INTERVAL_S = 10.0


class DropLog:
    """Drops of detection messages: `total` this run, logged first at once, then at most
    one line per DROP_LOG_INTERVAL_S with the count and the latest reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self._unlogged = 0
        self._logged_at = float("-inf")
        self._reason = ""

    def count(self, reason: str, count: int = 1) -> None:
        """Count `count` drops for `reason`; safe under the outbox's lock (no logging)."""
        with self._lock:
            self.total += count
            self._unlogged += count
            self._reason = reason

    def log(self, force: bool = False) -> None:
        """First drop at once, then one line per DROP_LOG_INTERVAL_S with the count."""
        now = time.monotonic()
        with self._lock:
            if not self._unlogged:
                return
            if not force and now - self._logged_at < DROP_LOG_INTERVAL_S:
                return
            count, total, reason = self._unlogged, self.total, self._reason
            self._unlogged = 0
            self._logged_at = now
        log.warning("MQTT dropped %d detection message(s) (%d in total): %s", count, total, reason,
                    extra=SELF_LIMITED)  # already one line per DROP_LOG_INTERVAL_S
