"""SpoolClock.synced() asks the kernel at most once per SYNC_RECHECK_S, not per frame."""

from __future__ import annotations

from edge_agent.publish import spool_clock
from edge_agent.publish.spool_clock import SpoolClock


class CountingClock(SpoolClock):
    def __init__(self, answers: list[bool]) -> None:
        super().__init__()
        self.answers, self.asked = answers, 0

    def _ask_synced(self) -> bool:
        self.asked += 1
        return self.answers[self.asked - 1]


def test_the_answer_is_reused_until_it_goes_stale(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(spool_clock.time, "monotonic", lambda: now[0])
    clock = CountingClock([False, True])
    assert [clock.stamp().synced for _ in range(100)] == [False] * 100
    assert clock.asked == 1
    now[0] += spool_clock.SYNC_RECHECK_S - 0.01
    assert clock.synced() is False
    now[0] += 0.02  # stale: asked again, and NTP has synced meanwhile
    assert clock.synced() is True
    assert clock.asked == 2

