"""CameraEvents on known paths: exact events, counts and occupancy (pure logic, no model)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import numpy as np
import pytest

from edge_agent.camera_filter import class_id
from edge_agent.config.zones import LineConfig, TrackerConfig, ZoneConfig
from edge_agent.events import CameraEvents, EventsUpdate
from edge_agent.events.camera import class_filter
from engines.base import Detections
from tests.helpers import IR_LABELS

FRAME = (768, 576)
FPS = 10.0
T0 = 1_800_000_000.0
LABELS = ["person", "bicycle", "car"]
Walker = tuple[float, float, int] | None
"""(anchor x, anchor y, class id) of one object in one frame; None: not detected."""


def box_at(x: float, y: float, width: float = 40, height: float = 100) -> list[float]:
    """A person-sized box whose bottom centre (the feet) is at (x, y)."""
    return [x - width / 2, y - height, x + width / 2, y]


def frame(*walkers: Walker, sizes: Sequence[tuple[float, float]] = ()) -> Detections:
    seen = [(i, w) for i, w in enumerate(walkers) if w is not None]
    boxes = [box_at(w[0], w[1], *(sizes[i] if sizes else (40, 100))) for i, w in seen]
    return Detections(np.array(boxes, np.float32).reshape(-1, 4),
                      np.full(len(seen), 0.8, np.float32),
                      np.array([w[2] for _, w in seen], np.int32))


def walk(points: Sequence[tuple[float, float]], step: float = 12.0,
         class_id: int = 0) -> list[Walker]:
    """Anchor positions along straight legs between points, `step` px per frame."""
    path: list[Walker] = []
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        steps = max(1, int(np.hypot(x2 - x1, y2 - y1) / step))
        path += [(x1 + (x2 - x1) * i / steps, y1 + (y2 - y1) * i / steps, class_id)
                 for i in range(steps)]
    return [*path, (*points[-1], class_id)]


def run(events: CameraEvents, *paths: list[Walker], start: int = 0,
        sizes: Sequence[tuple[float, float]] = ()) -> list[EventsUpdate]:
    """Feed the paths frame by frame (shorter ones stop being detected)."""
    length = max(len(p) for p in paths)
    return [events.update(frame(*(p[i] if i < len(p) else None for p in paths), sizes=sizes),
                          FRAME, T0 + (start + i) / FPS, (start + i) / FPS)
            for i in range(length)]


def all_events(updates: list[EventsUpdate]) -> list[tuple[str, str | None, int]]:
    return [(e.type, e.direction or e.zone, e.track_id) for u in updates for e in u.events]


def camera(zones: Sequence[ZoneConfig] = (), lines: Sequence[LineConfig] = (),
           **tracker: int | float) -> CameraEvents:
    return CameraEvents("street", list(zones), list(lines), TrackerConfig(**tracker), LABELS)


GATE = LineConfig(name="gate", points=[(0.5, 0.1), (0.5, 0.9)],
                  directions={"forward": "east", "backward": "west"})
BAY = ZoneConfig(name="bay", points=[(0.3, 0.3), (0.7, 0.3), (0.7, 0.9), (0.3, 0.9)],
                 dwell_s=3)


@pytest.mark.parametrize(("forward", "backward", "min_frames"), [
    (1, 0, 1), (1, 1, 2), (2, 1, 2), (3, 3, 3), (4, 3, 1), (0, 0, 2),
])
def test_crossing_a_line_k_times_each_way_counts_exactly(
    forward: int, backward: int, min_frames: int
) -> None:
    line = GATE.model_copy(update={"min_frames": min_frames})
    legs = [(200.0, 400.0)] + [(560.0 if i % 2 == 0 else 200.0, 400.0)
                               for i in range(forward + backward)]
    updates = run(camera(lines=[line]), walk(legs))
    assert all_events(updates) == [("cross", "east" if i % 2 == 0 else "west", 1)
                                   for i in range(forward + backward)]
    totals = {"east": {"person": forward} if forward else {},
              "west": {"person": backward} if backward else {}}
    assert [u.counts for u in updates if u.counts][-1] == {"gate": totals}


def test_random_walks_with_gaps_cross_exactly_as_often_as_the_path_does() -> None:
    """Property: for random back-and-forth walks at walking pace (4-12 px a frame for a
    100 px tall person at 10 fps), gaps of 1-2 frames and min_frames 1-3, the counts equal
    the number of times the path itself crosses the line, and the id never changes. Gaps
    stay 3 frames away from a turn: SORT's motion model cannot follow a person who turns
    round while unseen (docs/events.md, Tracking)."""
    rng = random.Random(7)
    for _ in range(20):
        crossings = rng.randint(0, 5)
        xs = [rng.uniform(150, 330)] + [rng.uniform(440, 620) if i % 2 == 0 else
                                        rng.uniform(150, 330) for i in range(crossings)]
        corners = [(x, rng.uniform(250, 450)) for x in xs]
        step = rng.uniform(4, 12)
        legs = [walk(corners[i:i + 2], step=step)[:-1] for i in range(len(corners) - 1)]
        path = [w for leg in legs for w in leg] + walk(corners[-1:] * 2)
        turns = np.cumsum([len(leg) for leg in legs])
        free = [i for i in range(3, len(path) - 5) if np.abs(turns - i).min(initial=99) > 3]
        for gap in rng.sample(free, k=min(3, len(free) // 10)):
            length = rng.randint(1, 2)
            path[gap:gap + length] = [None] * length
        line = GATE.model_copy(update={"min_frames": rng.randint(1, 3)})
        updates = run(camera(lines=[line]), path + [path[-1]] * 3)
        events = all_events(updates)
        assert len(events) == crossings, (crossings, events)
        assert {int(i) for u in updates for i in u.track_ids} == {1}


def test_walking_round_the_end_of_a_line_counts_nothing() -> None:
    short = GATE.model_copy(update={"points": [(0.5, 0.1), (0.5, 0.5)]})
    updates = run(camera(lines=[short]), walk([(200, 500), (560, 500), (200, 500)]))
    assert all_events(updates) == []


@pytest.mark.parametrize(("pattern", "min_frames"), [
    ("ioioioioioioio", 2), ("iioiioiioiio", 3), ("ooiooiooioo", 2), ("iiooiiooiioo", 3),
])
def test_jitter_across_an_edge_fires_nothing(pattern: str, min_frames: int) -> None:
    """A box standing on the zone's left edge and the line, its feet 3 px either side."""
    zone = BAY.model_copy(update={"min_frames": min_frames, "dwell_s": None})
    line = GATE.model_copy(update={"min_frames": min_frames,
                                   "points": [(0.3, 0.1), (0.3, 0.9)]})
    edge = 0.3 * FRAME[0]
    path: list[Walker] = [(edge + (3 if c == "i" else -3), 400.0, 0) for c in pattern]
    updates = run(camera([zone], [line]), path)
    assert all_events(updates) == []


