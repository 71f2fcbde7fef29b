"""The publisher's counters as typed values: what health, /metrics and logs may read.

`Outbox.stats()` and `Publisher.stats()` return these instead of string-keyed dicts, so
a renamed counter is an error where it is read, not a silent 0 (docs/mqtt.md, "Messages
the broker refuses"; docs/health.md, the `mqtt` fields).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutboxStats:
    """Detections on their way to the broker (`Outbox.stats()`)."""

    queued: int
    """Stored and not yet acknowledged (spool depth)."""
    published: int
    acknowledged: int
    dropped: int
    """Dropped in this run: refused, or pushed out of a full or expired spool."""
    trimmed: int
    dead_lettered: int
    """Set aside in this run."""
    dead_lettered_total: int
    """Set aside in the spool file, across restarts."""
    spool_error: str | None
    spool_dropped_total: int
    spool_on_disk: bool
    spool_salvaged: int
    spool_unreadable: int
    spool_salvage: str | None


@dataclass(frozen=True, kw_only=True)
class PublisherStats(OutboxStats):
    """The whole MQTT side (`Publisher.stats()`): the connection and the outbox."""

    connected: bool
    last_error: str | None
    protocol: str
    """"5" or "3.1.1"."""
    max_message_bytes: int
    """The size limit in force: the config's, lowered to the broker's stated maximum."""
    broker_max_packet: int | None
    disconnects: int
    last_disconnect: str | None
    control_dropped: int
    """Status/info/state messages over the broker's stated limit."""
