"""Model files on disk: `<state_dir>/models/<sha256>/` by content hash, plus partial
downloads in `<state_dir>/models/partial/`.

A version's folder is built under a temporary name and renamed into place, so a folder
named by a hash is always complete. An OpenVINO IR (an .xml and its .bin) travels as one
.tar so that one sha256 covers both files.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

from edge_agent.models.manifest import fsync_directory

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".onnx", ".engine", ".plan")
ARCHIVE_SUFFIXES = (".tar",)


class StoreError(ValueError):
    """An artifact that cannot become a model folder; the text says why."""


def artifact_suffix(name: str) -> str:
    """The suffix that tells the format of a deployed file (its URL or path name).

    Raises StoreError for a name without one of the formats the agent loads.
    """
    lowered = name.lower().split("?", 1)[0]
    for suffix in (*SINGLE_FILE_SUFFIXES, *ARCHIVE_SUFFIXES):
        if lowered.endswith(suffix):
            return suffix
    raise StoreError(
        f"cannot tell the model format from {name!r}: the file name must end in .onnx, "
        ".engine or .plan (TensorRT), or .tar (an OpenVINO IR: one .xml and its .bin)"
    )


class ModelStore:
    """The folder of model versions; knows paths, not what runs."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "models"
        self.partial = self.root / "partial"
        self.manifest_path = self.root / "manifest.json"

    def prepare(self) -> None:
        self.partial.mkdir(parents=True, exist_ok=True)

    def folder(self, sha256: str) -> Path:
        return self.root / sha256

    def partial_file(self, sha256: str) -> Path:
        """Where a download of this hash is kept between attempts (and restarts)."""
        return self.partial / f"{sha256}.part"

    def present(self) -> set[str]:
        """Hashes whose folder exists (complete, by construction)."""
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.iterdir() if p.is_dir() and len(p.name) == 64}

    def model_path(self, sha256: str, file: str) -> Path:
        return self.folder(sha256) / file

    def install(self, sha256: str, artifact: Path, suffix: str) -> str:
        """Move a verified artifact into `<sha256>/`; returns the model file's name there.

        Raises StoreError for an archive that is not exactly one .xml and one .bin.
        """
        final = self.folder(sha256)
        if final.is_dir():
            artifact.unlink(missing_ok=True)
            return self._model_file(final)
        building = self.root / f".{sha256}.building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        try:
            if suffix in ARCHIVE_SUFFIXES:
                _unpack_ir(artifact, building)
                artifact.unlink()
            else:
                artifact.replace(building / f"model{suffix}")
            fsync_directory(building)
            building.rename(final)
            fsync_directory(self.root)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return self._model_file(final)

    def remove(self, sha256: str) -> None:
        """The version's folder and any partial download of it."""
        self.remove_folder(sha256)
        self.partial_file(sha256).unlink(missing_ok=True)

    def remove_folder(self, sha256: str) -> None:
        shutil.rmtree(self.folder(sha256), ignore_errors=True)

    def model_file(self, sha256: str) -> str:
        """The model file's name inside the version's folder."""
        return self._model_file(self.folder(sha256))

    def clean_leftovers(self) -> None:
        """Half-built folders from a power cut; partial downloads stay (they resume)."""
        if self.root.is_dir():
            for leftover in self.root.glob(".*.building"):
                shutil.rmtree(leftover, ignore_errors=True)

    @staticmethod
    def _model_file(folder: Path) -> str:
        names = sorted(p.name for p in folder.iterdir())
        for name in names:
            if name.endswith((".xml", *SINGLE_FILE_SUFFIXES)):
                return name
        raise StoreError(f"{folder} holds no model file ({names})")


def _unpack_ir(archive: Path, into: Path) -> None:
    """Extract exactly one .xml and one .bin (plain files, no folders or links)."""
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            kinds = sorted(Path(m.name).suffix for m in members)
            if kinds != [".bin", ".xml"] or not all(m.isfile() for m in members):
                names = [m.name for m in members][:10]
                raise StoreError(f"an IR archive must hold one .xml and one .bin, as plain "
                                 f"files; this one holds {names}")
            for member in members:
                source = tar.extractfile(member)
                if source is None:
                    raise StoreError(f"cannot read {member.name} in the archive")
                target = into / f"model{Path(member.name).suffix}"
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
    except tarfile.TarError as exc:
        raise StoreError(f"not a readable .tar archive: {exc}") from exc
