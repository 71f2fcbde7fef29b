"""The manifest (atomic writes, a damaged file set aside, the rollback order), the store
(folders by hash, IR archives, leftovers) and the start-up rules that read them."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from pathlib import Path

import pytest

from edge_agent.models import manifest as manifest_module
from edge_agent.models.manifest import (
    CONFIG_MODEL,
    Manifest,
    ModelVersion,
    Outcome,
    load_manifest,
    save_manifest,
)
from edge_agent.models.startup import settle_interrupted, start_order
from edge_agent.models.store import ModelStore, StoreError, artifact_suffix

A, B, C, D = (c * 64 for c in "abcd")


def version(sha: str, outcome: Outcome = Outcome.OK, activated: str | None = "t") -> ModelVersion:
    return ModelVersion(sha256=sha, name=f"m-{sha[0]}", version="1", source="http://h/m.onnx",
                        file="model.onnx", added="2026-11-30T00:00:00.000Z",
                        activated=activated, outcome=outcome)


def test_manifest_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    written = Manifest(active=A, previous=CONFIG_MODEL,
                       config_model={"path": "/m.onnx", "sha256": B},
                       versions=[version(A, Outcome.PROBATION)])
    written.versions[0].labels = ["person", "car"]
    save_manifest(path, written)
    read = load_manifest(path)
    assert read == written
    assert json.loads(path.read_text())["versions"][0]["outcome"] == "probation"
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed


def test_a_write_cut_before_the_rename_leaves_the_old_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power cut between the temp file's write and the rename: the old one is read."""
    path = tmp_path / "manifest.json"
    save_manifest(path, Manifest(active=A, versions=[version(A)]))

    def cut(*_args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(manifest_module.os, "replace", cut)
    with pytest.raises(OSError, match="power cut"):
        save_manifest(path, Manifest(active=B, versions=[version(B)]))
    monkeypatch.undo()
    assert load_manifest(path).active == A


@pytest.mark.parametrize("damage", [
    b"", b"{", b"\x00\x00\x00", b"[]", b'{"schema_version": 99}',
    b'{"schema_version": 1, "versions": [{"sha256": "short", "file": "x"}]}',
    b'{"schema_version": 1, "versions": [{"sha256": "' + b"a" * 64 + b'", "outcome": "odd"}]}',
    b'{"schema_version": 1, "versions": 5}',
])
def test_a_damaged_manifest_is_set_aside_not_fatal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(damage)
    with caplog.at_level(logging.ERROR):
        read = load_manifest(path)
    assert read == Manifest()
    assert not path.exists()
    aside = list(tmp_path.glob("manifest.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == damage
    assert "set aside" in caplog.text


def test_no_manifest_is_an_empty_one(tmp_path: Path) -> None:
    assert load_manifest(tmp_path / "none.json") == Manifest()


@pytest.mark.parametrize(("versions", "active", "present", "targets"), [
    ([], CONFIG_MODEL, set(), []),
    ([version(A)], A, {A}, [CONFIG_MODEL]),
    ([version(A, activated="1"), version(B, activated="2")], B, {A, B}, [A, CONFIG_MODEL]),
    ([version(A, activated="2"), version(B, activated="1"), version(C, activated="3")], C,
     {A, B, C}, [A, B, CONFIG_MODEL]),
    ([version(A), version(B, Outcome.REJECTED)], B, {A, B}, [A, CONFIG_MODEL]),
    ([version(A, Outcome.ROLLED_BACK), version(B)], B, {A, B}, [CONFIG_MODEL]),
    ([version(A), version(B)], B, {B}, [CONFIG_MODEL]),  # A's files are gone
    ([version(A, activated=None)], CONFIG_MODEL, {A}, []),  # never ran
    ([version(A)], CONFIG_MODEL, {A}, [A]),  # back from the config's model to a deploy
])
def test_rollback_targets(versions: list[ModelVersion], active: str, present: set[str],
                          targets: list[str]) -> None:
    assert Manifest(active=active, versions=versions).rollback_targets(present) == targets


@pytest.mark.parametrize(("outcome", "previous", "active", "after"), [
    (Outcome.PROBATION, B, B, Outcome.ROLLED_BACK),
    (Outcome.PROBATION, None, CONFIG_MODEL, Outcome.ROLLED_BACK),
    (Outcome.OK, B, A, Outcome.OK),
])
def test_a_restart_settles_interrupted_deploys(outcome: Outcome, previous: str | None,
                                               active: str, after: Outcome) -> None:
    manifest = Manifest(active=A, previous=previous,
                        versions=[version(A, outcome), version(C, Outcome.PENDING)])
    settle_interrupted(manifest, "now")
    assert manifest.active == active
    assert manifest.versions[0].outcome is after
    assert manifest.versions[1].outcome is Outcome.REJECTED
    assert "interrupted" in (manifest.versions[1].reason or "")


def cut_in_probation(replaced: str | None) -> ModelVersion:
    cut = version(D, Outcome.PROBATION, activated="2026-11-30T09:00:00.000Z")
    cut.replaced = replaced
    return cut


@pytest.mark.parametrize(("replaced", "others", "previous", "back"), [
    # The config's model ran (a reload made it active) though A ran well before: config.
    (CONFIG_MODEL, [version(A, activated="2026-11-30T08:00:00.000Z")], A, CONFIG_MODEL),
    # A deployed version ran; B ran well more recently (the newest `ok` target): A.
    (A, [version(A, activated="2026-11-30T07:00:00.000Z"),
         version(B, activated="2026-11-30T08:00:00.000Z")], B, A),
    # What ran was itself rolled back since it last ran well (say by model/rollback to
    # it): still that one, not the newest `ok` version.
    (A, [version(A, Outcome.ROLLED_BACK, activated="2026-11-30T07:00:00.000Z"),
         version(B, activated="2026-11-30T08:00:00.000Z")], B, A),
    # What ran was itself a deploy cut in probation before (rolled back at that restart)
    # whose own predecessor was the config: back to it, the model that ran.
    (B, [version(A, activated="2026-11-30T06:00:00.000Z"),
         version(B, Outcome.ROLLED_BACK, activated="2026-11-30T08:00:00.000Z")], A, B),
    # A manifest from before `replaced`: the recorded previous, else the config.
    (None, [version(A, activated="2026-11-30T08:00:00.000Z")], A, A),
    (None, [], None, CONFIG_MODEL),
    # `replaced` names a version the manifest no longer holds: the recorded previous.
    (C, [version(A, activated="2026-11-30T08:00:00.000Z")], A, A),
])
def test_a_probation_cut_by_a_crash_goes_back_to_the_model_that_ran(
    replaced: str | None, others: list[ModelVersion], previous: str | None, back: str,
) -> None:
    """docs/models.md: a SIGKILL at any step leaves the old model (the one running before
    the deploy) or the new one; `previous` (the newest `ok` target) is not that one."""
    cut = cut_in_probation(replaced)
    manifest = Manifest(active=D, previous=previous, versions=[*others, cut])
    settle_interrupted(manifest, "now")
    assert manifest.active == back
    assert cut.outcome is Outcome.ROLLED_BACK
    assert "before its probation ended" in (cut.reason or "")
    assert start_order(manifest)[0] == back
    assert CONFIG_MODEL in start_order(manifest)


def test_replaced_round_trips_and_old_entries_read_without_it(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(path, Manifest(active=D, previous=CONFIG_MODEL,
                                 versions=[cut_in_probation(CONFIG_MODEL)]))
    assert load_manifest(path).versions[0].replaced == CONFIG_MODEL
    body = json.loads(path.read_text())
    del body["versions"][0]["replaced"]
    path.write_text(json.dumps(body))
    assert load_manifest(path).versions[0].replaced is None


@pytest.mark.parametrize(("name", "suffix"), [
    ("http://h/m.onnx", ".onnx"), ("/x/M.ONNX", ".onnx"), ("http://h/a.tar?token=1", ".tar"),
    ("/x/y.engine", ".engine"), ("/x/y.plan", ".plan"), ("/x/m.xml", None), ("http://h/", None),
])
def test_the_format_comes_from_the_name(name: str, suffix: str | None) -> None:
    if suffix is None:
        with pytest.raises(StoreError, match=r"must end in \.onnx"):
            artifact_suffix(name)
    else:
        assert artifact_suffix(name) == suffix


def tar_of(members: dict[str, bytes], tmp_path: Path) -> Path:
    path = tmp_path / "ir.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_store_installs_files_and_ir_archives(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.prepare()
    single = tmp_path / "a.part"
    single.write_bytes(b"onnx")
    assert store.install(A, single, ".onnx") == "model.onnx"
    archive = tar_of({"x/net.xml": b"<xml/>", "x/net.bin": b"weights"}, tmp_path)
    assert store.install(B, archive, ".tar") == "model.xml"
    assert (store.folder(B) / "model.bin").read_bytes() == b"weights"
    assert store.present() == {A, B}
    assert not single.exists()
    assert not archive.exists()


@pytest.mark.parametrize("members", [
    {"net.xml": b"x"}, {"net.xml": b"x", "net.bin": b"y", "extra.txt": b"z"},
    {"a.xml": b"x", "b.xml": b"y"},
])
def test_store_refuses_odd_archives(tmp_path: Path, members: dict[str, bytes]) -> None:
    store = ModelStore(tmp_path)
    store.prepare()
    with pytest.raises(StoreError, match=r"one \.xml and one \.bin"):
        store.install(A, tar_of(members, tmp_path), ".tar")
    assert store.present() == set()
    assert not list(store.root.glob(".*building"))


def test_store_refuses_a_non_archive_and_cleans_leftovers(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.prepare()
    junk = tmp_path / "j.part"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(StoreError, match=r"not a readable \.tar"):
        store.install(A, junk, ".tar")
    (store.root / f".{B}.building").mkdir()  # a power cut while building
    store.partial_file(C).write_bytes(b"half")
    store.clean_leftovers()
    assert not (store.root / f".{B}.building").exists()
    assert store.partial_file(C).exists()  # a partial download resumes later


@pytest.mark.parametrize(("active", "target", "present", "expected"), [
    (B, None, {A, B}, A),
    (A, None, {A}, CONFIG_MODEL),
    (CONFIG_MODEL, None, set(), LookupError("nothing to roll back to")),
    (B, CONFIG_MODEL, {A, B}, CONFIG_MODEL),
    (CONFIG_MODEL, A, {A}, A),
    (B, B, {A, B}, ValueError("already the active model")),
    (B, C, {A, B}, LookupError("no kept model version")),  # not in the manifest
    (B, D, {A, B, D}, LookupError("no kept model version")),  # files without an entry
    (A, B, {A}, LookupError("no kept model version")),  # entry without files
])
def test_rollback_target(active: str, target: str | None, present: set[str],
                         expected: str | Exception) -> None:
    manifest = Manifest(active=active, versions=[version(A, activated="1"),
                                                 version(B, activated="2")])
    if isinstance(expected, Exception):
        with pytest.raises(type(expected), match=str(expected)):
            manifest.rollback_target(target, present)
    else:
        assert manifest.rollback_target(target, present) == expected


@pytest.mark.parametrize(("active", "previous", "order"), [
    (CONFIG_MODEL, None, [CONFIG_MODEL]),
    (CONFIG_MODEL, A, [CONFIG_MODEL, A]),  # the config's model first: it was chosen
    (A, None, [A, CONFIG_MODEL]),
    (A, CONFIG_MODEL, [A, CONFIG_MODEL]),
    (B, A, [B, A, CONFIG_MODEL]),
])
def test_start_order(active: str, previous: str | None, order: list[str]) -> None:
    assert start_order(Manifest(active=active, previous=previous)) == order


GOOD_SHA = "0123456789abcdef" * 4


@pytest.mark.parametrize(("sha256", "file"), [
    (GOOD_SHA, "../../etc/model.onnx"),
    (GOOD_SHA, "/opt/elsewhere/model.onnx"),
    (GOOD_SHA, ".."),
    (GOOD_SHA, "sub/model.onnx"),
    (GOOD_SHA, "..\\model.onnx"),
    ("z" * 64, "model.onnx"),
    ("../" * 21 + "a", "model.onnx"),
    (GOOD_SHA.upper(), "model.onnx"),
])
def test_a_version_entry_that_points_outside_the_store_is_refused(
    sha256: str, file: str
) -> None:
    """The store keeps a version as <sha256>/<file>: an entry whose file is a path, or
    whose sha256 is not one, would send the agent and its tools to another file."""
    entry = {"sha256": sha256, "file": file, "name": "m", "version": "1", "outcome": "ok",
             "source": "http://h/m.onnx", "added": "2026-11-30T00:00:00.000Z"}
    with pytest.raises(ValueError, match="bad version entry"):
        ModelVersion.from_json(entry)
    assert ModelVersion.from_json({**entry, "sha256": GOOD_SHA, "file": "model.onnx"})
