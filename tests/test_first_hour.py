"""A new user's first hour: the README's "on a box" commands, from a clean install.

The tracked files are copied out of the checkout and installed into a fresh venv (its
dependencies are taken from this checkout's .venv, never downloaded). Then, from a folder
outside the repository and with a bare environment, the README's commands run in order:
`models fetch` (from the sample mirror: no internet in tests), `check-config` on the
reference config, and `run`, which must reach a running agent on the test broker.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, Broker, free_port


def readme_box_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Use it on a box"):]
    block = section[section.index("```sh\n") + 6:section.index("```\n", section.index("```sh"))]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def install_clean(tmp_path: Path) -> Path:
    """A fresh venv with this repository's tracked files installed; returns its bin/."""
    source = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
        capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # numpy, openvino..
    built = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if built.returncode != 0:
        # The build backend here cannot build a wheel offline (setuptools without
        # bdist_wheel). Install what `pip install .` would: the packages of the tracked
        # files and the [project.scripts] entry point.
        assert "bdist_wheel" in built.stderr or "setuptools" in built.stderr, built.stderr
        (site / "edge_agent_source.pth").write_text(f"{source}\n")
        entry = re.search(r'edge-agent = "([\w.]+):(\w+)"', (source / "pyproject.toml")
                          .read_text())
        assert entry is not None
        script = venv / "bin" / "edge-agent"
        script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\n"
                          f"from {entry[1]} import {entry[2]}\nsys.exit({entry[2]}())\n")
        script.chmod(0o755)
    return venv / "bin"


@pytest.mark.slow
def test_readme_box_commands_reach_a_running_agent(
    tmp_path: Path, samples: Path, broker: Broker, subscribe, unique_prefix: str
) -> None:
    commands = readme_box_commands()
    assert commands[0] == "pip install ."
    fetch = next(c for c in commands if c.startswith("edge-agent models fetch"))
    assert "yolox-nano" in fetch
    assert "edge-agent check-config configs/agent.yaml" in commands
    assert "edge-agent run --config configs/agent.yaml" in commands

    bin_dir = install_clean(tmp_path)
    box = tmp_path / "box"  # the root of a pretend box: /var/lib/edge-agent is under it
    home = tmp_path / "home"
    for folder in (box, home):
        folder.mkdir()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}

    def edge_agent(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bin_dir / "edge-agent"), *args], capture_output=True,
                              text=True, timeout=300, cwd=home, env=env, check=False)

    state = box / "var/lib/edge-agent"
    fetched = edge_agent(*fetch.split()[1:], "--dir", str(state / "models"),
                         "--mirror", str(samples))
    assert fetched.returncode == 0, fetched.stderr
    assert f"path: {state / 'models/yolox_nano.onnx'}" in fetched.stdout

    # configs/agent.yaml as the user has it, pointed at this pretend box and test broker.
    metrics = free_port()
    config = home / "agent.yaml"
    config.write_text(
        (tmp_path / "src/configs/agent.yaml").read_text()
        .replace("/var/lib/edge-agent", str(state))
        .replace("  port: 1883\n", f"  port: {broker.port}\n")
        .replace("topic_prefix: edge-agent", f"topic_prefix: {unique_prefix}")
        .replace("metrics_address: 127.0.0.1:9108", f"metrics_address: 127.0.0.1:{metrics}")
    )
    checked = edge_agent("check-config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "warning" not in checked.stdout, checked.stdout  # the model is where it says

    collector = subscribe(f"{unique_prefix}/#")
    log = tmp_path / "agent.log"
    with log.open("w") as sink:
        agent = subprocess.Popen([str(bin_dir / "edge-agent"), "run", "--config", str(config)],
                                 stdout=sink, stderr=subprocess.STDOUT, cwd=home, env=env)
    try:
        base = f"{unique_prefix}/line3-dock-east"
        online = collector.wait_for(f"{base}/status", timeout=120)
        info = collector.wait_for(f"{base}/info", timeout=60)
        time.sleep(1.0)
        assert agent.poll() is None, log.read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=60)
    assert online[0].payload == b"online"
    assert b'"yolox_nano"' in info[0].payload
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text
    assert not re.search(r"\b(192\.168|10\.\d+\.\d+\.\d+|192\.0\.2)\.", text), text


def test_shipped_configs_dial_only_loopback() -> None:
    """doctor/run on a shipped config must never reach into someone's LAN: every enabled
    network camera and the broker are on 127.0.0.1 (the kind behind the issue's example)."""
    from edge_agent.config.loader import load_config
    from edge_agent.config.model import RtspCamera

    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.mqtt.host in ("127.0.0.1", "localhost", "::1"), path
        for camera in config.cameras:
            if camera.enabled and isinstance(camera, RtspCamera):
                host = camera.url.split("@")[-1].split("//")[-1].split("/")[0].split(":")[0]
                assert host in ("127.0.0.1", "localhost"), (path, camera.id, camera.url)
        assert config.model.classes is None or path.name != "agent.yaml", (
            "the reference config must not ship an active class filter")
