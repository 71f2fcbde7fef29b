"""The command channel's counters as typed values: what health and /metrics read.

`CommandChannel.stats()` returns a `ChannelStats`, so an operator sees from the health
message alone that requests arrive, are refused, fail, repeat or are dropped (docs/health.md,
the `commands` fields). At rest every request received is in exactly one of ok, rejected,
failed, duplicates, dropped, waiting or running.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from edge_agent.commands.spec import Outcome


@dataclass(frozen=True)
class ChannelStats:
    """What the channel did since it started, and what it holds now."""

    received: int
    """Requests on `cmd/<name>` taken off the network (results on `.../result` are not)."""
    ok: int
    rejected: int
    failed: int
    """Requests answered with that final outcome (Outcome), as the result sent said it;
    repeats are not counted here."""
    duplicates: int
    """Repeated request_ids answered from the record (`duplicate: true`), never run again."""
    dropped: int
    """Never answered: the inbox was full, the command name too long to answer on, or
    handling it failed unexpectedly (logged)."""
    waiting: int
    """In the inbox now, not yet checked."""
    running: int
    """Handlers running now (at most one per command name)."""


class Tally:
    """The counts behind ChannelStats; paho's thread, the worker and the runners add to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.dropped = 0
        self.duplicates = 0
        self._outcomes = dict.fromkeys(Outcome, 0)

    def add_received(self, dropped: bool) -> int:
        """One request taken in (and dropped at once, or not); the dropped count so far."""
        with self._lock:
            self.received += 1
            self.dropped += dropped
            return self.dropped

    def add_dropped(self) -> None:
        """A request taken in that will never be answered (handling it failed)."""
        with self._lock:
            self.dropped += 1

    def add_answer(self, outcome: Outcome) -> None:
        """One final answer to a request seen for the first time."""
        with self._lock:
            self._outcomes[outcome] += 1

    def add_duplicate(self) -> None:
        """One repeated request_id answered from the record, whatever its outcome."""
        with self._lock:
            self.duplicates += 1

    def stats(self, waiting: int, running: int) -> ChannelStats:
        with self._lock:
            return ChannelStats(
                received=self.received, ok=self._outcomes[Outcome.OK],
                rejected=self._outcomes[Outcome.REJECTED],
                failed=self._outcomes[Outcome.FAILED], duplicates=self.duplicates,
                dropped=self.dropped, waiting=waiting, running=running,
            )