def test_enter_and_leave_a_zone_once_with_occupancy() -> None:
    updates = run(camera(zones=[BAY.model_copy(update={"dwell_s": None})]),
                  walk([(100, 400), (380, 400), (380, 420), (100, 420)]))
    assert all_events(updates) == [("enter", "bay", 1), ("exit", "bay", 1)]
    assert [u.occupancy for u in updates if u.occupancy is not None] == [
        {"bay": {}}, {"bay": {"person": 1}}, {"bay": {"person": 0}}]


def test_standing_still_a_known_time_dwells_once() -> None:
    still: list[Walker] = [(380.0, 400.0, 0)] * int(10 * FPS)  # 10 s inside, dwell_s 3
    updates = run(camera(zones=[BAY]), walk([(100, 400), (380, 400)]) + still)
    events = [e for u in updates for e in u.events]
    assert [e.type for e in events] == ["enter", "dwell"]
    enter, dwell = events
    assert dwell.dwell_s == pytest.approx(3.0, abs=0.11)
    bay_left = 0.3 * FRAME[0]
    first_inside = next(i for i, u in enumerate(updates)
                        if (u.tracks[0].box[0] + u.tracks[0].box[2]) / 2 > bay_left)
    assert dwell.time - (T0 + first_inside / FPS) == pytest.approx(3.0, abs=0.11)
    assert enter.time < dwell.time


def test_class_filter_and_anchor_choice() -> None:
    cars_only = BAY.model_copy(update={"classes": ["car"], "dwell_s": None, "name": "cars"})
    by_centre = BAY.model_copy(update={"anchor": "center", "dwell_s": None, "name": "mid"})
    # Feet 30 px inside the bay's top edge (y=173): the centre (50 px up) stays outside.
    person = walk([(380, 100), (380, 203)], step=10)
    car = walk([(600, 300), (380, 300)], class_id=2)
    updates = run(camera(zones=[cars_only, by_centre]), person, car)
    zone_events = sorted((e.zone, e.label) for u in updates for e in u.events)
    assert zone_events == [("cars", "car"), ("mid", "car")]


