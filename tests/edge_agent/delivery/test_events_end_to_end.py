"""Events end to end, against ground truth: a synthetic clip made here (people cut from the
sample images walking over a plain background along known paths) through the real agent,
the real model and a real Mosquitto.

One clip, two agent runs (the second is a restart after `kill -9`), checked together:

- A walks left-right-left-right on the upper row: crosses the line in, out, in; A is
  blanked for two frames just before its second crossing (the id must survive the gap).
- C walks right to left on the middle row, passing A at the line: crosses out once.
- B walks into the zone on the lower row, stands there, walks out: enter, dwell, exit.

Run 1: the broker stops before the first event and the agent is SIGKILLed once all of its
events wait in the spool. Run 2: the broker is back, the agent restarts, delivers run 1's
events from the spool and plays the clip again. Every event arrives exactly once (by
event id), each run's events are exactly the expected ones, the retained counts are
consistent with run 2's events (counts start at 0 at each start and say since when).
Snapshots: run 1 keeps only the newest `keep` files; in run 2 the snapshot folder cannot
be written and the events go out anyway, saying why.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from tests.helpers import (
    REPO,
    SAMPLES,
    Broker,
    Collector,
    free_port,
    persist_sessions,
    persistent_subscriber,
    start_agent,
    validated_health,
    wait_until,
    write_config,
)

SCHEMAS = REPO / "docs" / "schemas"
EVENTS = json.loads((SCHEMAS / "events.schema.json").read_text())
COUNTS = json.loads((SCHEMAS / "line-counts.schema.json").read_text())
OCCUPANCY = json.loads((SCHEMAS / "zone-occupancy.schema.json").read_text())
DETECTIONS = json.loads((SCHEMAS / "detections.schema.json").read_text())
CHECK = jsonschema.FormatChecker()

WIDTH, HEIGHT, FPS, FRAMES = 640, 360, 10, 110
ROW_A, ROW_C, ROW_B = 150, 280, 345
"""Bottom (feet) of each walker, px: the default zone anchor is the box's bottom centre."""
GAP_A = (40, 41)
"""Frames where A is not drawn: two missed detections just before A's second crossing."""
KEEP = 4

CAMERA = f"""\
  - id: yard
    type: file
    path: {{clip}}
    realtime: true
    lines:
      - name: gate
        points: [[0.5, 0.0], [0.5, 1.0]]
        directions: {{{{forward: in, backward: out}}}}
        classes: [person]
    zones:
      - name: bay
        points: [[0.55, 0.85], [0.85, 0.85], [0.85, 1.0], [0.55, 1.0]]
        dwell_s: 2
    publish: {{{{detections: on_change}}}}
    snapshots: {{{{enabled: true, mode: both, max_width: 320, quality: 70, keep: {KEEP}}}}}
"""
EXPECTED = Counter({("cross", "gate", "in"): 2, ("cross", "gate", "out"): 2,
                    ("enter", "bay", None): 1, ("dwell", "bay", None): 1,
                    ("exit", "bay", None): 1})
PER_RUN = sum(EXPECTED.values())


def legs(points: list[int], speed: int) -> list[float]:
    """x of one walker per frame along straight legs between `points`, `speed` px/frame."""
    xs = [float(points[0])]
    for start, end in itertools.pairwise(points):
        steps = abs(end - start) // speed
        xs += np.linspace(start, end, steps + 1)[1:].tolist()
    return xs


def walkers(frame: int) -> list[tuple[str, float, int]]:
    """(who, centre x, bottom y) of everyone drawn in `frame`."""
    a = legs([140, 500, 140, 500], 12)  # line at x=320: in, out, in
    c = legs([600, 40], 14)  # out, passing A near the line
    b = [None] * 30 + legs([600, 450], 15) + [450.0] * 30 + legs([450, 600], 15)
    drawn = [("C", c[min(frame, len(c) - 1)], ROW_C)]
    if frame not in GAP_A:
        drawn.append(("A", a[min(frame, len(a) - 1)], ROW_A))
    x = b[frame] if frame < len(b) else 600.0
    if x is not None:
        drawn.append(("B", x, ROW_B))
    return drawn


