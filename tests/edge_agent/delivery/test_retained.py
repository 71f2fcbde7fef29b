"""Retained state: sent on change, held while disconnected, all again after a lost
connection, deleted with an empty payload; and the events/s meter."""

from __future__ import annotations

from edge_agent.delivery.rate import EventRate
from edge_agent.delivery.retained import RetainedStates


class Sink:
    """A publisher stand-in recording retained messages (the real one is in the
    end-to-end tests); `connected` and `disconnects` as the Publisher has them."""

    def __init__(self) -> None:
        self.connected = True
        self.disconnects = 0
        self.sent: list[tuple[str, bytes]] = []

    def publish_retained(self, subtopic: str, payload: bytes) -> bool:
        if not self.connected:
            return False
        self.sent.append((subtopic, payload))
        return True


def test_sent_once_per_change_and_again_after_an_outage() -> None:
    sink = Sink()
    states = RetainedStates(sink)
    states.set("a", b"1")
    states.set("b", b"1")
    assert states.flush() == 0
    assert sink.sent == [("a", b"1"), ("b", b"1")]
    states.set("a", b"1")  # unchanged: nothing to send
    assert states.flush() == 0
    assert len(sink.sent) == 2
    sink.connected, sink.disconnects = False, 1
    states.set("a", b"2")
    assert states.flush() == 2  # both wait: the broker may have lost "b" too
    sink.connected = True
    assert states.flush() == 0
    assert sink.sent[2:] == [("a", b"2"), ("b", b"1")]


def test_clear_sends_an_empty_retained_message_once() -> None:
    sink = Sink()
    states = RetainedStates(sink)
    states.set("zone", b"x")
    states.flush()
    states.clear("zone")
    states.flush()
    sink.disconnects += 1
    states.flush()
    assert sink.sent == [("zone", b"x"), ("zone", b"")]


def test_event_rate_over_the_last_minute() -> None:
    rate = EventRate(window_s=60.0)
    assert rate.per_second(0.0) == 0.0
    for second in range(30):
        rate.add(1000.0 + second, count=2)
    assert rate.per_second(1030.0) == 2.0  # 60 events over 30 s since the first
    assert rate.per_second(1060.0) == 1.0  # the same 60 over the full minute
    assert rate.per_second(1200.0) == 0.0  # all expired
