"""`edge-agent bench`: every camera of a config, the --cameras section, --broker config.

The figures are the benchmark's business (a command, not a timed test); here the
choices (cameras, counts, sections, broker) and one short real run against the test's
own Mosquitto, dialled through the config as a user's broker would be.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config.model import AgentConfig
from edge_agent.errors import AgentError
from edge_agent.tools.bench_cameras import parse_counts
from edge_agent.tools.bench_loop import bench_broker, bench_cameras, replicated
from edge_agent.tools.bench_sections import SECTIONS, add_section_arguments, chosen
from tests.helpers import REPO, Broker, free_port


def config(samples: Path, cameras: list[dict]) -> AgentConfig:
    return AgentConfig(device_id="box1", model={"path": samples / "models" / "yolox_nano.onnx"},
                       cameras=cameras, backend={"type": "openvino"},
                       mqtt={"host": "127.0.0.1", "port": 1884, "username": "u",
                             "password": "p", "client_id": "mine"})


@pytest.mark.parametrize(("value", "counts"), [
    ("1,2,4", [1, 2, 4]), ("3", [3]), ("1, 8", [1, 8]), ("0", None), ("1,x", None),
    ("65", None), ("", None),
])
def test_camera_counts(value: str, counts: list[int] | None) -> None:
    if counts is None:
        with pytest.raises(AgentError, match="--cameras"):
            parse_counts(value)
    else:
        assert parse_counts(value) == counts


@pytest.mark.parametrize(("argv", "expected"), [
    ([], {}),
    (["--cameras"], {"cameras": "1,2,4"}),
    (["--cameras", "2,3"], {"cameras": "2,3"}),
    (["--all"], {section.name: section.value or True for section in SECTIONS}),
    (["--all", "--cameras", "8"], {**{s.name: s.value or True for s in SECTIONS},
                                   "cameras": "8"}),
])
def test_sections_run_by_flag_or_all(argv: list[str], expected: dict) -> None:
    parser = argparse.ArgumentParser()
    add_section_arguments(parser)
    picked = chosen(parser.parse_args(argv))
    assert {section.name: value for section, value in picked} == expected
    for section, _ in picked:  # each names functions that exist
        assert callable(section.function("run"))
        assert callable(section.function("format"))


def test_every_enabled_camera_is_benched_files_at_full_speed(samples: Path) -> None:
    video = samples / "media" / "vtest.mp4"
    cameras = [{"id": "a", "type": "file", "path": video},
               {"id": "b", "type": "file", "path": video, "enabled": False},
               {"id": "c", "type": "rtsp", "url": "rtsp://127.0.0.1:8554/x"}]
    chosen_cameras = bench_cameras(config(samples, cameras), None)
    assert [cam.id for cam in chosen_cameras] == ["a", "c"]
    assert (chosen_cameras[0].loop, chosen_cameras[0].realtime) == (True, False)
    assert chosen_cameras[1] == config(samples, cameras).cameras[2]  # live: as configured
    [only] = bench_cameras(config(samples, cameras), video)
    assert (only.id, only.path) == ("bench", video)
    assert [cam.id for cam in replicated(video, 3)] == ["cam1", "cam2", "cam3"]


def test_config_broker_is_the_users_under_a_bench_identity(
    samples: Path, broker: Broker
) -> None:
    cameras = [{"id": "a", "type": "file", "path": samples / "media" / "vtest.mp4"}]
    unreachable = config(samples, cameras).model_copy(
        update={"mqtt": config(samples, cameras).mqtt.model_copy(update={"port": free_port()})})
    with pytest.raises(AgentError, match=r"cannot reach the config's broker 127\.0\.0\.1:"), \
            bench_broker(unreachable, "config"):
        pass
    cfg = unreachable.model_copy(
        update={"mqtt": unreachable.mqtt.model_copy(update={"port": broker.port})})
    with bench_broker(cfg, "config") as (mqtt, device_id):
        assert (mqtt.host, mqtt.port, mqtt.username, mqtt.password) == (
            "127.0.0.1", broker.port, "u", "p")
        assert device_id == "box1-bench"
        assert mqtt.client_id == "edge-agent-box1-bench"  # never kicks the running agent off
    with pytest.raises(AgentError, match="--broker"), bench_broker(cfg, "elsewhere"):
        pass


@pytest.mark.slow
def test_bench_measures_every_camera_counts_and_stages_on_the_users_broker(
    samples: Path, tmp_path: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    video = samples / "media" / "vtest.mp4"
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"device_id: box1\nstate_dir: {tmp_path / 'state'}\n"
        f"model:\n  path: {samples / 'models' / 'yolox_nano.onnx'}\n"
        f"backend:\n  type: openvino\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  topic_prefix: {unique_prefix}\n"
        f"cameras:\n  - id: left\n    type: file\n    path: {video}\n"
        f"  - id: right\n    type: file\n    path: {video}\n")
    collector = subscribe(f"{unique_prefix}/#")
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "bench", "--config", str(path), "--broker",
         "config", "--seconds", "1.5", "--cameras", "2", "--stages", "--json"],  # 0.5 s
        # windows held no frame of one camera on a box loaded 4-8 deep (a fresh-user run)
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert set(report["cameras"]) == {"left", "right"}
    assert all(cam["frames"] > 0 and cam["p95_ms"] > 0 for cam in report["cameras"].values())
    assert report["loop_frames"] == sum(cam["frames"] for cam in report["cameras"].values())
    modes = report["sections"]["cameras"]["modes"]
    for mode in ("shared", "batched"):
        runs = modes[mode]["runs"]
        assert set(runs) == {"2"}
        assert set(runs["2"]["cameras"]) == {"cam1", "cam2"}
        assert all(run["fps"] > 0 and run["p95_ms"] > 0 for run in runs.values())
    assert modes["batched"]["runs"]["2"]["mean_batch"] >= 1
    stages = report["sections"]["stages"]
    assert set(stages["stage_cpu_ms"]) == {"decode", "letterbox", "postprocess", "json",
                                           "spool_write", "publish_path"}
    assert all(ms > 0 for ms in stages["stage_cpu_ms"].values())
    assert 0 < stages["host_share_at_bound"] < 1
    flat_out, at_bound, at_half = stages["engine_cpu_ms"]
    assert all(run["cpu_ms"] > 0 for run in (flat_out, at_bound, at_half))
    assert at_half["fps"] < flat_out["fps"]  # paced runs did not run flat out
    # The user's broker got the frames, under the bench's own device id.
    assert collector.wait_for("/box1-bench/left/detections", count=5)
    assert not collector.on_topic("/box1/left/detections")
