"""Tests for models/variants.py: graph transforms and the divergence gate, on tiny models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.models.fakes import H, W, load_script, tiny_fp16_model

variants = load_script("variants")
FetchError = load_script("common").FetchError


def run(model: onnx.ModelProto, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    results: list[np.ndarray] = session.run(outputs, {"input": batch})
    return results


def _batch(n: int) -> np.ndarray:
    batch: np.ndarray = variants.synth_batch((1, 3, H, W), n)
    return batch


# ---------------------------------------------------------------- graph transforms


def test_topological_sort_fixes_shipped_order() -> None:
    model = tiny_fp16_model()
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    onnx.checker.check_model(variants.topological_sort(model))


def test_prune_removes_extra_output_and_its_nodes() -> None:
    model = tiny_fp16_model()
    pruned = variants.prune(model, "output")
    assert [o.name for o in pruned.graph.output] == ["output"]
    assert {t.name for t in pruned.graph.initializer} == {"w1", "b1", "w2", "b2"}
    produced = {name for node in pruned.graph.node for name in node.output}
    assert "aux" not in produced and "aux16" not in produced
    onnx.checker.check_model(pruned, full_check=True)
    (expected,) = run(model, _batch(1), ["output"])
    (actual,) = run(pruned, _batch(1), ["output"])
    np.testing.assert_array_equal(actual, expected)
    with pytest.raises(FetchError):
        variants.prune(model, "missing")


def test_to_fp32_removes_fp16_and_casts_and_matches() -> None:
    model = variants.prune(tiny_fp16_model(), "output")
    converted = variants.to_fp32(model)
    graph = converted.graph
    onnx.checker.check_model(converted, full_check=True)
    assert all(t.data_type == TensorProto.FLOAT for t in graph.initializer)
    constants = [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
    assert TensorProto.FLOAT16 not in {t.data_type for t in constants}
    assert [n for n in graph.node if n.op_type == "Cast"] == []
    assert TensorProto.FLOAT16 not in set(variants.elem_types(converted).values())
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
    dropped = variants.drop_identity_casts(model)
    casts = [n for n in dropped.graph.node if n.op_type == "Cast"]
    assert [n.input[0] for n in casts] == ["shape"]  # int64 -> float is real work
    expected = run(model, _batch(1), ["y", "z"])
    actual = run(dropped, _batch(1), ["y", "z"])
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


def test_make_batch_symbolic_runs_batch_three() -> None:
    model = variants.make_batch_symbolic(variants.prune(tiny_fp16_model(), "output"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
    assert len(model.graph.value_info) == 0  # stale batch-1 shapes dropped
    batch = _batch(3)
    (out,) = run(model, batch, ["output"])
    assert out.shape == (3, 1, H, W)
    (single,) = run(model, batch[1:2], ["output"])
    np.testing.assert_allclose(out[1:2], single, atol=1e-6)


# ---------------------------------------------------------------- divergence gate


def _arrays(*rows: Sequence[float]) -> np.ndarray:
    """Images of shape (1, 1, len(row)) stacked into a float64 batch."""
    return np.array(rows, dtype=np.float64)[:, None, None, :]


REFERENCE = _arrays([0.0, 0.0, 1.0])


# The second image of the fp32 batch is another photo: it is not compared.
OTHER = [1.0, 0.0, 0.0]


def test_compare_outputs_reports_each_difference() -> None:
    fp16 = _arrays([0.0, 0.001, 1.0])
    fp32 = _arrays([0.0, 0.01, 1.0], OTHER)
    diffs = variants.compare_outputs(REFERENCE, fp16, fp32)
    assert diffs == pytest.approx(
        {
            "fp16_max_abs": 0.001,
            "fp32_max_abs": 0.01,
            "fp32_max_abs_minmax": 0.01,
            "fp32_mean_abs": 0.01 / 3,
        },
        rel=1e-12,
    )


def test_fp16_gate_is_a_raw_max_abs_limit() -> None:
    limit = variants.FP16_MAX_ABS_DIFF
    assert limit == 5e-3
    fp32 = _arrays([0.0, 0.0, 1.0], OTHER)
    for value in (limit, -limit):
        variants.compare_outputs(REFERENCE, _arrays([0.0, value, 1.0]), fp32)
    for value in (np.nextafter(limit, 1.0), -np.nextafter(limit, 1.0)):
        with pytest.raises(FetchError, match=r"^cuda-fp16 diverges from original: \{"):
            variants.compare_outputs(REFERENCE, _arrays([0.0, value, 1.0]), fp32)
    # No normalisation: an fp16 output at twice the scale is wrong.
    with pytest.raises(FetchError, match="cuda-fp16 diverges"):
        variants.compare_outputs(REFERENCE, REFERENCE * 2, fp32)


def test_fp32_gate_compares_after_min_max_normalisation() -> None:
    limit = variants.FP32_MAX_NORMALISED_DIFF
    assert limit == 2e-2
    # min 0 and max 1 in both: the normalised difference is exactly `value`.
    variants.compare_outputs(REFERENCE, REFERENCE, _arrays([0.0, limit, 1.0], OTHER))
    with pytest.raises(FetchError, match=r"^cpu-fp32 diverges from original: \{"):
        variants.compare_outputs(
            REFERENCE, REFERENCE, _arrays([0.0, np.nextafter(limit, 1.0), 1.0], OTHER)
        )
    # Scale and offset vanish in the client's min-max normalisation.
    variants.compare_outputs(REFERENCE, REFERENCE, _arrays([2.0, 2.0, 5.0], OTHER))
    with pytest.raises(FetchError, match="cpu-fp32 diverges"):
        variants.compare_outputs(REFERENCE, REFERENCE, _arrays([1.0, 0.0, 0.0], [0.0, 0.0, 1.0]))


@pytest.mark.parametrize(
    ("fp16", "fp32"),
    [
        (_arrays([0.0, 0.0]), _arrays([0.0, 0.0, 1.0], OTHER)),
        (REFERENCE, _arrays([0.0, 0.0, 1.0])),  # batch 1 where 2 were run
        (REFERENCE, _arrays([0.0, 0.0, 1.0], OTHER, OTHER)),
    ],
    ids=["fp16-width", "fp32-batch-1", "fp32-batch-3"],
)
def test_compare_outputs_checks_shapes(fp16: np.ndarray, fp32: np.ndarray) -> None:
    with pytest.raises(FetchError) as info:
        variants.compare_outputs(REFERENCE, fp16, fp32)
    assert str(info.value) == (
        f"shape mismatch: original (1, 1, 1, 3), cuda-fp16 {fp16.shape}, "
        f"cpu-fp32 batch 2 {fp32.shape} (expected (2, 1, 1, 3))"
    )


def test_minmax_normalises_each_image_alone() -> None:
    batch = np.array([[0.0, 2.0, 1.0], [10.0, 20.0, 15.0], [3.0, 3.0, 3.0]])
    expected = np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(variants.minmax(batch), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- building and checking both


def test_build_variants_gives_both_serving_variants() -> None:
    built = variants.build_variants(tiny_fp16_model(), "output", "n")
    assert list(built) == ["cuda-fp16", "cpu-fp32"]
    for model in built.values():
        assert [o.name for o in model.graph.output] == ["output"]
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "n"
    fp16_types = {t.data_type for t in built["cuda-fp16"].graph.initializer}
    fp32_types = {t.data_type for t in built["cpu-fp32"].graph.initializer}
    assert (fp16_types, fp32_types) == ({TensorProto.FLOAT16}, {TensorProto.FLOAT})
    assert variants.describe(built["cpu-fp32"]) == (
        "14 nodes, 0 Cast, 4 initializers (0 fp16), outputs ['output']"
    )


def test_build_variants_checks_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # A conversion bug that leaves an invalid graph (here: nodes out of order,
    # as shipped) must stop the build, not be saved for the server to choke on.
    monkeypatch.setattr(variants, "to_fp32", lambda model: tiny_fp16_model())
    with pytest.raises(onnx.checker.ValidationError):
        variants.build_variants(tiny_fp16_model(), "output", "batch")


def _save_variants(directory: Path, original: onnx.ModelProto) -> dict[str, Path]:
    paths = {key: directory / f"{key}.onnx" for key in ("original", "cuda-fp16", "cpu-fp32")}
    onnx.save(original, str(paths["original"]))
    for key, model in variants.build_variants(original, "output", "batch").items():
        onnx.save(model, str(paths[key]))
    return paths


def test_verify_variants_runs_the_fp32_variant_on_a_batch_of_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _save_variants(tmp_path, tiny_fp16_model())
    runs: list[tuple[str, tuple[int, ...]]] = []
    real_run = variants.run_cpu

    def run_cpu(path: Path, input_name: str, output_name: str, batch: np.ndarray) -> np.ndarray:
        runs.append((path.name, batch.shape))
        return real_run(path, input_name, output_name, batch)  # type: ignore[no-any-return]

    monkeypatch.setattr(variants, "run_cpu", run_cpu)
    diffs = variants.verify_variants(paths, "input", "output", (1, 3, H, W))
    assert runs == [
        ("original.onnx", (1, 3, H, W)),
        ("cuda-fp16.onnx", (1, 3, H, W)),
        ("cpu-fp32.onnx", (2, 3, H, W)),
    ]
    assert set(diffs) == {"fp16_max_abs", "fp32_max_abs", "fp32_max_abs_minmax", "fp32_mean_abs"}
    assert diffs["fp16_max_abs"] <= variants.FP16_MAX_ABS_DIFF


def test_verify_variants_refuses_a_wrong_fp32_file(tmp_path: Path) -> None:
    paths = _save_variants(tmp_path, tiny_fp16_model())
    # The fp32 file of another model: same interface, other weights.
    other = tiny_fp16_model()
    (w2,) = [t for t in other.graph.initializer if t.name == "w2"]
    w2.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(w2), "w2"))
    onnx.save(variants.build_variants(other, "output", "batch")["cpu-fp32"], str(paths["cpu-fp32"]))
    with pytest.raises(FetchError, match=r"^cpu-fp32 diverges from original"):
        variants.verify_variants(paths, "input", "output", (1, 3, H, W))


def test_synth_batch_is_normalised_photo_like_and_deterministic() -> None:
    batch = variants.synth_batch((1, 3, 16, 24), 2)
    assert batch.shape == (2, 3, 16, 24) and batch.dtype == np.float32
    # pixel / 255 - 0.5, as the client normalises.
    assert batch.min() >= -0.5 and batch.max() <= 0.5
    np.testing.assert_array_equal(batch, variants.synth_batch((1, 3, 16, 24), 2))
    assert not np.array_equal(batch[0], batch[1])  # two different photos
