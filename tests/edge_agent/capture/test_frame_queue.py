"""A file camera stopped with a full queue: the frame it held is not queued, and its
sequence number stays free, so a restarted camera continues with no gap."""

from __future__ import annotations

import threading
import time

import numpy as np

from edge_agent.capture.camera import Frame, FrameQueue


def frame(sequence: int) -> Frame:
    return Frame("cam", sequence, np.zeros((2, 2, 3), np.uint8), time.time(), 1.0)


def test_a_waiting_queue_refuses_at_stop_a_live_one_drops_the_oldest() -> None:
    stop = threading.Event()
    waiting = FrameQueue(1, drop_oldest=False)
    assert waiting.put(frame(0), stop)
    stop.set()
    assert not waiting.put(frame(1), stop)
    assert [waiting.get(0.0).sequence, waiting.get(0.0)] == [0, None]
    live = FrameQueue(1, drop_oldest=True)
    assert live.put(frame(0), stop)
    assert live.put(frame(1), stop)
    assert (live.get(0.0).sequence, live.dropped) == (1, 1)
