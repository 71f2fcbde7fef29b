"""Retained topics of cameras a reload removed, kept until the broker has deleted them.

A removed camera's state, occupancy, counts and snapshot topics are deleted on the broker
(empty retained messages). The broker may be away at that moment: the deletes wait here
and the agent's main loop sends them once it is back, so no subscriber keeps a removed
camera "occupied" for good. A camera added again with the same id takes its topics over.
Held in memory only (docs/events.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.delivery.retained import RetainedSink, RetainedStates
from edge_agent.publish.camera_state import state_topic

if TYPE_CHECKING:
    from edge_agent.pipeline import FrameDelivery


class RemovedTopics:
    """The unsent deletes of removed cameras; `flush` from the main loop."""

    def __init__(self, sink: RetainedSink) -> None:
        self._states = RetainedStates(sink)

    def camera_removed(self, camera_id: str, delivery: FrameDelivery | None) -> None:
        """After `delivery.close(removed=True)`: keep what it could not send, and delete
        the camera's state topic (CameraStates forgets it)."""
        if delivery is not None:
            self._states.adopt(delivery.unsent_retained())
        self._states.clear(state_topic(camera_id))

    def camera_started(self, camera_id: str, delivery: FrameDelivery | None) -> None:
        """A camera of this id starts again: CameraStates sends its state anew, and its
        delivery takes the other deletes over (keeping the topics it publishes itself)."""
        self._states.take(state_topic(camera_id))
        if delivery is not None:
            delivery.adopt_retained(self._states.take(f"{camera_id}/"))

    def flush(self) -> int:
        """Send what the broker has not got; how many are still unsent."""
        return self._states.flush()
