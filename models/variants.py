"""The serving variants of the shipped fp16 graph, and their check on the CPU.

Both are pruned to the single mask output and get a symbolic batch dimension:
``cuda-fp16`` keeps the fp16 compute as shipped, ``cpu-fp32`` has fp32 weights
and no Cast nodes. Before they are trusted, the original and both variants run
on synthetic photo-like images and must agree within limits.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from common import FetchError

if TYPE_CHECKING:
    # Imported lazily at run time: the no-op path must stay well under a
    # second, and importing onnx + onnxruntime + numpy alone costs ~0.4 s.
    import numpy as np
    import onnx

# Keys of the "files" object of a manifest row.
ORIGINAL = "original"
CPU_FP32 = "cpu-fp32"
CUDA_FP16 = "cuda-fp16"

# onnx.TensorProto enum values, repeated here so the fast path needs no onnx.
FLOAT = 1
FLOAT16 = 10

# The fp16 variant is the same graph as the original, but onnxruntime places
# its fp16->fp32 fallback casts differently once the graph is pruned (measured
# 3e-4); fp32 skips the fp16 rounding of activations (measured 4e-4 after the
# per-image min-max normalisation the client applies). Limits leave headroom.
FP16_MAX_ABS_DIFF = 5e-3
FP32_MAX_NORMALISED_DIFF = 2e-2


# --------------------------------------------------------------------------
# Graph transforms
# --------------------------------------------------------------------------


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _reject_subgraphs(graph: onnx.GraphProto) -> None:
    # The walks below only look at the top-level graph; If/Loop bodies could
    # reference outer tensors invisibly, so fail loudly rather than mis-prune.
    import onnx

    for node in graph.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise FetchError(f"node {node.name!r} ({node.op_type}) has a subgraph: unsupported")


def topological_sort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reorder nodes so every producer precedes its consumers.

    The shipped graph breaks this ONNX rule (its fp16 converter appended the
    Cast nodes at the end): onnxruntime copes, but the checker, shape
    inference and the reverse walk in prune() need the order. Ties keep the
    original order so the output is deterministic.
    """
    out = _copy(model)
    graph = out.graph
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    consumers: dict[int, set[int]] = {i: set() for i in range(len(nodes))}
    pending = [0] * len(nodes)
    for i, node in enumerate(nodes):
        parents = {producer[name] for name in node.input if name in producer}
        pending[i] = len(parents)
        for parent in parents:
            consumers[parent].add(i)
    ready = [i for i, count in enumerate(pending) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for child in consumers[i]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(nodes):
        raise FetchError("graph has a cycle: cannot sort it topologically")
    sorted_nodes = [nodes[i] for i in order]
    del graph.node[:]
    graph.node.extend(sorted_nodes)
    return out


def prune(model: onnx.ModelProto, keep_output: str) -> onnx.ModelProto:
    """Keep only graph output `keep_output` and what it depends on."""
    _reject_subgraphs(model.graph)
    out = topological_sort(model)
    graph = out.graph
    outputs = [o for o in graph.output if o.name == keep_output]
    if not outputs:
        raise FetchError(f"model has no output {keep_output!r}")
    needed = {keep_output}
    kept = []
    # In topological order one reverse pass sees every consumer before its
    # producer.
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    kept.reverse()
    initializers = [t for t in graph.initializer if t.name in needed]
    initializer_names = {t.name for t in graph.initializer}
    # Real inputs stay even if unused so the serving interface never changes.
    inputs = [i for i in graph.input if i.name in needed or i.name not in initializer_names]
    value_info = [v for v in graph.value_info if v.name in needed]
    for field, items in (
        (graph.node, kept),
        (graph.output, outputs),
        (graph.initializer, initializers),
        (graph.input, inputs),
        (graph.value_info, value_info),
    ):
        del field[:]
        field.extend(items)
    return out


def make_batch_symbolic(model: onnx.ModelProto, dim_name: str = "batch") -> onnx.ModelProto:
    """Replace the leading dim of every graph input and output with `dim_name`."""
    out = _copy(model)
    graph = out.graph
    initializer_names = {t.name for t in graph.initializer}
    for value in [*graph.input, *graph.output]:
        if value.name in initializer_names:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise FetchError(f"{value.name!r} has no shape to make batch-symbolic")
        dims[0].dim_param = dim_name  # oneof: clears dim_value
    # Intermediate shapes recorded by the exporter hard-code batch 1; runtimes
    # infer them again, so drop them rather than let them contradict batch N.
    del graph.value_info[:]
    return out


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor, via ONNX type inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        types[value.name] = value.type.tensor_type.elem_type
    return types


def _tensor_to_fp32(tensor: onnx.TensorProto) -> onnx.TensorProto:
    import numpy as np
    from onnx import numpy_helper

    array = numpy_helper.to_array(tensor).astype(np.float32)
    return numpy_helper.from_array(array, tensor.name)


def _convert_fp16_tensors(graph: onnx.GraphProto) -> None:
    for tensor in graph.initializer:
        if tensor.data_type == FLOAT16:
            tensor.CopyFrom(_tensor_to_fp32(tensor))
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t") and attr.t.data_type == FLOAT16:
                attr.t.CopyFrom(_tensor_to_fp32(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT16:
                attr.i = FLOAT
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == FLOAT16:
            value.type.tensor_type.elem_type = FLOAT


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def _cast_target(node: onnx.NodeProto) -> int:
    # Looked up by name: newer opsets give Cast a second attribute, `saturate`.
    target: int = next(attr.i for attr in node.attribute if attr.name == "to")
    return target


def drop_identity_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove Cast nodes whose input already has the target type."""
    out = _copy(model)
    graph = out.graph
    types = elem_types(out)
    identities = [
        node
        for node in graph.node
        if node.op_type == "Cast" and types.get(node.input[0]) == _cast_target(node)
    ]
    outputs = {o.name for o in graph.output}
    sources = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    removed: set[int] = set()
    for node in identities:
        src, dst = node.input[0], node.output[0]
        if dst not in outputs:
            # Consumers read the source directly.
            for other in graph.node:
                for i, name in enumerate(other.input):
                    if name == dst:
                        other.input[i] = src
        elif src not in sources and src not in outputs:
            # Graph output names are the public interface: keep `dst` and make
            # the producer of `src` write it directly instead.
            _rename_tensor(graph, src, dst)
        else:
            # Input wired straight to an output: a node is still needed.
            node.op_type = "Identity"
            del node.attribute[:]
            continue
        removed.add(id(node))
    kept = [node for node in graph.node if id(node) not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    return out


def to_fp32(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and compute -> fp32, dropping the now-pointless Casts."""
    out = _copy(model)
    graph = out.graph
    _reject_subgraphs(graph)
    _convert_fp16_tensors(graph)
    # Recorded intermediate types say fp16; let inference recompute them.
    del graph.value_info[:]
    out = drop_identity_casts(out)
    leftover = sorted(name for name, t in elem_types(out).items() if t == FLOAT16)
    if leftover:
        raise FetchError(f"fp16 tensors remain after conversion: {leftover[:5]}")
    return out


def build_variants(
    original: onnx.ModelProto, output_name: str, batch_dim: str
) -> dict[str, onnx.ModelProto]:
    """The two serving variants of `original`, by their manifest "files" key."""
    import onnx

    serving = make_batch_symbolic(prune(original, output_name), batch_dim)
    variants = {CUDA_FP16: serving, CPU_FP32: to_fp32(serving)}
    for model in variants.values():
        onnx.checker.check_model(model, full_check=True)
    return variants


def describe(model: onnx.ModelProto) -> str:
    graph = model.graph
    casts = sum(1 for node in graph.node if node.op_type == "Cast")
    fp16 = sum(1 for t in graph.initializer if t.data_type == FLOAT16)
    return (
        f"{len(graph.node)} nodes, {casts} Cast, {len(graph.initializer)} initializers "
        f"({fp16} fp16), outputs {[o.name for o in graph.output]}"
    )


# --------------------------------------------------------------------------
# Verification on the CPU
# --------------------------------------------------------------------------


def synth_image(height: int, width: int, variant: int = 0) -> np.ndarray:
    """A deterministic, photo-like RGB image (3, H, W) in 0..255.

    Smooth background gradient plus a shaded, soft-edged blob as "subject":
    random noise would make the mask meaningless and hide real divergence.
    """
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y /= max(height - 1, 1)
    x /= max(width - 1, 1)
    background = np.stack([90 + 100 * y, 140 + 60 * y, 210 - 90 * y + 20 * x])
    cx, cy = 0.5 + 0.12 * variant, 0.55 - 0.05 * variant
    d = ((x - cx) / 0.22) ** 2 + ((y - cy) / 0.33) ** 2
    mask = 1.0 / (1.0 + np.exp(np.minimum((d - 1.0) * 12.0, 50.0)))  # clip: no exp overflow
    shade = 1.0 - 0.45 * np.sqrt(np.minimum(d, 1.0))
    subject = np.stack([220 * shade, 130 * shade, 90 * shade + 30 * y])
    image: np.ndarray = (background * (1 - mask) + subject * mask).astype(np.float32)
    return image


def synth_batch(input_shape: Sequence[int], batch: int) -> np.ndarray:
    import numpy as np

    _, _, height, width = input_shape
    images = [synth_image(height, width, variant=i) for i in range(batch)]
    # Same normalisation the client applies: pixel / 255 - 0.5.
    batched: np.ndarray = (np.stack(images) / 255.0 - 0.5).astype(np.float32)
    return batched


def run_cpu(path: Path, input_name: str, output_name: str, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # fp16-on-CPU fallback warnings are expected
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    output: np.ndarray = session.run([output_name], {input_name: batch})[0]
    return output


def minmax(array: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation, as the client does to the mask."""
    import numpy as np

    axes = tuple(range(1, array.ndim))
    low = array.min(axis=axes, keepdims=True)
    high = array.max(axis=axes, keepdims=True)
    scaled: np.ndarray = (array - low) / np.maximum(high - low, 1e-8)
    return scaled


def compare_outputs(reference: np.ndarray, fp16: np.ndarray, fp32: np.ndarray) -> dict[str, float]:
    """Check shapes and agreement; `fp32` is a batch of 2 whose first item matches."""
    import numpy as np

    expected_batch = (2, *reference.shape[1:])
    if fp16.shape != reference.shape or fp32.shape != expected_batch:
        raise FetchError(
            f"shape mismatch: original {reference.shape}, {CUDA_FP16} {fp16.shape}, "
            f"{CPU_FP32} batch 2 {fp32.shape} (expected {expected_batch})"
        )
    diffs = {
        "fp16_max_abs": float(np.abs(fp16 - reference).max()),
        "fp32_max_abs": float(np.abs(fp32[:1] - reference).max()),
        "fp32_max_abs_minmax": float(np.abs(minmax(fp32[:1]) - minmax(reference)).max()),
        "fp32_mean_abs": float(np.abs(fp32[:1] - reference).mean()),
    }
    if diffs["fp16_max_abs"] > FP16_MAX_ABS_DIFF:
        raise FetchError(f"{CUDA_FP16} diverges from original: {diffs}")
    if diffs["fp32_max_abs_minmax"] > FP32_MAX_NORMALISED_DIFF:
        raise FetchError(f"{CPU_FP32} diverges from original: {diffs}")
    return diffs


def verify_variants(
    path: Mapping[str, Path], input_name: str, output_name: str, input_shape: Sequence[int]
) -> dict[str, float]:
    """Three CPU runs (original, fp16, fp32 with batch 2) - the model is slow on CPU.

    `path` maps each manifest "files" key to the file saved under it.
    """
    batch = synth_batch(input_shape, 2)
    reference = run_cpu(path[ORIGINAL], input_name, output_name, batch[:1])
    fp16 = run_cpu(path[CUDA_FP16], input_name, output_name, batch[:1])
    fp32 = run_cpu(path[CPU_FP32], input_name, output_name, batch)
    return compare_outputs(reference, fp16, fp32)
