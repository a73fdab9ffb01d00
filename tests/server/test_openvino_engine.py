"""openvino_engine.py and load_engine on a tiny stand-in model (no real weights):
precision resolution, the engine chosen, OpenVINO's output against ONNX Runtime's
for the same file, batches, concurrent runs, the compiled-model cache."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from server.engine import ModelMissing, OnnxEngine, load_engine
from server.openvino_engine import OpenVinoEngine, PrecisionUnsupported, resolve_precision
from server.settings import Settings


def brightness_model(path: Path) -> Path:
    """(N, 3, 1024, 1024) -> (N, 1, 1024, 1024): sigmoid(8 * channel mean), as IS-Net's
    output is shaped, with a symbolic batch as the prepared files have."""
    gain = helper.make_tensor("gain", TensorProto.FLOAT, [], [8.0])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["mean", "gain"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["output"]),
        ],
        "brightness",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 1024, 1024])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, 1024, 1024])],
        [gain],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, path)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        cache_dir=tmp_path / "cache",
        model_path=brightness_model(tmp_path / "brightness.onnx"),
        provider="cpu",
        precision="fp32",
    )


def batch(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    return (rng.random((n, 3, 1024, 1024), dtype=np.float32) - 0.5).astype(np.float32)


# --- precision ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "capabilities", "resolved"),
    [
        ("auto", ["FP32", "BF16", "INT8"], "bf16"),
        ("auto", ["FP32", "INT8", "BIN"], "fp32"),
        ("fp32", ["FP32", "BF16"], "fp32"),
        ("bf16", ["FP32", "BF16"], "bf16"),
        ("int8", ["FP32"], "int8"),
    ],
)
def test_precision_is_resolved_from_openvinos_capabilities(
    asked: str, capabilities: list[str], resolved: str
) -> None:
    assert resolve_precision(asked, capabilities) == resolved


def test_bf16_is_refused_on_a_cpu_without_it() -> None:
    with pytest.raises(PrecisionUnsupported) as refused:
        resolve_precision("bf16", ["FP32", "INT8"])
    assert str(refused.value) == (
        "MATTE_PRECISION=bf16 needs a CPU with AMX or AVX-512 BF16, and OpenVINO reports "
        "none here (its capabilities: FP32, INT8); use fp32 or auto"
    )


def test_an_unknown_precision_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", ["FP32"])


# --- the engine chosen ----------------------------------------------------------------------


def test_auto_runs_openvino_on_the_cpu(settings: Settings) -> None:
    engine = load_engine(settings)
    assert isinstance(engine, OpenVinoEngine)
    assert (engine.engine, engine.provider, engine.precision) == ("openvino", "cpu", "fp32")
    assert engine.model_file == str(settings.model_path)


def test_onnxruntime_on_request(settings: Settings) -> None:
    engine = load_engine(dataclasses.replace(settings, engine="onnxruntime"))
    assert isinstance(engine, OnnxEngine)
    assert (engine.engine, engine.provider, engine.precision) == ("onnxruntime", "cpu", "fp32")


def test_bf16_on_onnxruntime_is_refused(settings: Settings) -> None:
    asked = dataclasses.replace(settings, engine="onnxruntime", precision="bf16")
    with pytest.raises(PrecisionUnsupported, match="bf16 runs on OpenVINO only"):
        load_engine(asked)


def test_a_missing_file_says_how_to_get_it(tmp_path: Path) -> None:
    missing = Settings(cache_dir=tmp_path, model_path=tmp_path / "nope.onnx", provider="cpu")
    with pytest.raises(ModelMissing, match="run `make model`"):
        load_engine(missing)


# --- what it computes -----------------------------------------------------------------------


def test_openvino_gives_onnxruntimes_output(settings: Settings) -> None:
    openvino = OpenVinoEngine.load(settings)
    onnxruntime = OnnxEngine.load(settings)
    for n in (1, 3):
        images = batch(n)
        ours, theirs = openvino.run(images), onnxruntime.run(images)
        assert ours.shape == theirs.shape == (n, 1024, 1024)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # Not a constant: bright and dark inputs differ.
    assert ours.min() < 0.2 and ours.max() > 0.8


def test_each_run_gets_its_own_output(settings: Settings) -> None:
    # The request's buffer is reused by its next run; results handed out must not change.
    engine = OpenVinoEngine.load(settings)
    first = engine.run(np.full((1, 3, 1024, 1024), 0.5, dtype=np.float32))
    engine.run(np.full((1, 3, 1024, 1024), -0.5, dtype=np.float32))
    assert first.min() > 0.9


def test_concurrent_runs_on_two_streams(settings: Settings) -> None:
    two = dataclasses.replace(settings, workers=2)
    engine = OpenVinoEngine.load(two)
    inputs = [batch(1) * sign for sign in (1.0, -1.0, 1.0, -1.0)]
    expected = [OnnxEngine.load(settings).run(images) for images in inputs]
    outputs: list[np.ndarray | None] = [None] * len(inputs)

    def run(index: int) -> None:
        outputs[index] = engine.run(inputs[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for output, wanted in zip(outputs, expected, strict=True):
        assert output is not None
        np.testing.assert_allclose(output, wanted, atol=1e-5)


def test_the_compiled_model_is_cached_under_the_cache_dir(settings: Settings) -> None:
    OpenVinoEngine.load(settings)
    cache = settings.cache_dir / "openvino"
    assert cache.is_dir() and any(cache.iterdir())


def test_its_threads_are_not_pinned_to_cores(settings: Settings) -> None:
    # Pinned, the model's threads cannot move off a core that a stage around the model
    # (decode, resize, encode) holds: 4 MP at c=4 ran 2.52 images/s pinned, 2.90 not
    # (benchmarks/PIPELINE.md). One stream per worker, the cores split between them.
    engine = OpenVinoEngine.load(dataclasses.replace(settings, workers=2, intra_op_threads=1))
    compiled = engine._compiled
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    assert compiled.get_property("NUM_STREAMS") == 2
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 2
