"""Stamps for the spool's age bound that survive a wall-clock step and a restart.

A box without an RTC boots with an old date and steps forward when NTP syncs: an age
taken from `time.time()` then jumps by years and would expire the whole backlog. Each
row stores the wall time, the boot id and CLOCK_BOOTTIME (monotonic, counts suspend, and
is the same clock for every process of one boot). An age is measured on CLOCK_BOOTTIME
when the row is from this boot, on the wall clock only when both the row and now were
stamped by a synchronised clock, and is unknown (the row never expires) otherwise.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CLOCK_SET_AFTER = 1_577_836_800.0
"""2020-01-01 UTC: a wall time before this was taken with an unset clock."""
TIME_ERROR = 5
"""adjtimex's answer while the kernel's clock is not synchronised (NTP not locked)."""
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
SYNCHRONIZED_FLAG = Path("/run/systemd/timesync/synchronized")
SYNC_RECHECK_S = 1.0
"""How long a synced() answer is reused: asking the kernel (a file check and adjtimex)
for every spooled frame cost about a tenth of a millisecond each."""


@dataclass(frozen=True)
class Stamp:
    """When a row was stored, in the three forms an age may be computed from."""

    wall: float
    boot_id: str
    boot_s: float
    synced: bool


class SpoolClock:
    """The real clocks; tests pass a subclass with fixed values."""

    def __init__(self) -> None:
        self._boot_id = _read_boot_id()
        self._synced = False
        self._synced_until = float("-inf")  # time.monotonic() when the answer goes stale

    def wall(self) -> float:
        return time.time()

    def boot_s(self) -> float:
        """Seconds since boot, counting suspend; monotonic across this boot's processes."""
        try:
            return time.clock_gettime(time.CLOCK_BOOTTIME)
        except (AttributeError, OSError):  # not Linux
            return time.monotonic()

    def boot_id(self) -> str:
        return self._boot_id

    def synced(self) -> bool:
        """True when the kernel says NTP has set the clock (or, without that answer, the
        date is at least plausible); asked at most once per SYNC_RECHECK_S."""
        now = time.monotonic()
        if now >= self._synced_until:
            self._synced, self._synced_until = self._ask_synced(), now + SYNC_RECHECK_S
        return self._synced

    def _ask_synced(self) -> bool:
        if SYNCHRONIZED_FLAG.exists():
            return True
        state = _adjtimex_state()
        if state is not None:
            return state != TIME_ERROR and self.wall() >= CLOCK_SET_AFTER
        return self.wall() >= CLOCK_SET_AFTER

    def stamp(self) -> Stamp:
        return Stamp(self.wall(), self.boot_id(), self.boot_s(), self.synced())

    def age(self, stored: Stamp) -> float | None:
        """Seconds since `stored`, or None when no clock can say (never expire then)."""
        if stored.boot_id and stored.boot_id == self.boot_id():
            return max(0.0, self.boot_s() - stored.boot_s)
        if stored.synced and stored.wall >= CLOCK_SET_AFTER and self.synced():
            return self.wall() - stored.wall
        return None


def _read_boot_id() -> str:
    try:
        return BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""  # no boot id: ages across restarts come from the wall clock only


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _adjtimex_state() -> int | None:
    """adjtimex(2) with no changes: the clock state, or None where it cannot be asked."""
    libc = _libc()
    if libc is None or not hasattr(libc, "adjtimex"):
        return None
    buffer = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
    state = int(libc.adjtimex(buffer))
    return None if state < 0 else state
