"""The entry-point scripts: fetch-samples checks what it copies, the shell ones hold together."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
FETCH = REPO / "scripts" / "fetch-samples"
SHELL_SCRIPTS = ["scripts/setup", "scripts/test", "scripts/demo", ".ci/run"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_fetch(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_SAMPLES_MIRROR"}
    return subprocess.run(
        [sys.executable, str(FETCH), *args], capture_output=True, text=True, env=env, check=False
    )


def load_fetch(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("fetch_samples", str(FETCH))
    spec = importlib.util.spec_from_loader("fetch_samples", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fetch_samples", module)  # dataclasses look it up
    loader.exec_module(module)
    return module


@pytest.fixture
def fetch_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/fetch-samples imported, to point its public sources at a local server."""
    module = load_fetch(monkeypatch)
    monkeypatch.setattr(module, "SHARED_MIRROR", Path("/nonexistent"))
    monkeypatch.setattr(module, "cloned_from", lambda: None)
    monkeypatch.setattr(module, "VTEST_AVI_LOCAL", Path("/nonexistent/vtest.avi"))
    monkeypatch.delenv("EDGE_AGENT_SAMPLES_MIRROR", raising=False)
    return module


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A plain HTTP server on 127.0.0.1 serving a folder: the 'public source'."""
    root = tmp_path / "web"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_clone_finds_the_mirror_beside_the_checkout_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git clone -q . $(mktemp -d)` then .ci/run: the clone has no ../shared/samples, the
    checkout it was cloned from may; without one (or with a remote URL) there is none."""
    origin = tmp_path / "work" / "checkout"
    origin.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    clone = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True,
                   capture_output=True)
    fetch_module = load_fetch(monkeypatch)
    monkeypatch.delenv("EDGE_AGENT_SAMPLES_MIRROR", raising=False)
    monkeypatch.setattr(fetch_module, "REPO", clone)
    monkeypatch.setattr(fetch_module, "SHARED_MIRROR", clone.parent / "shared" / "samples")
    assert fetch_module.cloned_from() == origin
    assert fetch_module.choose_mirror(None) is None  # no shared/samples beside it
    (tmp_path / "work" / "shared" / "samples").mkdir(parents=True)
    assert fetch_module.choose_mirror(None) == tmp_path / "work" / "shared" / "samples"
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin",
                    "https://example.invalid/edge-agent.git"], check=True)
    assert fetch_module.cloned_from() is None


