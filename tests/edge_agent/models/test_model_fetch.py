"""The model downloader against a real HTTP server on 127.0.0.1: resume with Range, size
limit, hash mismatch, server errors, URL rules."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edge_agent.models.fetch import FetchError, check_url, copy_file, download, verify
from tests.model_server import model_server, sha256_of

DATA = os.urandom(300_000)


def fetch(url: str, into: Path, **overrides: object) -> None:
    options: dict = {"max_bytes": 1_000_000, "timeout_s": 5.0, "retries": 3,
                     "sleep": lambda _s: None, **overrides}
    download(url, into, **options)


@pytest.mark.parametrize(("faults", "ranges"), [
    ([], [None]),
    (["cut:1000"], [None, "bytes=1000-"]),
    (["cut:1000", "cut:5000"], [None, "bytes=1000-", "bytes=6000-"]),
    (["500"], [None, None]),
    (["cut:70000", "ignore-range"], [None, "bytes=70000-"]),  # server restarts the body
])
def test_download_resumes_where_it_broke(tmp_path: Path, faults: list[str],
                                         ranges: list[str | None]) -> None:
    with model_server({"/m.onnx": DATA}) as server:
        server.faults["/m.onnx"] = list(faults)
        into = tmp_path / "m.part"
        fetch(server.url("/m.onnx"), into)
        assert [r for _, r in server.requests] == ranges
    assert into.read_bytes() == DATA
    verify(into, sha256_of(DATA))


def test_a_partial_file_from_an_earlier_run_is_resumed(tmp_path: Path) -> None:
    into = tmp_path / "m.part"
    into.write_bytes(DATA[:12345])
    with model_server({"/m.onnx": DATA}) as server:
        fetch(server.url("/m.onnx"), into)
        assert server.requests == [("/m.onnx", "bytes=12345-")]
    assert into.read_bytes() == DATA


@pytest.mark.parametrize(("faults", "message", "kept"), [
    (["404"], "HTTP 404", False),
    (["cut:10"] * 4, "after 4 attempts: the body ended before its announced length", True),
    (["500"] * 4, "after 4 attempts: HTTP 500", False),
])
def test_download_failures_say_why(tmp_path: Path, faults: list[str], message: str,
                                   kept: bool) -> None:
    with model_server({"/m.onnx": DATA}) as server:
        server.faults["/m.onnx"] = list(faults)
        into = tmp_path / "m.part"
        with pytest.raises(FetchError, match=message):
            fetch(server.url("/m.onnx"), into)
    assert into.exists() is kept  # what arrived is kept for the next attempt


@pytest.mark.parametrize("fault", ["", "cut:250000"])
def test_size_limit_stops_the_download(tmp_path: Path, fault: str) -> None:
    """Announced too big (Content-Length) or found too big while reading: no file left."""
    with model_server({"/m.onnx": DATA}) as server:
        server.faults["/m.onnx"] = [fault]
        into = tmp_path / "m.part"
        with pytest.raises(FetchError, match="max_download_mb"):
            fetch(server.url("/m.onnx"), into, max_bytes=100_000)
    assert not into.exists()


def test_a_wrong_hash_is_refused_and_the_file_removed(tmp_path: Path) -> None:
    into = tmp_path / "m.part"
    into.write_bytes(DATA[:1000])  # truncated
    with pytest.raises(FetchError, match=r"sha256 mismatch: expected .* the 1000-byte file"):
        verify(into, sha256_of(DATA))
    assert not into.exists()


@pytest.mark.parametrize(("url", "message"), [
    ("file:///etc/passwd", "http:// or https://"),
    ("ftp://host/m.onnx", "http:// or https://"),
    ("http:///m.onnx", "no host"),
    ("http://user:secret@host/m.onnx", "user or password"),
    ("https://10.0.0.5:8443/models/m.onnx", None),
])
def test_url_rules(url: str, message: str | None) -> None:
    if message is None:
        assert check_url(url) == url
    else:
        with pytest.raises(FetchError, match=message):
            check_url(url)


def test_copy_respects_the_size_limit(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    source.write_bytes(DATA)
    with pytest.raises(FetchError, match=r"over models\.max_download_mb"):
        copy_file(source, tmp_path / "x.part", 1000)
    copy_file(source, tmp_path / "y.part", len(DATA))
    assert (tmp_path / "y.part").read_bytes() == DATA


def test_a_server_that_drips_bytes_is_cut_and_the_deploy_fails(tmp_path: Path) -> None:
    """20 bytes a second never holds a deploy (and the rollback its busy) for long: once
    `timeout_s` has passed below MIN_BYTES_PER_S the attempt is cut, retried (resuming),
    and the download fails naming why."""
    with model_server({"/m.onnx": DATA}) as server:
        server.faults["/m.onnx"] = ["slow:20"] * 2
        into = tmp_path / "m.part"
        started = time.monotonic()
        with pytest.raises(FetchError, match="after 2 attempts: TimeoutError: too slow"):
            fetch(server.url("/m.onnx"), into, timeout_s=1.0, retries=1)
    assert time.monotonic() - started < 10
    assert 0 < into.stat().st_size < len(DATA)  # what came is kept for the next try