@pytest.mark.parametrize(("key", "ids"), [
    ("car", {2}), (2, {2}), ("2", {2}), ("traffic light", {3}), ("traffic_light", {3}),
    (4, set()), (-1, set()), ("4", set()), ("truck", set()), ("Car", set()),
])
def test_zone_classes_resolve_as_detect_and_check_config_do(key: str | int,
                                                            ids: set[int]) -> None:
    """A zone or line counts exactly the classes check-config accepts (class_id): an id
    past the last class or a name the model lacks counts nothing, a spaced name finds
    the IR's underscored label."""
    assert class_filter([key], IR_LABELS, "zone z") == frozenset(ids)
    assert ({class_id(key, IR_LABELS)} - {None}) == ids


def test_two_objects_crossing_each_other_keep_their_ids() -> None:
    left = walk([(100, 420), (660, 400)], step=10)
    right = walk([(660, 400), (100, 420)], step=10)
    updates = run(camera(lines=[GATE]), left, right, sizes=[(40, 100), (34, 80)])
    ids = np.array([u.track_ids for u in updates])
    assert (ids[:, 0] == ids[0, 0]).all()
    assert (ids[:, 1] == ids[0, 1]).all()
    assert sorted(all_events(updates)) == [("cross", "east", ids[0, 0]),
                                           ("cross", "west", ids[0, 1])]


@pytest.mark.parametrize(("max_missed", "same_id"), [(2, True), (10, True), (1, False)])
def test_an_id_survives_a_two_frame_gap(max_missed: int, same_id: bool) -> None:
    path = walk([(100, 400), (600, 400)], step=8)
    path[20:22] = [None, None]
    updates = run(camera(max_missed_frames=max_missed), path)
    ids = {int(u.track_ids[0]) for u in updates if len(u.track_ids)}
    assert (ids == {1}) is same_id, ids


def test_a_track_lost_inside_a_zone_exits_when_it_expires() -> None:
    path = walk([(100, 400), (380, 400)])
    updates = run(camera(zones=[BAY.model_copy(update={"dwell_s": None})],
                         max_missed_frames=4), path + [None] * 6)
    kinds = [(e.type, i) for i, u in enumerate(updates) for e in u.events]
    assert [k for k, _ in kinds] == ["enter", "exit"]
    assert kinds[1][1] == len(path) + 4  # the frame after the fourth missed one
    assert updates[kinds[1][1]].occupancy == {"bay": {"person": 0}}


def test_counts_per_window_restart_each_window() -> None:
    line = GATE.model_copy(update={"count_window_s": 10.0})
    events = camera(lines=[line])
    first = run(events, walk([(200, 400), (560, 400)]))  # crosses in window [T0, T0+10)
    second = run(events, walk([(560, 400), (200, 400)]), start=150)  # window [T0+10, T0+20)
    assert [u.window_counts for u in first if u.window_counts][-1]["gate"].counts == {
        "east": {"person": 1}, "west": {}}
    last = [u.window_counts for u in second if u.window_counts][-1]["gate"]
    assert (last.start, last.end, last.counts) == (T0 + 10, T0 + 20,
                                                   {"east": {}, "west": {"person": 1}})
    assert events.counts() == {"gate": {"east": {"person": 1}, "west": {"person": 1}}}


def test_reconfigure_keeps_unchanged_shapes_and_resets_changed_ones() -> None:
    other = GATE.model_copy(update={"name": "other", "points": [(0.4, 0.1), (0.4, 0.9)]})
    events = camera(lines=[GATE, other])
    run(events, walk([(200, 400), (560, 400)]))
    assert events.counts() == {"gate": {"east": {"person": 1}, "west": {}},
                               "other": {"east": {"person": 1}, "west": {}}}
    moved = other.model_copy(update={"points": [(0.45, 0.1), (0.45, 0.9)]})
    events.reconfigure([BAY], [GATE, moved])
    update = events.update(frame(), FRAME, T0 + 100, 100)
    assert update.counts == {"gate": {"east": {"person": 1}, "west": {}},
                             "other": {"east": {}, "west": {}}}
    assert update.occupancy == {"bay": {}}
    assert events.update(frame(), FRAME, T0 + 101, 101).counts is None


