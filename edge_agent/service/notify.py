"""systemd's notify protocol (sd_notify) in plain Python: one datagram per message.

No systemd binding is needed: the protocol is `KEY=value` lines sent to the AF_UNIX
datagram socket named by $NOTIFY_SOCKET. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to systemd; never raises, warns once if the socket is gone."""

    def __init__(self, address: str | None) -> None:
        # '@name' is an abstract socket: its real name starts with a NUL byte.
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for; a no-op one when $NOTIFY_SOCKET is unset."""
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: object) -> bool:
        """Send `KEY=value` lines in one datagram; True when systemd got it."""
        if self.address is None or not fields:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(message, self.address)
            except OSError as exc:
                if not self._warned:
                    log.warning("cannot notify systemd at %r: %s", self.address, exc)
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: `systemctl start` returns now."""
        return self.send(READY=1, **_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload began; systemd >= 253 (Type=notify-reload) wants MONOTONIC_USEC too."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec, **_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began; `systemctl status` shows "deactivating" instead of a hang."""
        return self.send(STOPPING=1, **_status(status))

    def status(self, text: str) -> bool:
        """One line shown by `systemctl status`."""
        return self.send(**_status(text))

    def watchdog(self) -> bool:
        """Proof of life: resets systemd's WatchdogSec= timer."""
        return self.send(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Move the start/stop timeout to `seconds` from now (a long model compile)."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status(text: str | None) -> dict[str, str]:
    # One datagram line per field: a newline in the text would start a bogus field.
    return {} if text is None else {"STATUS": " ".join(text.splitlines())}


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WatchdogSec=), or None when no watchdog is armed."""
    environ = os.environ if environ is None else environ
    pid = environ.get("WATCHDOG_PID")
    try:
        if pid and int(pid) != os.getpid():
            return None  # the watchdog belongs to another process (we are its child)
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


class ProgressWatchdog:
    """Pings the watchdog only when work was done since the last ping.

    Call `beat(counter)` from the main loop more often than the interval, with a counter
    that grows while frames flow (frames inferred, summed over cameras). A counter that
    stands still means no ping, and systemd restarts the service after WatchdogSec=.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.interval = interval
        self._clock = clock
        self._last_ping: float | None = None
        self._last_progress: int | None = None

    @classmethod
    def from_environment(cls, notifier: Notifier) -> ProgressWatchdog:
        return cls(notifier, watchdog_interval() if notifier.enabled else None)

    @property
    def enabled(self) -> bool:
        return self.interval is not None and self.notifier.enabled

    def beat(self, progress: int) -> bool:
        """Ping if the interval has passed and `progress` moved since the last ping."""
        if self.interval is None:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.interval:
            return False
        if progress == self._last_progress:
            return False
        if not self.notifier.watchdog():
            return False
        self._last_ping = now
        self._last_progress = progress
        return True
