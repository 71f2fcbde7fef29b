"""Poison messages: one that kills the connection each time it is sent, or that the
broker refuses outright, is set aside instead of being retried forever.

A broker drops a client that sends a packet over its `max_packet_size` (an MQTT 3.1.1
broker cannot say why); after a reconnect the same message is at the head again. Three
disconnects in a row while the same message is the oldest unacknowledged one mark it as
poison. When it was bigger than anything delivered, size is the likely cause, and the
size limit drops halfway towards the biggest message delivered, so the next big frames
are trimmed before they are sent instead of costing three disconnects each.
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535
"""MQTT's limit on a topic name (a two-byte length)."""

STRIKES = 3
"""Disconnects in a row with the same head message before it counts as poison."""
MIN_LEARNED_LIMIT = 1024


class PoisonWatch:
    """Counts disconnects per head message and learns a size limit from poison."""

    def __init__(self, strikes: int = STRIKES) -> None:
        self.strikes_needed = strikes
        self._suspect: int | None = None
        self._strikes = 0
        self.largest_delivered = 0
        self.learned_limit: int | None = None
        """A payload limit inferred from poison (the broker did not state one)."""

    def delivered(self, row: int, size: int) -> None:
        """The broker acknowledged `row`: it is no suspect, and `size` is known to pass."""
        if row == self._suspect:
            self._suspect, self._strikes = None, 0
        self.largest_delivered = max(self.largest_delivered, size)

    def disconnected(self, head: int | None) -> bool:
        """The connection dropped while `head` was the oldest message in flight; True
        when that has happened `strikes` times in a row (set it aside)."""
        if head is None:
            return False
        if head != self._suspect:
            self._suspect, self._strikes = head, 0
        self._strikes += 1
        if self._strikes < self.strikes_needed:
            return False
        self._suspect, self._strikes = None, 0
        return True

    def learn(self, size: int) -> int | None:
        """A `size`-byte payload was poison: the new learned limit, or None if unchanged."""
        if size <= self.largest_delivered:
            return None  # smaller than what passed: not a size problem
        limit = max(MIN_LEARNED_LIMIT, (self.largest_delivered + size) // 2)
        if self.learned_limit is not None and limit >= self.learned_limit:
            return None
        self.learned_limit = limit
        return limit


def unsendable_topic(topic: object) -> str | None:
    """Why no broker can ever take a message on `topic` (None: it can).

    A spooled row from a damaged or edited file may carry a topic paho refuses by
    raising, or one that makes the broker drop the connection: either would block the
    queue forever, so the sender sets such a row aside at once.
    """
    if not isinstance(topic, str) or not topic:
        return "the topic is empty" if topic == "" else f"the topic is not text: {topic!r:.40}"
    if "+" in topic or "#" in topic:
        return "the topic contains an MQTT wildcard ('+' or '#')"
    if "\x00" in topic:
        return "the topic contains a NUL character"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return "the topic is not valid UTF-8"
    if size > MAX_TOPIC_BYTES:
        return f"the topic is {size} bytes (MQTT allows {MAX_TOPIC_BYTES})"
    return None
