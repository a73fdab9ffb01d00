"""Tests for models/int8_recipe.py: the recipe's choices, as pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationMethod
from onnxruntime.quantization.calibrate import TensorData, TensorsData

from tests.models.fakes import (
    FLAGS_AVX512_VNNI,
    FLAGS_AVX_VNNI,
    FLAGS_PLAIN,
    PORTABLE_FP32,
    VNNI_FP32,
    cpuinfo_text,
    load_script,
    tiny_isnet,
    without_stage,
)

int8_recipe = load_script("int8_recipe")


# ---------------------------------------------------------------- recipe choice


@pytest.mark.parametrize(
    ("text", "recipe"),
    [
        (cpuinfo_text(FLAGS_PLAIN), "portable"),
        (cpuinfo_text(FLAGS_AVX512_VNNI), "vnni"),
        (cpuinfo_text(FLAGS_AVX_VNNI), "vnni"),
        # ARM: "Features", no "flags" line, even with a vnni-like word in it.
        ("processor\t: 0\nFeatures\t: fp asimd avx512_vnni\nCPU part\t: 0xd0c\n", "portable"),
        # Only the flags line counts: "vmx flags" and "bugs" are other lists.
        ("flags\t\t: sse2 avx2\nvmx flags\t: avx512_vnni\nbugs\t\t: avx_vnni\n", "portable"),
        # A word that merely contains the flag's name is not the flag.
        ("flags\t\t: sse2 avx512_vnni_x xavx_vnni\n", "portable"),
        ("", "portable"),
    ],
    ids=["zen3", "avx512-vnni", "avx-vnni", "arm", "other-lists", "lookalikes", "empty"],
)
def test_recipe_follows_the_cpu_flags(text: str, recipe: str) -> None:
    assert int8_recipe.choose_recipe(int8_recipe.parse_cpu_flags(text)).name == recipe


def test_parse_cpu_flags_reads_every_word_of_the_flags_lines() -> None:
    text = "processor\t: 0\nflags\t\t: fpu  sse2\tavx2\nprocessor\t: 1\nflags\t: fpu sha_ni\n"
    assert int8_recipe.parse_cpu_flags(text) == {"fpu", "sse2", "avx2", "sha_ni"}


def test_cpu_flags_reads_the_file_and_is_empty_without_one(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo_text("sse2 avx_vnni"))
    assert int8_recipe.cpu_flags(path) == {"sse2", "avx_vnni"}
    assert int8_recipe.cpu_flags(tmp_path / "absent") == set()
    assert Path("/proc/cpuinfo") == int8_recipe.CPUINFO


def test_recipes_differ_where_vnni_allows_it() -> None:
    # reduce_range (7-bit weights) is what keeps a CPU without VNNI from
    # overflowing its int16 accumulation; VNNI quantises the first conv.
    assert (
        int8_recipe.Recipe(
            name="portable", reduce_range=True, fp32_bottom_blocks=None, quantize_first_conv=False
        )
        == int8_recipe.PORTABLE
    )
    assert (
        int8_recipe.Recipe(
            name="vnni",
            reduce_range=False,
            fp32_bottom_blocks=("stage5/rebnconv1d", "stage6/rebnconvin", "stage6/rebnconv3d"),
            quantize_first_conv=True,
        )
        == int8_recipe.VNNI
    )


# ---------------------------------------------------------------- node names


@pytest.mark.parametrize(
    ("name", "stage", "block", "encoder"),
    [
        ("/stage2d/rebnconv1/conv_s1/Conv", "stage2d", "stage2d/rebnconv1", False),
        ("/stage5/rebnconv1d/conv_s1/Conv", "stage5", "stage5/rebnconv1d", True),
        ("/stage5/rebnconv1d/Relu", "stage5", "stage5/rebnconv1d", True),
        ("/stage5/Add", "stage5", "", True),
        ("/stage1", "", "", False),
        ("stage1/rebnconvin/conv_s1/Conv", "", "rebnconvin/conv_s1", False),
        ("/Resize_3", "", "", False),
        ("/side1/Conv", "", "", False),
        ("/conv_in/Conv", "", "", True),
        ("/conv_in", "", "", False),
        ("/pool12/MaxPool", "", "", True),
        ("/Concat_2", "", "", False),
    ],
)
def test_node_names_give_stage_block_and_side(
    name: str, stage: str, block: str, encoder: bool
) -> None:
    assert int8_recipe.stage_of(name) == stage
    assert int8_recipe.block_of(name) == block
    assert int8_recipe.is_encoder_node(name) is encoder


def test_check_graph_accepts_the_isnet_layout() -> None:
    int8_recipe.check_graph(tiny_isnet())


@pytest.mark.parametrize("stage", sorted(int8_recipe.EXPECTED_STAGES))
def test_check_graph_names_a_missing_stage(stage: str) -> None:
    with pytest.raises(int8_recipe.QuantizeError) as info:
        int8_recipe.check_graph(without_stage(tiny_isnet(), stage))
    assert str(info.value) == f"unexpected graph: stages ['{stage}'] missing, inputs ['input']"


def test_expected_stages_are_isnets_six_and_five_decoders() -> None:
    assert {
        *(f"stage{i}" for i in range(1, 7)),
        *(f"stage{i}d" for i in range(1, 6)),
    } == int8_recipe.EXPECTED_STAGES


def test_check_graph_refuses_other_inputs() -> None:
    model = tiny_isnet()
    model.graph.input[0].name = "image"
    with pytest.raises(int8_recipe.QuantizeError, match=r"stages \[\] missing, inputs \['image'\]"):
        int8_recipe.check_graph(model)
    model = tiny_isnet()
    model.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1]))
    with pytest.raises(int8_recipe.QuantizeError, match=r"inputs \['input', 'mask'\]"):
        int8_recipe.check_graph(model)


@pytest.mark.parametrize(("name", "expected"), [("PORTABLE", PORTABLE_FP32), ("VNNI", VNNI_FP32)])
def test_nodes_to_keep_fp32_per_recipe(name: str, expected: list[str]) -> None:
    assert int8_recipe.nodes_to_keep_fp32(tiny_isnet(), getattr(int8_recipe, name)) == expected


def test_top_level_node_without_inputs_is_quantised() -> None:
    # all() of no parents is True: a Constant must not count as "fed by fp32".
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["a"], name="/conv_in/Conv"),
        helper.make_node("Relu", ["a"], ["b"], name="/stage6/rebnconvin/relu_s1/Relu"),
        helper.make_node("Constant", [], ["c"], name="/Constant", value_float=1.0),
        helper.make_node("Add", ["b", "c"], ["d"], name="/Add"),
        helper.make_node("Relu", ["d"], ["e"], name="/stage1d/rebnconv1d/relu_s1/Relu"),
        helper.make_node("Relu", ["e"], ["f"], name="/side1/Relu"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [], []))
    keep = int8_recipe.nodes_to_keep_fp32(model, int8_recipe.VNNI)
    # The Add is fed by the kept Relu and by a Constant that is not kept.
    assert keep == ["/stage6/rebnconvin/relu_s1/Relu", "/side1/Relu"]
    keep = int8_recipe.nodes_to_keep_fp32(model, int8_recipe.PORTABLE)
    assert keep == ["/stage6/rebnconvin/relu_s1/Relu", "/conv_in/Conv", "/side1/Relu"]


def test_tensor_producers_maps_outputs_to_node_names() -> None:
    producers = int8_recipe.tensor_producers(tiny_isnet())
    assert producers["/stage5/Add_output_0"] == "/stage5/Add"
    assert producers["output"] == "/Sigmoid"
    assert "input" not in producers and "/conv_in/Conv.weight" not in producers


# ---------------------------------------------------------------- ranges


class FakeCalibrator:
    """Stands in for ORT's HistogramCalibrater: its range is the percentile set."""

    def __init__(self, names: Sequence[str]) -> None:
        self.collector = SimpleNamespace(percentile=None)
        self.names = names
        self.seen: list[float] = []

    def compute_data(self) -> TensorsData:
        p = float(self.collector.percentile)
        self.seen.append(p)
        data = {
            name: TensorData(lowest=np.float32(-p), highest=np.float32(p)) for name in self.names
        }
        return TensorsData(CalibrationMethod.Percentile, data)


def test_tensor_ranges_use_the_encoder_percentile_only_for_encoder_tensors() -> None:
    producers = {
        "s1": "/stage1/rebnconvin/conv_s1/Conv",
        "s5": "/stage5/Add",
        "pool": "/pool12/MaxPool",
        "conv_in": "/conv_in/Conv",
        "d1": "/stage1d/rebnconv1d/relu_s1/Relu",
        "up": "/Resize_2",
        "side": "/side1/Conv",
    }
    calibrator = FakeCalibrator(["input", *producers])
    ranges = int8_recipe.tensor_ranges(calibrator, producers)
    assert calibrator.seen == [int8_recipe.ENCODER_PERCENTILE, int8_recipe.DECODER_PERCENTILE]
    assert ranges.calibration_method == CalibrationMethod.Percentile
    highest = {name: float(ranges[name].range_value[1]) for name in ranges}
    enc, dec = float(np.float32(99.9995)), float(np.float32(99.98))
    assert highest == {
        # The graph input has no producer: it feeds conv_in, an encoder node.
        "input": enc,
        "s1": enc,
        "s5": enc,
        "pool": enc,
        "conv_in": enc,
        "d1": dec,
        "up": dec,
        "side": dec,
    }
