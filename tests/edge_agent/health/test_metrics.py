"""/metrics and /healthz of the real agent process, scraped over HTTP while it runs."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config.model import HealthConfig
from tests.helpers import (
    REPO,
    Broker,
    free_port,
    start_agent,
    stop_agent,
    wait_for_port,
    write_config,
)

DASHBOARD = REPO / "docs" / "grafana" / "edge-agent.json"


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """Sample name -> {sorted labels: value}, through Prometheus' own text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name, {})
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"not reached in {timeout}s")


def agent_with_metrics(tmp_path: Path, samples: Path, broker: Broker, prefix: str,
                       cameras: str) -> tuple[Path, int]:
    port = free_port()
    config = write_config(tmp_path, samples, broker, prefix, cameras)
    config.write_text(
        config.read_text() + f"health:\n  interval_s: 1\n  metrics_address: 127.0.0.1:{port}\n"
    )
    return config, port


def test_metrics_parse_move_and_cover_the_dashboard(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    video = samples / "media" / "vtest.mp4"
    cameras = f"  - id: street\n    type: file\n    path: {video}\n    loop: true\n"
    config, port = agent_with_metrics(tmp_path, samples, broker, unique_prefix, cameras)
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_for_port(port, timeout=60)
        captured = "edge_agent_camera_frames_captured_total"
        key = (("camera", "street"),)
        first = wait_until(lambda: (s := scrape(port)).get(captured, {}).get(key) and s)
        time.sleep(2.5)
        second = scrape(port)
        status, body = healthz(port)
    finally:
        stop_agent(agent, log)
    assert second[captured][key] > first[captured][key]
    processed = "edge_agent_camera_frames_processed_total"
    assert second[processed][key] > first[processed][key]
    assert second["edge_agent_uptime_seconds"][()] > first["edge_agent_uptime_seconds"][()]
    assert second["edge_agent_camera_state"][(("camera", "street"), ("state", "RUNNING"))] == 1
    assert second["edge_agent_camera_processed_fps"][key] > 0
    assert second["edge_agent_camera_inference_seconds"][
        (("camera", "street"), ("quantile", "0.95"))] > 0
    assert second["edge_agent_mqtt_connected"][()] == 1
    assert second["edge_agent_process_resident_memory_bytes"][()] > 50_000_000
    (info_labels,) = second["edge_agent_info"]
    assert ("backend", "openvino") in info_labels
    assert status == 200
    assert body["status"] in ("ok", "degraded")

    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    named = {name for expr in expressions for name in re.findall(r"\bedge_agent_\w+", expr)}
    assert len(named) >= 20
    missing = sorted(named - set(second))
    assert not missing, f"the dashboard reads metrics the agent does not export: {missing}"


def test_healthz_is_503_when_no_camera_delivers(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    cameras = f"  - id: yard\n    type: file\n    path: {tmp_path / 'missing.mp4'}\n"
    config, port = agent_with_metrics(tmp_path, samples, broker, unique_prefix, cameras)
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_for_port(port, timeout=60)
        status, body = wait_until(lambda: (r := healthz(port))[1]["status"] == "failed" and r)
        metrics = scrape(port)
    finally:
        stop_agent(agent, log)
    assert status == 503
    assert "no camera is delivering frames" in body["reasons"]
    assert any(r.startswith("camera yard BACKOFF") for r in body["reasons"])
    assert metrics["edge_agent_health_status"][()] == 2
    assert metrics["edge_agent_camera_reconnects_total"][(("camera", "yard"),)] >= 1


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:99999", ":9108", "host:port"])
def test_bad_metrics_address_is_a_clear_config_error(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        HealthConfig(metrics_address=address)


def agent_threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_idle_and_half_sent_clients_cannot_knock_metrics_over(
    tmp_path: Path, samples: Path, broker: Broker, unique_prefix: str
) -> None:
    """The issue's example, on the real agent: 600 idle sockets made 616 threads, and a
    half-sent request printed a 21-line traceback per connection."""
    video = samples / "media" / "vtest.mp4"
    cameras = f"  - id: street\n    type: file\n    path: {video}\n    loop: true\n"
    config, port = agent_with_metrics(tmp_path, samples, broker, unique_prefix, cameras)
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    idle: list[socket.socket] = []
    try:
        wait_for_port(port, timeout=60)
        wait_until(lambda: scrape(port).get("edge_agent_uptime_seconds"))
        before = agent_threads(agent.pid)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(600)]
        for sock in idle[:20]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        time.sleep(1.0)
        during = agent_threads(agent.pid)
        assert scrape(port)["edge_agent_uptime_seconds"][()] > 0  # still answers
        for sock in idle:
            sock.settimeout(30)
            assert sock.recv(1) == b""  # every one closed by the server
    finally:
        for sock in idle:
            sock.close()
        stop_agent(agent, log)
    assert during <= before + 16 + 2, (before, during)
    text = log.read_text()
    assert "Traceback" not in text
    closed = [line for line in text.splitlines() if "closed a connection from" in line]
    assert 1 <= len(closed) <= 2, closed