def make_clip(samples: Path, path: Path) -> Path:
    """The clip: people cut from two sample photos (a skier without his skis, a walker) on
    grey, written with OpenCV. When this was written the sample model found exactly these
    people, and nothing else, in every frame, each with a score of 0.81 or more."""
    skier = cv2.imread(str(samples / "images" / "000000000785.jpg"))[45:358, 272:484]
    walker = cv2.imread(str(samples / "images" / "kite_and_cold.jpg"))[600:770, 104:174]

    def sized(image: np.ndarray, height: int) -> np.ndarray:
        width = round(image.shape[1] * height / image.shape[0])
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    sprites = {"A": sized(skier, 110), "B": sized(walker, 130), "C": sized(walker, 140)}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for frame in range(FRAMES):
        image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        for who, x, bottom in sorted(walkers(frame), key=lambda item: item[2]):
            sprite = sprites[who]
            height, width = sprite.shape[:2]
            left = round(x - width / 2)
            lo, hi = max(0, left), min(WIDTH, left + width)
            image[bottom - height:bottom, lo:hi] = sprite[:, lo - left:hi - left]
        writer.write(image)
    writer.release()
    return path


def spooled_events(state: Path) -> list[str]:
    """Event ids waiting in the agent's spool file (read while the agent runs)."""
    path = state / "spool.sqlite3"
    if not path.is_file():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute("SELECT payload FROM messages WHERE topic LIKE '%/yard/events' "
                          "ORDER BY id").fetchall()
    return [json.loads(payload)["event_id"] for (payload,) in rows]


def who(event: dict) -> str:
    """Which walker an event is about, from where its box's bottom is."""
    bottom = event["box"]["y2"]
    return min(((abs(bottom - row), name) for name, row in
                (("A", ROW_A), ("C", ROW_C), ("B", ROW_B))))[1]


def check_run(events: list[dict]) -> None:
    """One run's events: exactly the expected ones, each walker keeping one track id."""
    assert Counter((e["type"], e["zone"] or e["line"], e["direction"]) for e in events) == \
        EXPECTED, events
    by_walker: dict[str, list[dict]] = {}
    for event in events:
        jsonschema.validate(event, EVENTS, format_checker=CHECK)
        by_walker.setdefault(who(event), []).append(event)
    order = {name: [(e["type"], e["direction"])
                    for e in sorted(found, key=lambda e: e["timestamp"])]
             for name, found in by_walker.items()}
    assert order == {
        "A": [("cross", "in"), ("cross", "out"), ("cross", "in")],
        "C": [("cross", "out")],
        "B": [("enter", None), ("dwell", None), ("exit", None)],
    }
    ids = {name: {e["track_id"] for e in found} for name, found in by_walker.items()}
    assert all(len(track) == 1 for track in ids.values()), f"an id changed: {ids}"
    assert len(set.union(*ids.values())) == 3, f"two walkers share an id: {ids}"
    dwell = next(e for e in by_walker["B"] if e["type"] == "dwell")
    assert dwell["dwell_s"] >= 2.0


@dataclass
class Runs:
    """What the two agent runs left: every message seen, run 1's spooled event ids."""

    collector: Collector
    run1_ids: list[str]
    kept_after_run1: list[str]
    run2_started: float
    log: Path

    def events(self) -> list[dict]:
        return self.collector.json_on("/yard/events")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Both runs, once for this module's tests (about 30 s)."""
    tmp_path = tmp_path_factory.mktemp("events")
    broker = Broker(port=free_port(), conf=tmp_path / "mosquitto.conf",
                    log=tmp_path / "mosquitto.log")
    persist_sessions(broker, tmp_path)  # starts it, keeping sessions across its restart
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    clip = make_clip(SAMPLES, tmp_path / "yard.mp4")
    config = write_config(tmp_path, SAMPLES, broker, prefix, CAMERA.format(clip=clip))
    config.write_text(config.read_text() + "health: {interval_s: 1, metrics_address: ''}\n")
    state, log = tmp_path / "state", tmp_path / "agent.log"
    collector = persistent_subscriber(broker, f"{prefix}/#")
    try:
        run1_ids, kept = run_until_spooled_then_kill(config, state, log, broker, collector)
        # Run 2: the snapshot folder cannot be written (a file stands in its place).
        snapshots = state / "snapshots" / "yard"
        for leftover in snapshots.iterdir():
            leftover.unlink()
        snapshots.rmdir()
        snapshots.write_text("not a folder")
        broker.start()
        run2_started = time.time()
        agent = start_agent(config, log)
        try:
            assert agent.wait(timeout=90) == 0, log.read_text()  # the clip ends: exit 0
            collector.wait_for("/yard/events", count=2 * PER_RUN, timeout=30)
            time.sleep(1.0)  # a duplicate would arrive now
        finally:
            if agent.poll() is None:
                agent.kill()
        yield Runs(collector, run1_ids, kept, run2_started, log)
    finally:
        collector.client.loop_stop()
        collector.client.disconnect()
        broker.stop()