def test_events_carry_the_contract_fields_and_unique_ids() -> None:
    updates = run(camera([BAY], [GATE]), walk([(100, 400), (380, 400), (600, 400)]))
    events = [e for u in updates for e in u.events]
    assert [e.type for e in events] == ["enter", "cross", "exit"]
    assert len({e.event_id for e in events}) == 3
    for e in events:
        assert (e.camera_id, e.label, e.class_id, e.track_id) == ("street", "person", 0, 1)
        assert e.first_seen == T0
        assert len(e.box) == 4
        assert e.score == pytest.approx(0.8)
    track = updates[-1].tracks[0]
    assert track.velocity[0] == pytest.approx(12 * FPS, rel=0.05)  # 12 px a frame at 10 fps
    assert (track.first_seen, track.best_score) == (T0, pytest.approx(0.8))


def test_line_counts_per_class_and_ignores_classes_it_does_not_count() -> None:
    line = GATE.model_copy(update={"classes": ["person", "car"]})
    person = walk([(200, 300), (560, 300)])
    car = walk([(560, 450), (200, 450)], class_id=2)
    bicycle = walk([(200, 380), (560, 380)], class_id=1)
    updates = run(camera(lines=[line]), person, car, bicycle,
                  sizes=[(40, 100), (120, 70), (50, 60)])
    assert sorted((e.label, e.direction) for u in updates for e in u.events) == [
        ("car", "west"), ("person", "east")]
    assert [u.counts for u in updates if u.counts][-1] == {
        "gate": {"east": {"person": 1}, "west": {"car": 1}}}


def expected_zone_events(pattern: str, min_frames: int) -> list[tuple[str, int]]:
    """Reference by runs, not by a streak counter: after dropping missed frames ('-'), a
    run of k >= min_frames frames on the other side flips the state at its min_frames-th
    frame. Returns (event type, index of the frame in `pattern`)."""
    seen = [(i, c) for i, c in enumerate(pattern) if c != "-"]
    events, inside, start = [], False, 0
    while start < len(seen):
        end = start
        while end < len(seen) and seen[end][1] == seen[start][1]:
            end += 1
        if (seen[start][1] == "i") != inside and end - start >= min_frames:
            inside = not inside
            events.append(("enter" if inside else "exit", seen[start + min_frames - 1][0]))
        start = end
    return events


def test_random_in_out_sequences_fire_exactly_the_reference_events() -> None:
    """Property: feet a few pixels either side of the zone's edge in random runs, with
    missed frames, give exactly the events the run-based reference gives."""
    rng = random.Random(11)
    edge = 0.3 * FRAME[0]
    fired = 0
    for _ in range(40):
        min_frames = rng.randint(1, 4)
        pattern = ""
        while len(pattern) < 40:
            pattern += rng.choice("io") * rng.randint(1, 6)
            if rng.random() < 0.2:
                pattern += "-" * rng.randint(1, 2)
        pattern = pattern.strip("-")
        path: list[Walker] = [None if c == "-" else
                              (edge + (1 if c == "i" else -1) * rng.uniform(2, 8), 400.0, 0)
                              for c in pattern]
        zone = BAY.model_copy(update={"min_frames": min_frames, "dwell_s": None})
        updates = run(camera([zone]), path)
        got = [(e.type, i) for i, u in enumerate(updates) for e in u.events]
        assert got == expected_zone_events(pattern, min_frames), (pattern, min_frames)
        fired += len(got)
    assert fired > 50  # the property was exercised, not vacuously true


def test_filtered_classes_start_at_zero_and_unknown_names_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    zone = BAY.model_copy(update={"classes": ["car", "person", "unicorn"], "dwell_s": None})
    update = camera(zones=[zone]).update(frame(), FRAME, T0, 0.0)
    assert update.occupancy == {"bay": {"person": 0, "car": 0}}
    assert "zone bay: class 'unicorn' is not one of the model's labels" in caplog.text


def test_an_exit_names_the_class_its_visit_was_counted_under() -> None:
    """A track whose class flips while inside (seen as a bicycle, then mostly as a car):
    its exit carries the enter's label and class id, so per-label tallies of enter/exit
    come back to the occupancy, which counted it as a bicycle."""
    inside: list[Walker] = [(380.0, 400.0, 1)] * 5 + [(380.0, 400.0, 2)] * 20
    leaving = [(x, y, 2) for x, y, _ in walk([(380, 400), (100, 400)])]  # type: ignore[misc]
    zone = BAY.model_copy(update={"dwell_s": None})
    updates = run(camera(zones=[zone]), [*inside, *leaving])
    events = [e for u in updates for e in u.events]
    assert [(e.type, e.label, e.class_id) for e in events] == [
        ("enter", "bicycle", 1), ("exit", "bicycle", 1)]
    assert [u.occupancy for u in updates if u.occupancy is not None][-1] == {
        "bay": {"bicycle": 0}}
