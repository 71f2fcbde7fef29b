"""Where the sample model, labels and media come from, and how a download is checked.

One list for `edge-agent models fetch` and `scripts/fetch-samples`: every file's path
(relative to a samples folder laid out as models/, media/, images/), its sha256 and its
public source. Stdlib only: scripts/fetch-samples imports it before the package's
dependencies are installed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

YOLOX = (
    "https://raw.githubusercontent.com/Kazuhito00/YOLOX-ONNX-TFLite-Sample/"
    "0f785c070ce8da070aeaeef46c0da7904ff7012e"
)
AUTOML = (
    "https://raw.githubusercontent.com/google/automl-video-ondevice/"
    "6455ffcd0afe53cc222724c6d17a3d3ba00be954"
)
CORAL = "https://raw.githubusercontent.com/google-coral/test_data/master"

# Expected sha256 of every file, as `sha256sum -c` reads it (run in the samples folder).
SHA256 = """\
695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14  models/yolox_nano.onnx
634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84  models/coco_labels.txt
dc5f040e5e1e30a64ffec7017b1517d088352f51d62f70b17d01e176cd2333f2  media/vtest.mp4
a94ef9529efbfbff681adb1f852c9e932eacecd7fa0b01105660d6994054314d  media/traffic_frames.mp4
ffe0f0cec3b2e27aab1967229cdf0a0d7751dcdd5800322f0b8ac0dffb3b8a8d  images/000000000139.jpg
a4cd7f45ac1ce27eaafb254b23af7c0b18a064be08870ceaaf03b2147f2ce550  images/000000000632.jpg
83981537a7baeafbeb9c8cb67b3484dc26433f574b3685d021fa537e277e4726  images/000000000785.jpg
c2aa138ee3a59b057a7ba6fc5a6a18e62af531aa7dab78a7bfd33c1cd7e55eb6  images/000000000872.jpg
24bb77a31928404e45a0454b06f6a0bd54a8db103590c9d7917288a1e0269f05  images/000000001000.jpg
87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e  images/kite_and_cold.jpg
3d71034f8a910bc71c744d3191b652c6c09e9e9c703e4dcd97f1c5ef7adbfe82  images/pets.jpg
cfb1dbdf64b30de79104a47555ff8e9f12737a12c2128ecd0e7f38531a8c13ce  images/cat_720p.jpg
"""

# Public sources. vtest.mp4 has none: scripts/fetch-samples makes it from vtest.avi.
URLS = {
    "models/yolox_nano.onnx": f"{YOLOX}/model/yolox_nano.onnx",
    "models/coco_labels.txt": f"{YOLOX}/coco_classes.txt",
    "media/traffic_frames.mp4": f"{AUTOML}/data/traffic_frames.mp4",
    **{
        f"images/{name}": f"{YOLOX}/representative_dataset/{name}"
        for name in [
            "000000000139.jpg",
            "000000000632.jpg",
            "000000000785.jpg",
            "000000000872.jpg",
            "000000001000.jpg",
        ]
    },
    **{
        f"images/{name}": f"{CORAL}/{name}"
        for name in ["kite_and_cold.jpg", "pets.jpg", "cat_720p.jpg"]
    },
}


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the samples folder
    sha256: str
    url: str  # public source; empty for vtest.mp4


SAMPLES = [
    Sample(path, sha256, URLS.get(path, ""))
    for sha256, path in (line.split() for line in SHA256.splitlines())
]
BY_PATH = {sample.path: sample for sample in SAMPLES}


@dataclass(frozen=True)
class Model:
    """A detector `edge-agent models fetch` can get: its files and how to configure it."""

    name: str
    model: Sample
    labels: Sample
    family: str
    about: str


MODELS = {
    "yolox-nano": Model(
        "yolox-nano", BY_PATH["models/yolox_nano.onnx"], BY_PATH["models/coco_labels.txt"],
        family="yolox",
        about="YOLOX-nano, 80 COCO classes, 416x416, 3.6 MB (Apache-2.0, Megvii); "
              "fast on any CPU, for a first run and for aiming cameras",
    ),
}


class FetchError(Exception):
    """One file could not be had; the message says which and why."""


class SourceUnreachableError(FetchError):
    """The network or the source's host could not be reached at all (offline, DNS)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def mismatch(name: str, origin: str, expected: str, actual: str) -> FetchError:
    return FetchError(
        f"{name}: wrong sha256 from {origin}\n    expected {expected}\n    actual   {actual}"
    )


def temp_beside(target: Path) -> Path:
    """A fresh temporary file in the target's folder, so the final rename is atomic."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                        dir=target.parent)  # fmt: skip
    os.close(descriptor)
    return Path(name)


def install(temp: Path, target: Path) -> None:
    os.chmod(temp, 0o644)
    os.replace(temp, target)


def copy_checked(source: Path, target: Path, sample: Sample) -> None:
    temp = temp_beside(target)
    try:
        digest = hashlib.sha256()
        with source.open("rb") as reader, temp.open("wb") as writer:
            while chunk := reader.read(1 << 20):
                digest.update(chunk)
                writer.write(chunk)
        if digest.hexdigest() != sample.sha256:
            raise mismatch(sample.path, str(source), sample.sha256, digest.hexdigest())
        install(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def download(url: str, target: Path, name: str, expected: str, attempts: int = 3) -> None:
    """Download url to target via a temp file, checking its sha256; retries network errors.

    A source that cannot be reached at all (no route, no DNS) raises
    SourceUnreachableError at once: retrying an offline box only makes it wait.
    """
    if not url.startswith(("https://", "http://")):  # S310: no file: or custom schemes
        raise FetchError(f"{name}: refusing to open {url!r}")
    for attempt in range(1, attempts + 1):
        temp = temp_beside(target)
        try:
            digest = hashlib.sha256()
            request = urllib.request.Request(url, headers={"User-Agent": "edge-agent-fetch"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=60) as response, temp.open("wb") as out:  # noqa: S310
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected:
                raise mismatch(name, url, expected, digest.hexdigest())
            install(temp, target)
            return
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            if _unreachable(error):
                raise SourceUnreachableError(
                    f"{name}: cannot reach {url}: {_reason(error)}") from error
            client_error = isinstance(error, urllib.error.HTTPError) and error.code < 500
            if attempt == attempts or client_error:
                raise FetchError(f"{name}: cannot download {url}: {error}") from error
            print(f"    {error}; retrying", file=sys.stderr)
            time.sleep(2 * attempt)
        finally:
            temp.unlink(missing_ok=True)


def _unreachable(error: Exception) -> bool:
    """No answer from the host at all: its name does not resolve, no route, refused."""
    if not isinstance(error, urllib.error.URLError) or isinstance(error, urllib.error.HTTPError):
        return False
    reason = error.reason
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError)) or getattr(
        reason, "errno", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _reason(error: Exception) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return str(getattr(reason, "strerror", None) or reason)
