"""`edge-agent models`: get a detector a new box can run, checked by sha256.

`models list` shows what can be fetched; `models fetch yolox-nano` puts the sample
YOLOX-nano ONNX and its labels into a folder (default /var/lib/edge-agent/models, the
path configs/agent.yaml names), from a local mirror (--mirror, for offline boxes) or
its public source, and prints the lines to put in the config. The list is the one
scripts/fetch-samples uses (edge_agent.tools.catalog).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.tools.catalog import (
    MODELS,
    FetchError,
    Model,
    Sample,
    SourceUnreachableError,
    copy_checked,
    download,
    sha256_of,
)

DEFAULT_DIR = Path("/var/lib/edge-agent/models")


def fetch_model(model: Model, folder: Path, mirror: Path | None) -> list[str]:
    """Put the model's files into `folder`; returns one line per file saying what was done."""
    return [_fetch_file(sample, folder, mirror) for sample in (model.model, model.labels)]


def _fetch_file(sample: Sample, folder: Path, mirror: Path | None) -> str:
    target = folder / Path(sample.path).name
    if target.is_file() and sha256_of(target) == sample.sha256:
        return f"{target}: already there (sha256 checked)"
    if mirror is not None:
        for candidate in (mirror / sample.path, mirror / Path(sample.path).name):
            if candidate.is_file():
                copy_checked(candidate, target, sample)
                return f"{target}: copied from {candidate} (sha256 checked)"
        raise FetchError(
            f"{sample.path}: not in the mirror {mirror} (looked for {mirror / sample.path} "
            f"and {mirror / Path(sample.path).name})"
        )
    download(sample.url, target, sample.path, sample.sha256)
    return f"{target}: downloaded from {sample.url} (sha256 checked)"


def fetch_hint(missing: Path) -> str | None:
    """The `edge-agent models fetch` command that puts a missing model or labels file at
    this path, when its name is one of the catalog's; None otherwise."""
    for model in MODELS.values():
        if missing.name in (Path(model.model.path).name, Path(model.labels.path).name):
            folder = "" if missing.parent == DEFAULT_DIR else f" --dir {missing.parent}"
            return f"edge-agent models fetch {model.name}{folder}"
    return None


def config_lines(model: Model, folder: Path) -> str:
    return (
        "model:\n"
        f"  path: {folder / Path(model.model.path).name}\n"
        f"  labels: {folder / Path(model.labels.path).name}\n"
        f"  family: {model.family}\n"
    )


def _fetch(args: argparse.Namespace) -> int:
    model = MODELS[args.name]
    folder: Path = args.dir.absolute()
    mirror: Path | None = args.mirror
    if mirror is not None and not mirror.is_dir():
        print(f"edge-agent models: --mirror {mirror}: no such folder", file=sys.stderr)
        return 2
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lines = fetch_model(model, folder, mirror)
    except SourceUnreachableError as exc:
        print(
            f"edge-agent models: could not reach the public source of {model.name}:\n"
            f"  {exc}\n"
            "  Is this box offline? Copy the files from a machine that has them (its\n"
            f"  scripts/fetch-samples puts them in samples/): {model.model.path} and "
            f"{model.labels.path},\n"
            f"  then: edge-agent models fetch {model.name} --mirror DIR   (DIR holds models/)",
            file=sys.stderr,
        )
        return 1
    except PermissionError as exc:
        print(
            f"edge-agent models: cannot write to {folder}: {exc.strerror}\n"
            "  run it with sudo, or pass --dir a folder you can write (and put that path in "
            "the config)",
            file=sys.stderr,
        )
        return 1
    except (FetchError, OSError) as exc:
        print(f"edge-agent models: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    print(f"\n{model.name} is ready. In the agent's config (e.g. /etc/edge-agent/agent.yaml):\n")
    print(config_lines(model, folder))
    return 0


def _list(_args: argparse.Namespace) -> int:
    for name, model in MODELS.items():
        print(f"{name:<12} {model.about}")
    print("\nYour own model: export it to ONNX or OpenVINO IR (README.md, 'Your own model').")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "models", help="fetch a sample detector (sha256-checked) and print its config lines"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="models that can be fetched")
    listing.set_defaults(handler=_list)
    fetch = actions.add_parser("fetch", help="download (or copy from --mirror) a model")
    fetch.add_argument("name", choices=sorted(MODELS), help="model to fetch")
    fetch.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                       help=f"folder to put the files in (default: {DEFAULT_DIR})")
    fetch.add_argument("--mirror", type=Path,
                       help="local folder with the files (models/NAME or NAME): no network")
    fetch.set_defaults(handler=_fetch)
