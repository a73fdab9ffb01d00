"""Tests for models/quantize.py on a tiny IS-Net-shaped graph and tiny photos.

The graph (tests/models/fakes.py) has IS-Net's node names, which the recipe
finds its stages by, but a handful of 2-channel convs, so a whole
calibration and quantisation takes about a second; the real model is only
used by tests/models/test_int8.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image

from server.isnet import to_tensor
from tests.models.fakes import (
    FLAGS_AVX512_VNNI,
    FLAGS_PLAIN,
    PORTABLE_FP32,
    VNNI_FP32,
    cpuinfo_text,
    load_script,
    photo,
    tiny_isnet,
    tiny_isnet_bytes,
    without_stage,
    write_photos,
)

quantize = load_script("quantize")
int8_recipe = load_script("int8_recipe")


MODEL = "isnet-general-use"


# ---------------------------------------------------------------- setup


@dataclasses.dataclass
class Setup:
    """A cache holding the tiny fp32 model, two calibration photos and a cpuinfo."""

    cache: Path
    photos: Path
    cpuinfo: Path

    @property
    def model_dir(self) -> Path:
        return self.cache / MODEL

    @property
    def source(self) -> Path:
        return self.model_dir / "cpu-fp32.onnx"

    @property
    def target(self) -> Path:
        return self.model_dir / "cpu-int8.onnx"

    @property
    def stamp(self) -> Path:
        return self.model_dir / "int8.json"

    def ensure(self, force: bool = False, log: Callable[[str], None] | None = None) -> Path:
        return quantize.ensure_int8(  # type: ignore[no-any-return]
            self.cache,
            force=force,
            log=log or (lambda _: None),
            calibration_dir=self.photos,
            cpuinfo=self.cpuinfo,
        )


def make_setup(root: Path, flags: str = FLAGS_PLAIN) -> Setup:
    setup = Setup(cache=root / "cache", photos=root / "photos", cpuinfo=root / "cpuinfo")
    setup.model_dir.mkdir(parents=True)
    setup.source.write_bytes(tiny_isnet_bytes())
    write_photos(setup.photos)
    setup.cpuinfo.write_text(cpuinfo_text(flags))
    return setup


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


@dataclasses.dataclass
class BuildCalls:
    recipes: list[str] = dataclasses.field(default_factory=list)
    # What the next build writes as its candidate; None copies the source.
    candidate: bytes | None = None


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> Iterator[BuildCalls]:
    """Replace calibration + quantisation by writing a given model; records each call.

    The stamp and the gate are ensure_int8's own logic; they need a candidate
    file, not a real int8 one. By default the candidate is the fp32 model
    itself, whose masks match exactly.
    """
    calls = BuildCalls()

    def build(
        source: Path,
        target: Path,
        photos: Sequence[Path],
        recipe: Any,
        workdir: Path,
        log: Callable[[str], None],
    ) -> None:
        calls.recipes.append(recipe.name)
        assert workdir == target.parent and workdir.parent == source.parent
        if calls.candidate is None:
            shutil.copyfile(source, target)
        else:
            target.write_bytes(calls.candidate)

    monkeypatch.setattr(quantize, "build", build)
    yield calls


@pytest.fixture
def fake_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score every photo 1.0 without running the models: for tests of the stamp alone."""

    def compare(reference: Path, candidate: Path, photos: Sequence[Path]) -> dict[str, float]:
        return {photo.stem: 1.0 for photo in photos}

    monkeypatch.setattr(quantize, "compare", compare)


def leftovers(model_dir: Path) -> list[str]:
    """Work directories ensure_int8 should have removed."""
    return sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".int8-"))


# ---------------------------------------------------------------- calibration data


def test_load_rgb_drops_alpha_and_applies_exif_rotation(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 10  # almost transparent: the colour is kept, alpha dropped
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = quantize.load_rgb(tmp_path / "a.png")
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == 200).all() and (rgb[..., 1:] == 0).all()

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.fromarray(photo(64, 48, (0.3, 0.5))).save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert quantize.load_rgb(tmp_path / "r.jpg").shape == (64, 48, 3)


