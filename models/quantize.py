#!/usr/bin/env python3
"""Prepare the statically quantised INT8 variant of IS-Net (MATTE_PRECISION=int8).

Usage: python models/quantize.py [--cache-dir DIR] [--force]

Reads <cache>/isnet-general-use/cpu-fp32.onnx (made by models/fetch.py) and:

1. does nothing if cpu-int8.onnx exists and the stamp int8.json records the
   current recipe, the fp32 file's size and mtime and the calibration photos
   (``--force`` redoes it);
2. runs onnxruntime.quantization's pre-processing (shape inference, graph
   clean-up) on the fp32 model;
3. calibrates with ORT's percentile calibrator on models/calibration/*.jpg,
   each photo also mirrored, cropped and halved (16 inputs, 1.5-2.5 min);
4. quantises to QDQ: uint8 activations, per-channel int8 weights, with part
   of the bottom of the U-Net and the output layers kept in fp32. The recipe
   depends on the CPU it runs on, which is the one that will serve the model:
   with VNNI, 8-bit weights and only three convs of the bottom in fp32; without
   (or off x86), 7-bit weights, the whole bottom and the input conv in fp32;
5. compares its masks with the fp32 model's on the calibration photos and only
   if every soft IoU is >= 0.97 moves cpu-int8.onnx into place and stamps it.

The default cache dir is $MATTE_CACHE_DIR, else ~/.cache/matte. The recipe
itself (what stays fp32, which percentiles, which CPU gets which) is
int8_recipe.py; this file calibrates, quantises, gates and stamps.

How the recipe was chosen (soft IoU of the int8 masks against fp32 on the
rembg fixtures; plants-1 is the hard photo, the others stay >= 0.99):

* MinMax ranges (= percentile 100): plants-1 0.18. One percentile for every
  tensor: 0.95 at best (99.995). IS-Net's encoder activations are tame (max
  <= 2.7x their 99.995th percentile) but its decoder has sparse spikes up to
  25x it, so the encoder gets a high percentile and the decoder a low one.
* Quantising the bottom of the U (stages 5, 6 and 5d, 16x16 and 32x32 maps)
  cost plants-1 2-4 points by itself: their errors spread over the whole mask.
  In fp32 they are 16% of the FLOPs.
* Portable recipe: anime-girl-1 0.998, car-1 0.998, cloth-1 0.999, plants-1
  0.980. Calibrated on three photos and tested on the held-out fourth:
  0.996, 0.998, 0.999, 0.978. About 2.3x faster than fp32 on a 2-core
  AVX-512 VNNI CPU (0.37 s against 0.85 s); all-int8 would be 3x but scored
  0.95.
* VNNI recipe: the bottom's fp32 convs were a third of the portable model's
  time. Quantising them one at a time (8-bit weights) found three that cost
  plants-1 0.005-0.015 each, and adds and concats of the bottom that cost up
  to 0.04 (stage 5's output spikes to 150 with a 99.9th percentile of 5: 8
  bits cannot hold it at any clipping). Everything else is quantised; per
  node the scores move by +-0.005 in no clear pattern, so the choice is the
  best of its neighbours, not a smooth optimum. anime-girl-1 0.997, car-1
  0.998, cloth-1 0.999, plants-1 0.975; 0.29 s against 0.84 s (2.9x).
  Calibrated on three photos: plants-1 0.967 when it is the held-out one,
  0.973-0.977 otherwise (the portable recipe: 0.976-0.978). Other picks that
  scored 0.977 with all four photos (e.g. a higher percentile for stages 5
  and 6) fell to 0.94 on one three-photo set; this one was the steadiest.
  The gate below still guards each build.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Run as a script, models/ is first on sys.path: these are its siblings.
from common import Log, cache_parser, write_atomic
from int8_recipe import (
    CPUINFO,
    INPUT_NAME,
    QuantizeError,
    Recipe,
    check_graph,
    choose_recipe,
    cpu_flags,
    nodes_to_keep_fp32,
    tensor_producers,
    tensor_ranges,
)

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import HistogramCalibrater, TensorsData

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION_DIR = ROOT / "models" / "calibration"
MODEL_NAME = "isnet-general-use"
SOURCE_NAME = "cpu-fp32.onnx"
TARGET_NAME = "cpu-int8.onnx"
STAMP_NAME = "int8.json"
# Bump whenever anything here or in int8_recipe.py changes the output, so
# caches get rebuilt.
RECIPE_VERSION = 2

# Quality gate on the calibration photos; tests/test_int8.py checks the same
# bound on the full-size fixtures.
MIN_SOFT_IOU = 0.97
# ORT's default. Ranges are read off these histograms of |x|.
HISTOGRAM_BINS = 2048


# --------------------------------------------------------------------------
# Stamp
# --------------------------------------------------------------------------


def calibration_photos(directory: Path = CALIBRATION_DIR) -> list[Path]:
    photos = sorted(directory.glob("*.jpg"))
    if not photos:
        raise QuantizeError(f"no calibration photos (*.jpg) in {directory}")
    return photos


def stamp_payload(source: Path, photos: Sequence[Path], recipe: Recipe) -> dict[str, Any]:
    """What the int8 file was made from; size + mtime spare hashing 176 MB."""
    stat = source.stat()
    return {
        "recipe": RECIPE_VERSION,
        # A cache moved to a CPU of the other kind gets rebuilt for it.
        "variant": recipe.name,
        "source": {"name": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "calibration": {photo.name: photo.stat().st_size for photo in photos},
    }


def is_prepared(model_dir: Path, payload: Mapping[str, Any]) -> bool:
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return stamp == payload and (model_dir / TARGET_NAME).is_file()


# --------------------------------------------------------------------------
# Calibration data
# --------------------------------------------------------------------------


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8, upright, alpha dropped: as the server decodes."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def augment(rgb: np.ndarray) -> list[np.ndarray]:
    """The photo, mirrored, a centre crop and a half-size mirrored copy.

    Four photos are little data. Mirroring and cropping move the subject and
    change its scale in the 1024x1024 input; the half-size copy is as blurred
    as a small upload is once upscaled.
    """
    import numpy as np
    from PIL import Image

    height, width = rgb.shape[:2]
    half = Image.fromarray(rgb).resize(
        (max(width // 2, 1), max(height // 2, 1)), Image.Resampling.LANCZOS
    )
    variants = [
        rgb,
        rgb[:, ::-1],
        rgb[height // 10 : height - height // 10, width // 10 : width - width // 10],
        np.asarray(half)[:, ::-1],
    ]
    return [np.ascontiguousarray(variant) for variant in variants]


def calibration_inputs(photos: Sequence[Path]) -> Iterator[np.ndarray]:
    """(1, 3, 1024, 1024) model inputs, made one at a time to keep memory flat."""
    from server.isnet import to_tensor

    for photo in photos:
        for variant in augment(load_rgb(photo)):
            yield to_tensor(variant)[None]


# --------------------------------------------------------------------------
# Calibration and quantisation
# --------------------------------------------------------------------------


def preprocess(source: Path, target: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Symbolic shape inference needs sympy, which Matte does not depend on;
    # ONNX shape inference covers every op of this CNN.
    quant_pre_process(str(source), str(target), skip_symbolic_shape=True)


def quantizable_op_types() -> list[str]:
    # What quantize_static itself calibrates by default.
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


def collect_histograms(
    model_path: Path, workdir: Path, photos: Sequence[Path], log: Log
) -> HistogramCalibrater:
    """Run the fp32 model on every calibration input, binning its activations."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    class OneInput(CalibrationDataReader):  # type: ignore[misc]  # ORT ships no types
        def __init__(self, tensor: np.ndarray) -> None:
            self.pending = [tensor]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return {INPUT_NAME: self.pending.pop()} if self.pending else None

    calibrator = create_calibrator(
        model_path,
        quantizable_op_types(),
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Percentile,
        # symmetric: histograms of |x|. A ReLU output's range is then clamped
        # to its real minimum, 0, so no uint8 level is wasted on negatives.
        extra_options={"symmetric": True, "num_bins": HISTOGRAM_BINS},
    )
    for count, tensor in enumerate(calibration_inputs(photos), start=1):
        # One input per call: the calibrator holds every activation of the
        # inputs it is given before binning them, ~2.3 GB per image here.
        # (CalibMaxIntermediateOutputs only bounds the MinMax calibrator.)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints per call
            calibrator.collect_data(OneInput(tensor))
        if count % 4 == 0:
            log(f"{MODEL_NAME}: calibration inputs done: {count}")
    return calibrator


