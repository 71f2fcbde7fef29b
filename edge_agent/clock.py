"""Is the wall clock trustworthy yet? Boxes without an RTC boot with an old date.

Durations, ages, timeouts and rates use `time.monotonic()` everywhere; the wall clock is
only used to stamp payloads. Until NTP (or chrony, or systemd-timesyncd) has set it, those
stamps can be years off, so payloads and health carry `clock_synced`. The kernel knows:
`adjtimex()` returns TIME_ERROR while its STA_UNSYNC flag is set. Where that cannot be
asked (not Linux), a date before BUILD_YEAR counts as unsynchronised.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TIME_ERROR = 5
"""adjtimex() result while the kernel clock is not synchronised (STA_UNSYNC)."""
BUILD_YEAR = 2025
"""No correct clock reads earlier than the year this agent was written."""
RECHECK_S = 10.0
_TIMEX_BYTES = 512
"""Larger than struct timex on every Linux ABI; zeroed `modes` makes the call read-only."""


def kernel_synced() -> bool | None:
    """True/False from adjtimex(); None where the kernel cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    buffer = ctypes.create_string_buffer(_TIMEX_BYTES)
    result = adjtimex(buffer)
    if result < 0:
        return None
    return result != TIME_ERROR


def plausible_year(now: float) -> bool:
    return time.gmtime(now).tm_year >= BUILD_YEAR


class ClockTrust:
    """Whether wall-clock stamps can be trusted, asked at most every RECHECK_S."""

    def __init__(
        self,
        probe: Callable[[], bool | None] = kernel_synced,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe, self._wall, self._monotonic = probe, wall, monotonic
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._synced = True
        self._logged: bool | None = None

    def synced(self) -> bool:
        now = self._monotonic()
        if now - self._checked_at < RECHECK_S:
            return self._synced
        with self._lock:
            if now - self._checked_at >= RECHECK_S:
                kernel = self._probe()
                self._synced = plausible_year(self._wall()) if kernel is None else kernel
                self._checked_at = now
                self._log_change()
        return self._synced

    def _log_change(self) -> None:
        if self._synced == self._logged:
            return
        if not self._synced:
            log.warning(
                "the wall clock is not synchronised (no NTP yet?): payloads are flagged "
                "clock_synced=false until it is"
            )
        elif self._logged is not None:
            log.info("the wall clock is synchronised now")
        self._logged = self._synced


TRUST = ClockTrust()
"""The process-wide answer; capture and health ask it."""