def test_augment_is_the_photo_mirrored_cropped_and_halved() -> None:
    # 100x130: a tenth is 10 and 13 pixels (a ninth would be 11 and 14).
    rgb = np.random.default_rng(1).integers(0, 256, (100, 130, 3), dtype=np.uint8)
    same, mirrored, cropped, half = quantize.augment(rgb)
    np.testing.assert_array_equal(same, rgb)
    np.testing.assert_array_equal(mirrored, rgb[:, ::-1])
    np.testing.assert_array_equal(cropped, rgb[10:90, 13:117])
    expected_half = np.asarray(Image.fromarray(rgb).resize((65, 50), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(half, expected_half[:, ::-1])
    for variant in (same, mirrored, cropped, half):
        assert variant.flags.c_contiguous and variant.dtype == np.uint8


def test_augment_keeps_a_one_pixel_photo() -> None:
    rgb = np.full((1, 1, 3), 7, np.uint8)
    assert [v.shape for v in quantize.augment(rgb)] == [(1, 1, 3)] * 4


def test_calibration_inputs_are_four_model_inputs_a_photo(tmp_path: Path) -> None:
    paths = write_photos(tmp_path)
    inputs = list(quantize.calibration_inputs(paths))
    assert len(inputs) == 8
    assert {(x.shape, x.dtype) for x in inputs} == {((1, 3, 1024, 1024), np.dtype(np.float32))}
    rgb = quantize.load_rgb(paths[1])
    np.testing.assert_array_equal(inputs[4][0], to_tensor(rgb))
    np.testing.assert_array_equal(inputs[5][0], to_tensor(np.ascontiguousarray(rgb[:, ::-1])))


def test_calibration_photos_are_the_sorted_jpegs(tmp_path: Path) -> None:
    paths = write_photos(tmp_path)
    (tmp_path / "notes.txt").write_text("not a photo")
    Image.fromarray(photo(8, 8, (0.5, 0.5))).save(tmp_path / "c.png")
    assert quantize.calibration_photos(tmp_path) == paths
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(quantize.QuantizeError, match=r"^no calibration photos \(\*\.jpg\) in "):
        quantize.calibration_photos(empty)


def test_shipped_calibration_photos() -> None:
    names = [p.name for p in quantize.calibration_photos()]
    assert names == ["anime-girl-1.jpg", "car-1.jpg", "cloth-1.jpg", "plants-1.jpg"]


# ---------------------------------------------------------------- soft IoU


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 255, 255], [0, 255, 255], 1.0),
        ([0, 0], [0, 0], 1.0),  # nothing anywhere: the same mask
        ([255, 0], [0, 255], 0.0),
        ([255, 0], [255, 255], 0.5),
        ([255, 255, 0, 0], [255, 0, 0, 0], 0.5),
        ([100, 0], [200, 0], 0.5),
        ([51, 255], [255, 51], 0.2),
    ],
)
def test_soft_iou_is_sum_of_min_over_sum_of_max(
    a: list[int], b: list[int], expected: float
) -> None:
    iou = quantize.soft_iou(np.array(a, np.uint8), np.array(b, np.uint8))
    assert iou == pytest.approx(expected, abs=1e-12)
    assert quantize.soft_iou(np.array(b, np.uint8), np.array(a, np.uint8)) == iou


def test_mask_is_the_servers_mask_at_the_photo_size(tmp_path: Path) -> None:
    session = ort.InferenceSession(tiny_isnet_bytes(), providers=["CPUExecutionProvider"])
    rgb = photo(64, 48, (0.5, 0.5))
    mask = quantize.mask(session, rgb)
    assert mask.shape == (48, 64) and mask.dtype == np.uint8
    # The tiny model finds the bright subject: high inside it, low outside.
    assert mask[24, 32] > 200 and mask[2, 2] < 30 and mask[45, 60] < 30