def quantize(
    preprocessed: Path,
    target: Path,
    ranges: TensorsData,
    keep_fp32: Sequence[str],
    recipe: Recipe,
    workdir: Path,
) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import save_tensors_data

    # quantize_static accepts precomputed ranges only through its cache file.
    cache = workdir / "ranges.json"
    save_tensors_data(ranges, cache)
    quantize_static(
        str(preprocessed),
        str(target),
        calibration_data_reader=None,
        # QDQ: ORT's CPU provider fuses it into QLinearConv & co. QOperator
        # ran 2x slower here and lost more IoU.
        quant_format=QuantFormat.QDQ,
        # Per-tensor weights cost plants-1 another 0.005.
        per_channel=True,
        # uint8 activations x int8 weights is x86's fast path (VNNI); int8
        # activations ran ~10x slower on the same CPU.
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # 7-bit weights: x86 CPUs without VNNI multiply u8 x s8 pairs into
        # saturating int16, which 8-bit weights can overflow. With the
        # portable recipe's fp32 bottom, 7 bits cost plants-1 0.003 but made
        # the worst of the 16 calibration variants steadier (0.976-0.980
        # against 0.962-0.975 across calibration sets). VNNI multiplies into
        # int32 and cannot overflow, and the VNNI recipe needs the accuracy.
        reduce_range=recipe.reduce_range,
        nodes_to_exclude=list(keep_fp32),
        calibrate_method=CalibrationMethod.Percentile,
        calibration_cache_path=str(cache),
    )


