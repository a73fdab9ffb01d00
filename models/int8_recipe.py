"""The INT8 recipe for IS-Net: which nodes stay fp32 and how ranges are clipped.

Pure functions of the graph and of the CPU's flags; models/quantize.py runs
them. Why these choices (measured soft IoUs, speed-ups): see the docstring of
models/quantize.py.

The recipe finds IS-Net's parts by node name, as the exporter wrote them:
``/stage2d/rebnconv1/conv_s1/Conv`` is a conv of decoder stage 2 (encoder
stages have no "d"), ``/conv_in/Conv`` the input conv, ``/pool12/MaxPool`` a
pool between encoder stages and top-level names such as ``/Resize_3`` the glue
of the decoder and the head.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx
    from onnxruntime.quantization.calibrate import HistogramCalibrater, TensorsData

CPUINFO = Path("/proc/cpuinfo")
INPUT_NAME = "input"

# Percentile calibration clips the top (100 - p)% of |activation| values.
# Measured on plants-1 around these values (8-bit weights): 99.999/99.9999 for
# the encoder and 99.97/99.99 for the decoder scored 0.972-0.981, against 0.982.
ENCODER_PERCENTILE = 99.9995
DECODER_PERCENTILE = 99.98
# The bottom of the U-Net (16x16 and 32x32 maps), where quantisation errors
# spread over the whole mask (see models/quantize.py's docstring).
BOTTOM_STAGES = ("stage5", "stage6", "stage5d")
# The stages the graph must have for the recipe to make sense.
EXPECTED_STAGES = frozenset(
    {f"stage{i}" for i in range(1, 7)} | {f"stage{i}d" for i in range(1, 6)}
)


@dataclass(frozen=True)
class Recipe:
    """What is quantised, and how; one per kind of CPU (see `choose_recipe`)."""

    name: str
    # 7-bit weights (see `quantize` in quantize.py).
    reduce_range: bool
    # Conv blocks of BOTTOM_STAGES kept in fp32, e.g. "stage5/rebnconv1d";
    # None keeps those stages whole. Their pools, concats and adds stay fp32
    # either way: they cost ~nothing at 32x32, and quantising them cost
    # plants-1 up to 0.04.
    fp32_bottom_blocks: tuple[str, ...] | None
    quantize_first_conv: bool


# The recipe for CPUs without VNNI (and other architectures): 2.3x.
PORTABLE = Recipe(
    name="portable",
    reduce_range=True,
    fp32_bottom_blocks=None,
    quantize_first_conv=False,
)
# With VNNI, 8-bit weights cannot overflow and are more accurate, which pays
# for quantising most of the bottom too: 2.9x. Kept in fp32 are the three
# convs that alone cost plants-1 0.005-0.015 when quantised: stage 5's output
# conv (its sum with the stage input spikes to 30x its 99.9th percentile, too
# much for 8 bits at any clipping), stage 6's input conv and its first
# decoder conv.
VNNI = Recipe(
    name="vnni",
    reduce_range=False,
    fp32_bottom_blocks=("stage5/rebnconv1d", "stage6/rebnconvin", "stage6/rebnconv3d"),
    # Quantised it is ~5 ms faster (no fp32 island at 512x512) and no worse.
    quantize_first_conv=True,
)


class QuantizeError(Exception):
    """A failure with a message meant for the user."""


# --------------------------------------------------------------------------
# Recipe choice
# --------------------------------------------------------------------------


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The x86 feature flags in the text of /proc/cpuinfo; empty where there
    are none (ARM's cpuinfo says "Features", not "flags")."""
    return {
        flag
        for line in cpuinfo.splitlines()
        if line.startswith("flags")
        for flag in line.partition(":")[2].split()
    }


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The x86 feature flags of this CPU; empty where unknown (not Linux, or not x86)."""
    try:
        return parse_cpu_flags(cpuinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return set()


def choose_recipe(flags: set[str]) -> Recipe:
    """VNNI where ORT's u8 x s8 kernels have it, else the portable recipe.

    Decided here, on the CPU that calibrates, because the int8 model is
    prepared on the machine that serves it (`make model-int8`); on a CPU
    without VNNI, 8-bit weights could overflow ORT's int16 accumulation.
    """
    return VNNI if flags & {"avx512_vnni", "avx_vnni"} else PORTABLE


# --------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------


def stage_of(node_name: str) -> str:
    """'/stage2d/rebnconv1/conv_s1/Conv' -> 'stage2d'; top-level '/Resize_3' -> ''."""
    parts = node_name.split("/")
    return parts[1] if len(parts) > 2 and parts[1].startswith("stage") else ""


def is_encoder_node(node_name: str) -> bool:
    """Encoder stages, the input conv and the pools between encoder stages."""
    stage = stage_of(node_name)
    if stage:
        return not stage.endswith("d")
    return node_name.startswith(("/conv_in/", "/pool"))


def check_graph(model: onnx.ModelProto) -> None:
    """Fail loudly if the graph is not the IS-Net the recipe was tuned on."""
    stages = {stage_of(node.name) for node in model.graph.node}
    missing = sorted(EXPECTED_STAGES - stages)
    inputs = [value.name for value in model.graph.input]
    if missing or inputs != [INPUT_NAME]:
        raise QuantizeError(f"unexpected graph: stages {missing} missing, inputs {inputs}")


def tensor_producers(model: onnx.ModelProto) -> dict[str, str]:
    return {output: node.name for node in model.graph.node for output in node.output}


def block_of(node_name: str) -> str:
    """'/stage5/rebnconv1d/conv_s1/Conv' -> 'stage5/rebnconv1d'; '/stage5/Add' -> ''."""
    parts = node_name.split("/")
    return "/".join(parts[1:3]) if len(parts) > 3 else ""


def is_fp32_in_bottom(node: onnx.NodeProto, recipe: Recipe) -> bool:
    """Whether a node of BOTTOM_STAGES stays fp32 under `recipe`."""
    if recipe.fp32_bottom_blocks is None or node.op_type not in ("Conv", "Relu"):
        return True
    return block_of(node.name) in recipe.fp32_bottom_blocks


def nodes_to_keep_fp32(model: onnx.ModelProto, recipe: Recipe) -> list[str]:
    """The recipe's part of the bottom, the glue fed only by it, the head
    and, unless the recipe quantises it, the first conv."""
    nodes = list(model.graph.node)  # topological order after pre-processing
    producers = tensor_producers(model)
    keep: list[str] = []
    for node in nodes:
        if stage_of(node.name) in BOTTOM_STAGES:
            if is_fp32_in_bottom(node, recipe):
                keep.append(node.name)
        elif not stage_of(node.name):
            # Pools, upsampling and concats between stages: if every input
            # comes from fp32 nodes, quantising here would only add the error
            # the stages are kept in fp32 to avoid (quantising just the
            # stage-6/5d concat cost plants-1 0.01).
            parents = [producers[name] for name in node.input if name in producers]
            if parents and all(parent in keep for parent in parents):
                keep.append(node.name)
    # The input conv sees raw pixels (the portable recipe keeps it; with
    # 8-bit weights quantising it cost nothing), and everything after the
    # last decoder node makes the logits whose tails the per-image min-max
    # normalisation magnifies (quantising side1 cost plants-1 0.007-0.009
    # with 8-bit weights). Both are <0.5% of the FLOPs.
    if not recipe.quantize_first_conv:
        keep.append(next(node.name for node in nodes if node.op_type == "Conv"))
    last_decoder = max(i for i, node in enumerate(nodes) if stage_of(node.name).endswith("d"))
    keep += [node.name for node in nodes[last_decoder + 1 :]]
    return list(dict.fromkeys(keep))


# --------------------------------------------------------------------------
# Activation ranges
# --------------------------------------------------------------------------


def tensor_ranges(calibrator: HistogramCalibrater, producers: Mapping[str, str]) -> TensorsData:
    """Ranges of encoder tensors at one percentile, all others at another."""
    from onnxruntime.quantization.calibrate import TensorsData

    ranges: dict[str, Any] = {}
    for percentile, encoder in ((ENCODER_PERCENTILE, True), (DECODER_PERCENTILE, False)):
        calibrator.collector.percentile = percentile
        with contextlib.redirect_stdout(io.StringIO()):
            computed = calibrator.compute_data()
        for name, data in computed.items():
            producer = producers.get(name, "/conv_in/")  # graph input: feeds conv_in
            if is_encoder_node(producer) == encoder:
                ranges[name] = data
    return TensorsData(computed.calibration_method, ranges)