def run_until_spooled_then_kill(
    config: Path, state: Path, log: Path, broker: Broker, collector: Collector
) -> tuple[list[str], list[str]]:
    """Run 1: the broker goes before the first event; kill -9 once all events are spooled.
    Returns the spooled event ids and the snapshot files left."""
    agent = start_agent(config, log)
    try:
        collector.wait_for("/yard/detections", timeout=60)  # the first frame is out
        broker.stop()
        wait_until(lambda: len(spooled_events(state)) >= PER_RUN or agent.poll() is not None,
                   timeout=40)
        run1_ids = spooled_events(state)
        agent.kill()
        agent.wait(timeout=10)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert len(run1_ids) == PER_RUN, log.read_text()
    return run1_ids, sorted(p.name for p in (state / "snapshots" / "yard").iterdir())


@pytest.mark.slow
def test_every_event_arrives_exactly_once(runs: Runs) -> None:
    ids = [e["event_id"] for e in runs.events()]
    assert len(ids) == len(set(ids)) == 2 * PER_RUN, Counter(ids).most_common(3)
    assert ids[:PER_RUN] == runs.run1_ids  # the spool's, first and in order


@pytest.mark.slow
def test_each_run_makes_exactly_the_expected_events(runs: Runs) -> None:
    events = runs.events()
    check_run(events[:PER_RUN])
    check_run(events[PER_RUN:])


@pytest.mark.slow
def test_snapshots_are_kept_bounded_and_a_full_disk_costs_only_the_file(runs: Runs) -> None:
    assert len(runs.kept_after_run1) == KEEP  # 14 written (frame + crop per event)
    events = runs.events()
    for event in events[:PER_RUN]:
        assert event["snapshot"]["error"] is None
        assert event["snapshot"]["file"].startswith("yard/")
        assert event["snapshot"]["crop_file"].endswith("-crop.jpg")
        assert event["snapshot"]["topic"] == "yard/snapshot/person"
    newest = sorted(name for e in events[:PER_RUN] for name in
                    (e["snapshot"]["file"], e["snapshot"]["crop_file"]))[-KEEP:]
    assert [f"yard/{name}" for name in runs.kept_after_run1] == newest
    for event in events[PER_RUN:]:  # run 2: no files; the events went out and say why
        snapshot = event["snapshot"]
        assert snapshot["file"] is None
        assert snapshot["crop_file"] is None
        assert "cannot write snapshot" in snapshot["error"]
    jpeg = runs.collector.on_topic("/yard/snapshot/person")[-1].payload
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[1] == 320


@pytest.mark.slow
def test_retained_counts_and_occupancy_agree_with_the_events(runs: Runs) -> None:
    counts = [json.loads(m.payload) for m in runs.collector.on_topic("/yard/lines/gate/counts")]
    for body in counts:
        jsonschema.validate(body, COUNTS, format_checker=CHECK)
    final = counts[-1]
    assert final["counts"] == {"in": {"person": 2}, "out": {"person": 2}}
    assert datetime.fromisoformat(final["since"]).timestamp() >= runs.run2_started - 1
    run2 = runs.events()[PER_RUN:]
    assert all(e["timestamp"] >= final["since"] for e in run2)
    occupancy = [json.loads(m.payload)
                 for m in runs.collector.on_topic("/yard/zones/bay/occupancy")]
    for body in occupancy:
        jsonschema.validate(body, OCCUPANCY, format_checker=CHECK)
    assert [b["total"] for b in occupancy if b["timestamp"] >= final["since"]] == [0, 1, 0]


@pytest.mark.slow
def test_detections_on_change_carry_track_ids(runs: Runs) -> None:
    detections = runs.collector.json_on("/yard/detections")
    assert 2 < len(detections) < FRAMES  # both runs together: far fewer than frames
    for body in detections:
        jsonschema.validate(body, DETECTIONS, format_checker=CHECK)
        assert all("track_id" in item for item in body["detections"])


@pytest.mark.slow
def test_health_counts_the_events(runs: Runs) -> None:
    last = validated_health(runs.collector.on_topic("/box1/health")[-1].payload)
    yard = next(c for c in last["cameras"] if c["id"] == "yard")
    assert yard["events"]["events_total"] == PER_RUN
    assert yard["events"]["snapshots_failed"] == 2 * PER_RUN
