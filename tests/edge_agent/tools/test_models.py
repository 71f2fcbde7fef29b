"""`edge-agent models fetch`: the sample model from a mirror or its source, sha256-checked.

Never the internet: the public source is stood in for by a server on 127.0.0.1, and
"offline" by a port nothing listens on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_agent.tools import catalog, models
from tests.helpers import REPO, free_port


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args], capture_output=True, text=True,
        timeout=120, cwd=cwd, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_fetch_from_a_mirror_prints_the_config_lines(samples: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    done = cli("models", "fetch", "yolox-nano", "--dir", str(folder), "--mirror", str(samples),
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("yolox_nano.onnx", "coco_labels.txt"):
        assert sha256(folder / name) == sha256(samples / "models" / name)
        assert f"{folder / name}: copied from" in done.stdout
    block = done.stdout[done.stdout.index("model:\n"):]
    assert yaml.safe_load(block) == {"model": {
        "path": str(folder / "yolox_nano.onnx"), "labels": str(folder / "coco_labels.txt"),
        "family": "yolox"}}
    again = cli("models", "fetch", "yolox-nano", "--dir", str(folder), "--mirror",
                str(samples), cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.count("already there (sha256 checked)") == 2


def test_a_wrong_file_in_the_mirror_is_refused(samples: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "yolox_nano.onnx").write_bytes(b"not a model")
    (mirror / "models" / "coco_labels.txt").write_bytes(
        (samples / "models" / "coco_labels.txt").read_bytes())
    folder = tmp_path / "models"
    done = cli("models", "fetch", "yolox-nano", "--dir", str(folder), "--mirror", str(mirror),
               cwd=tmp_path)
    assert done.returncode == 1
    assert "models/yolox_nano.onnx: wrong sha256" in done.stderr
    assert catalog.BY_PATH["models/yolox_nano.onnx"].sha256 in done.stderr
    assert hashlib.sha256(b"not a model").hexdigest() in done.stderr
    assert not (folder / "yolox_nano.onnx").exists()
    assert not list(folder.glob(".*partial"))


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The public source, served from a folder on 127.0.0.1; returns the folder."""
    root = tmp_path / "web"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    point_sources_at(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}")
    yield root
    server.shutdown()
    server.server_close()


def point_sources_at(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    entry = catalog.MODELS["yolox-nano"]
    moved = dataclasses.replace(
        entry,
        model=dataclasses.replace(entry.model, url=f"{base}/yolox_nano.onnx"),
        labels=dataclasses.replace(entry.labels, url=f"{base}/coco_labels.txt"),
    )
    monkeypatch.setitem(models.MODELS, "yolox-nano", moved)


def test_fetch_downloads_from_the_source_and_checks_it(
    source: Path, samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("yolox_nano.onnx", "coco_labels.txt"):
        (source / name).write_bytes((samples / "models" / name).read_bytes())
    folder = tmp_path / "models"
    args = models_args("--dir", str(folder))
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "downloaded from http://127.0.0.1:" in out
    assert sha256(folder / "yolox_nano.onnx") == catalog.BY_PATH["models/yolox_nano.onnx"].sha256

    (source / "coco_labels.txt").write_text("person\n")  # the source changed under us
    (folder / "coco_labels.txt").unlink()
    assert args.handler(args) == 1
    assert "models/coco_labels.txt: wrong sha256" in capsys.readouterr().err
    assert not (folder / "coco_labels.txt").exists()


def test_offline_says_so_and_how_to_use_a_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_sources_at(monkeypatch, f"http://127.0.0.1:{free_port()}")  # nothing listens
    args = models_args("--dir", str(tmp_path / "models"))
    assert args.handler(args) == 1
    error = capsys.readouterr().err
    assert error.startswith("edge-agent models: could not reach the public source of "
                            "yolox-nano:")
    assert "connection refused" in error.lower()
    assert "Is this box offline?" in error
    assert "edge-agent models fetch yolox-nano --mirror DIR" in error
    assert not list((tmp_path / "models").iterdir())


def test_a_folder_it_cannot_write_says_what_to_do(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.getuid() == 0:
        pytest.skip("root writes anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    args = models_args("--dir", str(locked / "models"), "--mirror", str(samples))
    assert args.handler(args) == 1
    assert "pass --dir a folder you can write" in capsys.readouterr().err


def models_args(*extra: str):
    from edge_agent.cli import build_parser
    return build_parser().parse_args(["models", "fetch", "yolox-nano", *extra])


def test_one_catalogue_for_fetch_samples_and_models_fetch() -> None:
    loader = importlib.machinery.SourceFileLoader(
        "fetch_samples_catalogue", str(REPO / "scripts" / "fetch-samples"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    assert module.SAMPLES is catalog.SAMPLES
    entry = catalog.MODELS["yolox-nano"]
    assert entry.model in catalog.SAMPLES
    assert entry.labels in catalog.SAMPLES


def test_the_reference_config_names_the_model_models_fetch_puts_there() -> None:
    """A new user's first run: the fetched files are exactly what configs/agent.yaml reads."""
    text = (REPO / "configs" / "agent.yaml").read_text()
    model = yaml.safe_load(text)["model"]
    entry = catalog.MODELS["yolox-nano"]
    assert Path(model["path"]) == models.DEFAULT_DIR / Path(entry.model.path).name
    assert Path(model["labels"]) == models.DEFAULT_DIR / Path(entry.labels.path).name
    assert model["family"] == entry.family
    assert "edge-agent models fetch yolox-nano" in text
    assert "classes" not in model, "the reference config must not filter classes"
