"""Events per second over the last minute, cheap enough to update per event."""

from __future__ import annotations

import collections
import threading

WINDOW_S = 60.0


class EventRate:
    """Counts per whole second over the last WINDOW_S seconds (monotonic clock)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._bins: collections.deque[list[float]] = collections.deque()  # [second, count]
        self._started: float | None = None
        self._lock = threading.Lock()  # the pipeline adds, the health thread reads

    def add(self, now_mono: float, count: int = 1) -> None:
        second = float(int(now_mono))
        with self._lock:
            if self._started is None:
                self._started = now_mono
            if self._bins and self._bins[-1][0] == second:
                self._bins[-1][1] += count
            else:
                self._bins.append([second, float(count)])
            self._expire(now_mono)

    def start(self, now_mono: float) -> None:
        """The moment counting began: the rate's first minute divides by less."""
        with self._lock:
            if self._started is None:
                self._started = now_mono

    def per_second(self, now_mono: float) -> float:
        """Events/s over the last window (or since the start, when that is shorter)."""
        with self._lock:
            self._expire(now_mono)
            if self._started is None:
                return 0.0
            span = min(self.window_s, max(now_mono - self._started, 1.0))
            return sum(count for _, count in self._bins) / span

    def _expire(self, now_mono: float) -> None:
        while self._bins and self._bins[0][0] <= now_mono - self.window_s - 1.0:
            self._bins.popleft()
