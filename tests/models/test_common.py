"""Tests for models/common.py: atomic writes and the cache-dir argument."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.models.fakes import load_script

common = load_script("common")


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old weights")
    common.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_write_atomic_never_leaves_a_truncated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash between the write and the rename: the old file must be intact.
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old weights")

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        common.write_atomic(target, b"new weights, half written")
    assert target.read_bytes() == b"old weights"
    assert (tmp_path / "model.onnx.tmp").read_bytes() == b"new weights, half written"


def test_write_atomic_syncs_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    common.write_atomic(tmp_path / "stamp.json", b"{}")
    assert events == ["fsync", "replace"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"MATTE_CACHE_DIR": "/srv/m"}, Path("/srv/m")),
        ({"MATTE_CACHE_DIR": "~/models"}, Path.home() / "models"),
        ({"MATTE_CACHE_DIR": ""}, Path.home() / ".cache" / "matte"),  # set but empty
        ({}, Path.home() / ".cache" / "matte"),
    ],
)
def test_default_cache_dir(environ: dict[str, str], expected: Path) -> None:
    assert common.default_cache_dir(environ) == expected


def test_cache_parser_takes_cache_dir_and_force() -> None:
    parser = common.cache_parser("Do a thing.", "do it again", {"MATTE_CACHE_DIR": "/srv/m"})
    args = parser.parse_args([])
    assert args.cache_dir == Path("/srv/m") and args.force is False
    args = parser.parse_args(["--cache-dir", "/x", "--force"])
    assert args.cache_dir == Path("/x") and args.force is True
    assert parser.description == "Do a thing."
    help_text = " ".join(parser.format_help().split())  # unwrapped
    assert "--force do it again" in help_text
    assert "(default: $MATTE_CACHE_DIR or ~/.cache/matte)" in help_text


def test_fetch_error_carries_its_exit_code() -> None:
    assert common.FetchError("boom").exit_code == 1
    error = common.FetchError("no npm", exit_code=2)
    assert (str(error), error.exit_code) == ("no npm", 2)