# --------------------------------------------------------------------------
# Check
# --------------------------------------------------------------------------


def soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    """sum(min) / sum(max) of two uint8 masks scaled to [0, 1]."""
    import numpy as np

    fa = a.astype(np.float64) / 255
    fb = b.astype(np.float64) / 255
    union = float(np.maximum(fa, fb).sum())
    return float(np.minimum(fa, fb).sum()) / union if union else 1.0


def open_session(path: Path) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def mask(session: ort.InferenceSession, rgb: np.ndarray) -> np.ndarray:
    """The server's mask for a photo: its own pre- and post-processing."""
    from server.isnet import to_mask, to_tensor

    prediction = session.run(None, {INPUT_NAME: to_tensor(rgb)[None]})[0]
    return to_mask(prediction[0, 0], (rgb.shape[1], rgb.shape[0]))


def compare(reference: Path, candidate: Path, photos: Sequence[Path]) -> dict[str, float]:
    """Soft IoU of the candidate's masks against the reference's, per photo."""
    sessions = (open_session(reference), open_session(candidate))
    scores = {}
    for photo in photos:
        rgb = load_rgb(photo)
        full, int8 = (mask(session, rgb) for session in sessions)
        scores[photo.stem] = soft_iou(full, int8)
    return scores


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def build(
    source: Path, target: Path, photos: Sequence[Path], recipe: Recipe, workdir: Path, log: Log
) -> None:
    """Pre-process, calibrate and quantise `source` into `target`."""
    import onnx

    preprocessed = workdir / "preprocessed.onnx"
    preprocess(source, preprocessed)
    model = onnx.load(str(preprocessed), load_external_data=False)
    check_graph(model)
    keep_fp32 = nodes_to_keep_fp32(model, recipe)
    producers = tensor_producers(model)
    del model

    started = time.monotonic()
    calibrator = collect_histograms(preprocessed, workdir, photos, log)
    ranges = tensor_ranges(calibrator, producers)
    del calibrator  # its session and histograms: ~1 GB
    log(f"{MODEL_NAME}: calibrated ({time.monotonic() - started:.0f} s)")
    quantize(preprocessed, target, ranges, keep_fp32, recipe, workdir)
    log(f"{MODEL_NAME}: quantised ({recipe.name} recipe), {len(keep_fp32)} nodes kept in fp32")


def ensure_int8(
    cache_dir: Path,
    force: bool = False,
    log: Log = print,
    calibration_dir: Path = CALIBRATION_DIR,
    cpuinfo: Path = CPUINFO,
) -> Path:
    model_dir = cache_dir / MODEL_NAME
    source = model_dir / SOURCE_NAME
    target = model_dir / TARGET_NAME
    if not source.is_file():
        raise QuantizeError(f"{source} is missing: run `make model` first")
    photos = calibration_photos(calibration_dir)
    recipe = choose_recipe(cpu_flags(cpuinfo))
    payload = stamp_payload(source, photos, recipe)
    if not force and is_prepared(model_dir, payload):
        log(f"{MODEL_NAME}: {TARGET_NAME} already prepared in {model_dir}")
        return target
    # An old stamp must not vouch for a file that is about to be replaced.
    (model_dir / STAMP_NAME).unlink(missing_ok=True)
    # Work files (pre-processed and augmented models, ~0.5 GB) live next to
    # the target so the final rename stays on one file system.
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=model_dir) as tmp:
        workdir = Path(tmp)
        candidate = workdir / TARGET_NAME
        build(source, candidate, photos, recipe, workdir, log)
        scores = compare(source, candidate, photos)
        shown = ", ".join(f"{name} {score:.4f}" for name, score in scores.items())
        log(f"{MODEL_NAME}: soft IoU against {SOURCE_NAME} on the calibration photos: {shown}")
        worst = min(scores.values())
        if worst < MIN_SOFT_IOU:
            raise QuantizeError(f"int8 masks too far from fp32: soft IoU {worst:.4f}")
        os.replace(candidate, target)
    write_atomic(model_dir / STAMP_NAME, json.dumps(payload, indent=2).encode())
    log(f"{MODEL_NAME}: wrote {target} ({target.stat().st_size / 1e6:.0f} MB)")
    return target


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    description = __doc__.splitlines()[0]
    return cache_parser(description, "quantise again even if stamped", environ).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, os.environ)
    # Run as a script, sys.path starts at models/; the server's pre- and
    # post-processing must be importable without the editable install too.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        ensure_int8(args.cache_dir, force=args.force, log=log)
    except QuantizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