def test_fetch_from_a_mirror_copies_once(samples: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    first = run_fetch("--mirror", str(samples), "--dest", str(dest))
    assert first.returncode == 0, first.stderr
    assert "(12 fetched)" in first.stdout
    for name in ["models/yolox_nano.onnx", "media/vtest.mp4", "images/pets.jpg"]:
        assert sha256(dest / name) == sha256(samples / name)
    before = {path: path.stat().st_mtime_ns for path in dest.rglob("*") if path.is_file()}
    assert len(before) == 12

    second = run_fetch("--mirror", str(samples), "--dest", str(dest))
    assert second.returncode == 0, second.stderr
    assert "(0 fetched)" in second.stdout
    assert "copied" not in second.stdout
    assert {path: path.stat().st_mtime_ns for path in dest.rglob("*") if path.is_file()} == before


def test_fetch_rejects_a_corrupted_mirror_file(samples: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    for source in samples.rglob("*"):
        if source.is_file():
            (mirror / source.relative_to(samples)).parent.mkdir(parents=True, exist_ok=True)
            (mirror / source.relative_to(samples)).symlink_to(source)
    labels = mirror / "models" / "coco_labels.txt"
    good = sha256(labels)
    labels.unlink()
    labels.write_bytes((samples / "models" / "coco_labels.txt").read_bytes() + b"extra\n")
    dest = tmp_path / "dest"

    result = run_fetch("--mirror", str(mirror), "--dest", str(dest))

    assert result.returncode != 0
    assert "models/coco_labels.txt" in result.stderr
    assert good in result.stderr
    assert sha256(labels) in result.stderr
    assert not (dest / "models" / "coco_labels.txt").exists()
    assert (dest / "models" / "yolox_nano.onnx").is_file(), "the good files are still fetched"
    assert not [p for p in dest.rglob("*") if p.name.endswith(".partial")]


def test_fetch_downloads_what_no_mirror_has(
    fetch_module: ModuleType,
    web: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, url = web
    (root / "labels.txt").write_text("person\nbicycle\n")
    (root / "bad.txt").write_text("not what was published\n")
    sample = fetch_module.Sample
    fetch_module.SAMPLES = [
        sample("models/coco_labels.txt", sha256(root / "labels.txt"), f"{url}/labels.txt"),
    ]
    dest = tmp_path / "dest"
    assert fetch_module.main(["--dest", str(dest)]) == 0
    assert (dest / "models" / "coco_labels.txt").read_text() == "person\nbicycle\n"
    assert f"downloaded from {url}/labels.txt" in capsys.readouterr().out

    fetch_module.SAMPLES = [sample("images/pets.jpg", "0" * 64, f"{url}/bad.txt")]
    assert fetch_module.main(["--dest", str(dest)]) == 1
    error = capsys.readouterr().err
    assert "images/pets.jpg" in error
    assert "0" * 64 in error
    assert sha256(root / "bad.txt") in error
    assert not (dest / "images" / "pets.jpg").exists()

    fetch_module.SAMPLES = [sample("images/cat.jpg", "0" * 64, f"{url}/missing.jpg")]
    assert fetch_module.main(["--dest", str(dest)]) == 1
    assert "images/cat.jpg: cannot download" in capsys.readouterr().err


def test_vtest_is_re_encoded_from_a_checked_avi_and_kept(
    fetch_module: ModuleType,
    web: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another ffmpeg gives other bytes: the result is recorded and accepted next time."""
    root, url = web
    avi = root / "vtest.avi"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
         "-frames:v", "5", "-c:v", "mpeg4", str(avi)],
        check=True,
    )  # fmt: skip
    fetch_module.VTEST_AVI_URL = f"{url}/vtest.avi"
    fetch_module.VTEST_AVI_SHA256 = sha256(avi)
    fetch_module.SAMPLES = [fetch_module.Sample(fetch_module.VTEST, "f" * 64, "")]
    dest = tmp_path / "dest"

    assert fetch_module.main(["--dest", str(dest)]) == 0
    made = dest / "media" / "vtest.mp4"
    assert made.is_file()
    assert "re-encoded from" in capsys.readouterr().out
    assert f"{sha256(made)}  media/vtest.mp4" in (dest / fetch_module.RECORD).read_text()

    assert fetch_module.main(["--dest", str(dest)]) == 0
    assert "(0 fetched)" in capsys.readouterr().out

    fetch_module.VTEST_AVI_SHA256 = "a" * 64  # a changed upstream file is not re-encoded
    made.unlink()
    assert fetch_module.main(["--dest", str(dest)]) == 1
    assert "source vtest.avi" in capsys.readouterr().err
    assert not made.exists()


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_parse_and_are_executable(script: str) -> None:
    path = REPO / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(path)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shell_scripts_pass_shellcheck() -> None:
    subprocess.run(["shellcheck", *SHELL_SCRIPTS], cwd=REPO, check=True)


def fake_repo(tmp_path: Path, scripts: dict[str, str]) -> Path:
    """A copy of some scripts beside stand-ins for what they call, to watch them work."""
    root = tmp_path / "repo"
    for name, body in scripts.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if body == "copy":
            shutil.copy2(REPO / name, target)
        else:
            target.write_text(f"#!/usr/bin/env bash\n{body}\n")
            target.chmod(0o755)
    return root


def test_ci_run_calls_scripts_test_with_its_arguments(tmp_path: Path) -> None:
    root = fake_repo(tmp_path, {".ci/run": "copy", "scripts/test": 'echo "test called: $*"'})
    result = subprocess.run(
        [str(root / ".ci" / "run"), "-k", "x y"], cwd=tmp_path, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert result.stdout == "test called: -k x y\n"


@pytest.mark.parametrize(
    ("ruff", "pytest_status", "expected"),
    [(0, 0, 0), (0, 1, 1), (0, 5, 5), (1, 0, 1)],
    ids=["pass", "test-failure", "no-tests", "lint-failure"],
)
def test_scripts_test_lints_first_and_never_passes_on_no_tests(
    tmp_path: Path, ruff: int, pytest_status: int, expected: int
) -> None:
    root = fake_repo(
        tmp_path,
        {
            "scripts/test": "copy",
            "scripts/setup": "echo setup >> calls",
            ".venv/bin/ruff": f"echo ruff $* >> calls; exit {ruff}",
            ".venv/bin/python": f"echo python $* >> calls; exit {pytest_status}",
        },
    )
    result = subprocess.run(
        [str(root / "scripts" / "test"), "-q", "tests/x.py"], cwd=tmp_path, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert result.returncode == expected
    calls = (root / "calls").read_text().splitlines()
    assert calls[:2] == ["setup", "ruff check . scripts/fetch-samples"]
    if ruff == 0:
        assert calls[2] == "python -m pytest -n 4 -q tests/x.py"
    else:
        assert len(calls) == 2, "pytest must not run after a lint failure"
    if pytest_status == 5:
        assert "no tests" in result.stderr


def test_readme_lists_the_packages_setup_installs_and_how_to_skip_apt() -> None:
    """Set-up needs root only for apt; the README must say so, how to skip it, and what
    to install instead: the same list as scripts/setup."""
    setup = (REPO / "scripts" / "setup").read_text()
    block = setup[setup.index("APT_PACKAGES=(") + len("APT_PACKAGES=("):]
    block = block[:block.index("\n)")]
    wanted = [word for line in block.splitlines() for word in line.split("#")[0].split()]
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### What the set-up needs"):readme.index("## Run the tests")]
    assert "needs root" in section
    assert "EDGE_AGENT_SKIP_APT=1" in section
    listed = [word for line in section.splitlines() if line.startswith("#   ")
              for word in line[1:].split()]
    assert listed == wanted
    assert 'EDGE_AGENT_SKIP_APT:-0}" == 1' in setup  # the variable the README names