def test_compare_scores_each_photo_by_name(tmp_path: Path) -> None:
    paths = write_photos(tmp_path / "photos")
    (tmp_path / "fp32.onnx").write_bytes(tiny_isnet_bytes())
    (tmp_path / "inverted.onnx").write_bytes(tiny_isnet_bytes(gain=-8.0))
    same = quantize.compare(tmp_path / "fp32.onnx", tmp_path / "fp32.onnx", paths)
    assert same == {"a-left": 1.0, "b-right": 1.0}
    inverted = quantize.compare(tmp_path / "fp32.onnx", tmp_path / "inverted.onnx", paths)
    assert list(inverted) == ["a-left", "b-right"]
    assert max(inverted.values()) < 0.5


# ---------------------------------------------------------------- stamp


def test_stamp_payload_records_recipe_source_and_photos(setup: Setup) -> None:
    photos = quantize.calibration_photos(setup.photos)
    payload = quantize.stamp_payload(setup.source, photos, int8_recipe.VNNI)
    stat = setup.source.stat()
    assert payload == {
        "recipe": 2,
        "variant": "vnni",
        "source": {"name": "cpu-fp32.onnx", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "calibration": {p.name: p.stat().st_size for p in photos},
    }
    assert quantize.RECIPE_VERSION == 2


def test_prepared_then_second_call_is_a_noop(setup: Setup, fake_build: BuildCalls) -> None:
    lines: list[str] = []
    assert setup.ensure(log=lines.append) == setup.target
    assert fake_build.recipes == ["portable"]
    photos = quantize.calibration_photos(setup.photos)
    payload = quantize.stamp_payload(setup.source, photos, int8_recipe.PORTABLE)
    assert json.loads(setup.stamp.read_text()) == payload
    assert setup.target.read_bytes() == setup.source.read_bytes()
    assert sorted(p.name for p in setup.model_dir.iterdir()) == [
        "cpu-fp32.onnx",
        "cpu-int8.onnx",
        "int8.json",
    ]  # no work directory or temporary file left behind
    assert lines[0] == (
        f"{MODEL}: soft IoU against cpu-fp32.onnx on the calibration photos: "
        "a-left 1.0000, b-right 1.0000"
    )
    assert lines[1].startswith(f"{MODEL}: wrote {setup.target} (")

    lines.clear()
    assert setup.ensure(log=lines.append) == setup.target
    assert fake_build.recipes == ["portable"]  # not built again
    assert lines == [f"{MODEL}: cpu-int8.onnx already prepared in {setup.model_dir}"]

    setup.ensure(force=True)
    assert fake_build.recipes == ["portable", "portable"]


def _with_doc(model: onnx.ModelProto, doc: str) -> onnx.ModelProto:
    model.doc_string = doc
    return model


def _touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def _rewrite_source(setup: Setup) -> None:
    # Same size, new mtime: what `make model --force` leaves behind.
    setup.source.write_bytes(setup.source.read_bytes())
    _touch(setup.source)


CHANGES: dict[str, Callable[[Setup], object]] = {
    "source-rewritten": _rewrite_source,
    "source-touched": lambda s: _touch(s.source),
    "source-resized": lambda s: onnx.save(_with_doc(tiny_isnet(), "resized"), str(s.source)),
    "photo-added": lambda s: Image.fromarray(photo(40, 40, (0.5, 0.5))).save(s.photos / "c.jpg"),
    "photo-removed": lambda s: (s.photos / "b-right.jpg").unlink(),
    "photo-changed": lambda s: Image.fromarray(photo(40, 30, (0.5, 0.5))).save(
        s.photos / "a-left.jpg"
    ),
    "target-deleted": lambda s: s.target.unlink(),
    "stamp-corrupt": lambda s: s.stamp.write_text("{not json"),
    "stamp-deleted": lambda s: s.stamp.unlink(),
    "stamp-older-recipe": lambda s: s.stamp.write_text(
        json.dumps({**json.loads(s.stamp.read_text()), "recipe": 1})
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_stamp_is_not_trusted_when_an_input_changed(
    change: str, setup: Setup, fake_build: BuildCalls, fake_compare: None
) -> None:
    setup.ensure()
    CHANGES[change](setup)
    setup.ensure()
    assert fake_build.recipes == ["portable", "portable"]
    photos = quantize.calibration_photos(setup.photos)
    payload = quantize.stamp_payload(setup.source, photos, int8_recipe.PORTABLE)
    assert json.loads(setup.stamp.read_text()) == payload


def test_a_cache_moved_to_a_vnni_cpu_is_rebuilt_for_it(
    setup: Setup, fake_build: BuildCalls, fake_compare: None
) -> None:
    setup.ensure()
    setup.cpuinfo.write_text(cpuinfo_text(FLAGS_AVX512_VNNI))
    setup.ensure()
    assert fake_build.recipes == ["portable", "vnni"]
    assert json.loads(setup.stamp.read_text())["variant"] == "vnni"


def test_a_failed_rebuild_leaves_no_stamp(
    setup: Setup, fake_build: BuildCalls, fake_compare: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.ensure()
    _touch(setup.source)

    def broken(*_: Any) -> None:
        raise RuntimeError("calibration ran out of memory")

    monkeypatch.setattr(quantize, "build", broken)
    with pytest.raises(RuntimeError):
        setup.ensure()
    # The old int8 file is still there, but nothing vouches for it any more.
    assert not setup.stamp.exists()
    assert leftovers(setup.model_dir) == []


def test_is_prepared_needs_the_same_stamp_and_the_target(setup: Setup) -> None:
    payload = {"recipe": 2, "variant": "portable"}
    assert not quantize.is_prepared(setup.model_dir, payload)  # no stamp
    setup.stamp.write_text(json.dumps(payload))
    assert not quantize.is_prepared(setup.model_dir, payload)  # no target
    setup.target.write_bytes(b"int8")
    assert quantize.is_prepared(setup.model_dir, payload)
    assert not quantize.is_prepared(setup.model_dir, {**payload, "variant": "vnni"})
    setup.stamp.write_text("[")
    assert not quantize.is_prepared(setup.model_dir, payload)


def test_missing_fp32_model_says_to_run_make_model(setup: Setup) -> None:
    setup.source.unlink()
    with pytest.raises(quantize.QuantizeError) as info:
        setup.ensure()
    assert str(info.value) == f"{setup.source} is missing: run `make model` first"
    assert list(setup.model_dir.iterdir()) == []


# ---------------------------------------------------------------- the gate


def test_gate_refuses_a_model_whose_masks_diverge(setup: Setup, fake_build: BuildCalls) -> None:
    fake_build.candidate = tiny_isnet_bytes(gain=-8.0)  # inverted masks
    with pytest.raises(
        quantize.QuantizeError, match=r"^int8 masks too far from fp32: soft IoU 0\."
    ):
        setup.ensure()
    assert not setup.target.exists() and not setup.stamp.exists()
    assert leftovers(setup.model_dir) == []


def test_gate_does_not_replace_a_good_model_with_a_bad_one(
    setup: Setup, fake_build: BuildCalls
) -> None:
    setup.ensure()
    good = setup.target.read_bytes()
    fake_build.candidate = tiny_isnet_bytes(gain=-8.0)
    with pytest.raises(quantize.QuantizeError):
        setup.ensure(force=True)
    assert setup.target.read_bytes() == good
    assert not setup.stamp.exists()


@pytest.mark.parametrize(
    ("scores", "passes"),
    [
        ({"a": quantize.MIN_SOFT_IOU, "b": 1.0}, True),
        ({"a": 1.0, "b": float(np.nextafter(quantize.MIN_SOFT_IOU, 0))}, False),
        # The worst photo decides: a good average must not hide one bad mask.
        ({"a": 0.96, "b": 1.0, "c": 1.0}, False),
    ],
    ids=["at-threshold", "just-below", "one-bad"],
)
def test_gate_threshold_is_the_worst_photos_soft_iou(
    scores: dict[str, float],
    passes: bool,
    setup: Setup,
    fake_build: BuildCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quantize, "compare", lambda *_: scores)
    if passes:
        setup.ensure()
        assert setup.target.is_file() and setup.stamp.is_file()
    else:
        worst = min(scores.values())
        with pytest.raises(quantize.QuantizeError, match=f"soft IoU {worst:.4f}$"):
            setup.ensure()
        assert not setup.target.exists() and not setup.stamp.exists()
    assert quantize.MIN_SOFT_IOU == 0.97


# ---------------------------------------------------------------- real quantisation


def _quantised(model: onnx.ModelProto) -> dict[str, dict[str, np.ndarray]]:
    """Each Conv whose weight is dequantised: its int weights, scales and zero points."""
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    out = {}
    for node in model.graph.node:
        dq = producers.get(node.input[1]) if node.op_type == "Conv" else None
        if dq is not None and dq.op_type == "DequantizeLinear":
            weight, scale, zero = (initializers[name] for name in dq.input)
            out[node.name] = {"weight": weight, "scale": scale, "zero": zero}
    return out


def _activation_zero_points(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {
        node.input[0]: initializers[node.input[2]]
        for node in model.graph.node
        if node.op_type == "QuantizeLinear"
    }


@dataclasses.dataclass
class Run:
    setup: Setup
    lines: list[str]
    model: onnx.ModelProto


@pytest.fixture(scope="module")
def portable_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real calibration + quantisation of the tiny graph (portable recipe)."""
    setup = make_setup(tmp_path_factory.mktemp("portable"))
    lines: list[str] = []
    setup.ensure(log=lines.append)
    return Run(setup, lines, onnx.load(str(setup.target)))


def test_quantisation_passes_the_gate_and_stamps(portable_run: Run) -> None:
    setup, lines = portable_run.setup, portable_run.lines
    assert [line for line in lines if "calibration inputs" in line] == [
        f"{MODEL}: calibration inputs done: 4",
        f"{MODEL}: calibration inputs done: 8",
    ]
    assert f"{MODEL}: quantised (portable recipe), 18 nodes kept in fp32" in lines
    (scores,) = [line for line in lines if "soft IoU" in line]
    values = [float(word.rstrip(",")) for word in scores.split()[-3::2]]
    assert len(values) == 2 and min(values) >= quantize.MIN_SOFT_IOU
    assert max(values) < 1.0  # really quantised, not a copy
    photos = quantize.calibration_photos(setup.photos)
    assert json.loads(setup.stamp.read_text()) == quantize.stamp_payload(
        setup.source, photos, int8_recipe.PORTABLE
    )
    assert leftovers(setup.model_dir) == []
    lines = []
    setup.ensure(log=lines.append)
    assert lines == [f"{MODEL}: cpu-int8.onnx already prepared in {setup.model_dir}"]


def test_portable_model_is_qdq_with_7_bit_per_channel_weights(portable_run: Run) -> None:
    model = portable_run.model
    convs = {node.name for node in model.graph.node if node.op_type == "Conv"}
    quantised = _quantised(model)
    # Exactly the convs the recipe does not keep in fp32 have int8 weights.
    assert set(quantised) == convs - set(PORTABLE_FP32)
    for weights in quantised.values():
        assert weights["weight"].dtype == np.int8 and weights["zero"].dtype == np.int8
        # 7 bits: |w| <= 64, the largest weight of every output channel at the top.
        assert np.abs(weights["weight"].astype(int)).max() == 64
        assert weights["scale"].shape == (2,)  # one scale per output channel
    zero_points = _activation_zero_points(model)
    assert {z.dtype for z in zero_points.values()} == {np.dtype(np.uint8)}
    # Symmetric histograms: a ReLU's range starts at its real minimum, 0.
    relus = [name for name in zero_points if name.endswith("Relu_output_0")]
    assert relus and all(int(zero_points[name]) == 0 for name in relus)


def test_vnni_model_has_8_bit_weights_and_a_quantised_first_conv(tmp_path: Path) -> None:
    # Built but not gated: only a VNNI CPU computes 8-bit weights without
    # int16 overflow, and the test must not depend on which CPU runs it.
    setup = make_setup(tmp_path)
    photos = quantize.calibration_photos(setup.photos)
    work = tmp_path / "work"
    work.mkdir()
    lines: list[str] = []
    quantize.build(setup.source, setup.target, photos[:1], int8_recipe.VNNI, work, lines.append)
    assert lines[-1] == f"{MODEL}: quantised (vnni recipe), 12 nodes kept in fp32"
    model = onnx.load(str(setup.target))
    convs = {node.name for node in model.graph.node if node.op_type == "Conv"}
    quantised = _quantised(model)
    assert "/conv_in/Conv" in quantised
    assert set(quantised) == convs - set(VNNI_FP32)
    for weights in quantised.values():
        assert np.abs(weights["weight"].astype(int)).max() == 127


def test_build_refuses_a_graph_that_is_not_isnet(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    onnx.save(without_stage(tiny_isnet(), "stage3d"), str(setup.source))
    with pytest.raises(quantize.QuantizeError, match=r"stages \['stage3d'\] missing"):
        setup.ensure()
    assert not setup.target.exists() and leftovers(setup.model_dir) == []


def test_collect_histograms_bins_abs_values_of_every_quantisable_tensor(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(tiny_isnet_bytes())
    photos = write_photos(tmp_path / "photos")[:1]
    lines: list[str] = []
    calibrator = quantize.collect_histograms(tmp_path / "m.onnx", tmp_path, photos, lines.append)
    assert lines == [f"{MODEL}: calibration inputs done: 4"]
    assert calibrator.method == "percentile"
    assert calibrator.num_bins == quantize.HISTOGRAM_BINS == 2048
    assert calibrator.symmetric is True
    histograms = calibrator.collector.histogram_dict
    assert "input" in histograms and "/stage5/Add_output_0" in histograms
    assert (tmp_path / "augmented.onnx").is_file()


# ---------------------------------------------------------------- command line


def test_main_reports_errors_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert quantize.main(["--cache-dir", str(tmp_path)]) == 1
    source = tmp_path / MODEL / "cpu-fp32.onnx"
    assert capsys.readouterr().err == f"error: {source} is missing: run `make model` first\n"


def test_main_uses_the_shipped_photos(
    setup: Setup,
    fake_build: BuildCalls,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quantize, "compare", lambda *_: {"p": 1.0})
    assert quantize.main(["--cache-dir", str(setup.cache)]) == 0
    assert setup.target.is_file()
    stamp = json.loads(setup.stamp.read_text())
    assert sorted(stamp["calibration"]) == [
        "anime-girl-1.jpg",
        "car-1.jpg",
        "cloth-1.jpg",
        "plants-1.jpg",
    ]
    expected = int8_recipe.choose_recipe(int8_recipe.cpu_flags()).name
    assert fake_build.recipes == [expected] and stamp["variant"] == expected
    assert "wrote" in capsys.readouterr().out


def test_parse_args_cache_dir_and_force() -> None:
    args = quantize.parse_args([], {"MATTE_CACHE_DIR": "/srv/m"})
    assert args.cache_dir == Path("/srv/m") and args.force is False
    args = quantize.parse_args(["--cache-dir", "/x", "--force"], {})
    assert args.cache_dir == Path("/x") and args.force is True
