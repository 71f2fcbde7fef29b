"""Path arguments: only inside `commands.allowed_paths`, however the path is spelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.commands import Code, RejectedError, allowed_path


@pytest.fixture
def folders(tmp_path: Path) -> list[Path]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "good.onnx").write_bytes(b"x")
    (tmp_path / "secret").write_text("x")
    (models / "escape").symlink_to(tmp_path / "secret")
    (models / "inner").symlink_to(models / "good.onnx")
    return [models]


@pytest.mark.parametrize("spelled", [
    "{root}/secret", "{root}/models/../secret", "{root}/models/escape", "models/good.onnx",
    "{root}/models", "{root}/models-other/x", "", "/etc/passwd", "{root}/models/a\x00b",
    "{root}/models/a\nb", "/" + "a" * 5000,
])
def test_outside_the_allowed_folders_is_rejected(tmp_path: Path, folders: list[Path],
                                                 spelled: str) -> None:
    with pytest.raises(RejectedError) as caught:
        allowed_path(spelled.format(root=tmp_path), folders)
    assert caught.value.code is Code.PATH_NOT_ALLOWED


@pytest.mark.parametrize(("spelled", "real"), [
    ("{root}/models/good.onnx", "models/good.onnx"),
    ("{root}/models/./sub/../good.onnx", "models/good.onnx"),
    ("{root}/models/inner", "models/good.onnx"),
    ("{root}/models/new/not-yet.onnx", "models/new/not-yet.onnx"),
])
def test_inside_is_the_real_path(tmp_path: Path, folders: list[Path], spelled: str,
                                 real: str) -> None:
    assert allowed_path(spelled.format(root=tmp_path), folders) == tmp_path / real


def test_no_folders_allow_nothing(tmp_path: Path) -> None:
    with pytest.raises(RejectedError, match="none"):
        allowed_path(str(tmp_path / "x"), [])
