"""Clock trust: the kernel's word first, a plausible year where it cannot be asked."""

from __future__ import annotations

import calendar
import logging

import pytest

from edge_agent import clock
from edge_agent.clock import ClockTrust, kernel_synced

JAN_1970 = 3600.0
NOV_2026 = float(calendar.timegm((2026, 11, 30, 12, 0, 0)))


@pytest.mark.parametrize(
    ("kernel", "wall", "synced"),
    [
        (True, NOV_2026, True),
        (False, NOV_2026, False),  # the kernel knows better than a plausible date
        (True, JAN_1970, True),  # and a synced kernel is believed
        (None, NOV_2026, True),
        (None, JAN_1970, False),  # no RTC, no NTP: the box thinks it is 1970
        (None, float(calendar.timegm((clock.BUILD_YEAR - 1, 12, 31, 0, 0, 0))), False),
    ],
)
def test_trust(kernel: bool | None, wall: float, synced: bool) -> None:
    assert ClockTrust(lambda: kernel, lambda: wall, lambda: 100.0).synced() is synced


def test_asked_again_only_after_recheck_interval(caplog: pytest.LogCaptureFixture) -> None:
    answers = [False, True]
    now = [0.0]
    trust = ClockTrust(lambda: answers[0], lambda: NOV_2026, lambda: now[0])
    with caplog.at_level(logging.INFO, logger="edge_agent.clock"):
        assert not trust.synced()
        answers[0] = True
        now[0] = clock.RECHECK_S / 2
        assert not trust.synced()  # cached
        now[0] = clock.RECHECK_S + 0.1
        assert trust.synced()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not synchronised" in m for m in messages) == 1
    assert sum("synchronised now" in m for m in messages) == 1


def test_kernel_can_be_asked_here() -> None:
    """Linux answers adjtimex() without privileges; the answer depends on the host."""
    assert kernel_synced() in (True, False)
