"""Retained state messages of one camera (occupancy, counts, last snapshot per class).

Each topic keeps only its newest payload. It is sent when it changes, and all of them
again after the connection to the broker was lost: a broker that restarted without
persistence has forgotten them, and one that was away missed the changes meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class RetainedSink(Protocol):
    """The publisher's side used here (edge_agent.publish.publisher.Publisher)."""

    @property
    def connected(self) -> bool: ...

    disconnects: int

    def publish_retained(self, subtopic: str, payload: bytes) -> bool: ...


class RetainedStates:
    """Newest payload per subtopic; `flush()` sends what the broker does not have yet."""

    def __init__(self, sink: RetainedSink) -> None:
        self._sink = sink
        self._latest: dict[str, bytes] = {}
        self._dirty: dict[str, None] = {}  # insertion-ordered set
        self._disconnects = sink.disconnects

    def set(self, subtopic: str, payload: bytes) -> None:
        """Remember `payload` as the state of `subtopic`; sent by the next flush."""
        if self._latest.get(subtopic) == payload:
            return
        self._latest[subtopic] = payload
        self._dirty[subtopic] = None

    def clear(self, subtopic: str) -> None:
        """Delete a retained topic on the broker (an empty retained message), e.g. for a
        zone removed by a reload."""
        self._latest[subtopic] = b""
        self._dirty[subtopic] = None

    def clear_all(self) -> None:
        """Delete every topic this holds a state of (a camera removed for good)."""
        for subtopic, payload in list(self._latest.items()):
            if payload:
                self.clear(subtopic)

    def unsent(self) -> dict[str, bytes]:
        """What the broker has not got yet, by subtopic (b"": a delete)."""
        return {subtopic: self._latest[subtopic] for subtopic in self._dirty}

    def adopt(self, pending: Mapping[str, bytes]) -> None:
        """Take another holder's unsent states; a topic this already holds keeps its own."""
        for subtopic, payload in pending.items():
            if subtopic not in self._latest:
                self.set(subtopic, payload)

    def take(self, prefix: str) -> dict[str, bytes]:
        """Remove and return the unsent states of the subtopics under `prefix`."""
        taken = {subtopic: payload for subtopic, payload in self.unsent().items()
                 if subtopic.startswith(prefix)}
        for subtopic in [s for s in self._latest if s.startswith(prefix)]:
            del self._latest[subtopic]
            self._dirty.pop(subtopic, None)
        return taken

    def flush(self) -> int:
        """Send changed states (all after a lost connection); how many are still unsent."""
        disconnects = self._sink.disconnects
        if disconnects != self._disconnects:
            self._disconnects = disconnects
            self._dirty.update(dict.fromkeys(self._latest))
        if not self._dirty or not self._sink.connected:
            return len(self._dirty)
        for subtopic in list(self._dirty):
            payload = self._latest[subtopic]
            if not self._sink.publish_retained(subtopic, payload):
                break  # the connection went: the rest waits for the next flush
            del self._dirty[subtopic]
            if payload == b"":
                del self._latest[subtopic]
        return len(self._dirty)
