"""Every CPU engine and precision this machine supports, on the real model and the
four rembg fixtures: the quality bounds of each against rembg's references and
against exact fp32. A precision the CPU lacks is skipped, naming what it lacks."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from server import isnet
from server.engine import Engine, load_engine
from tests.conftest import fixture_photos, model_settings, reference_alpha, soft_iou

pytestmark = pytest.mark.model

PHOTOS = fixture_photos()


@functools.cache
def engine(name: str, precision: str) -> Engine:
    return load_engine(model_settings(provider="cpu", engine=name, precision=precision))


@functools.cache
def mask(name: str, precision: str, photo: Path) -> np.ndarray:
    """The photo's mask as the pipeline makes it (before compositing)."""
    rgb = np.asarray(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"))
    prediction = engine(name, precision).run(isnet.to_batch([isnet.to_model_size(rgb)]))[0]
    return isnet.to_mask(prediction, (rgb.shape[1], rgb.shape[0]))


def bf16_capable() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda path: path.stem)
@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_fp32_matches_the_references(name: str, photo: Path) -> None:
    assert engine(name, "fp32").precision == "fp32"
    iou = soft_iou(mask(name, "fp32", photo), reference_alpha(photo))
    print(f"{name} fp32 {photo.stem}: soft IoU {iou:.4f}")
    assert iou >= 0.995


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda path: path.stem)
def test_openvino_fp32_is_onnxruntime_fp32(photo: Path) -> None:
    # The same exact computation on two engines: a grey level apart at most anywhere.
    ours = mask("openvino", "fp32", photo).astype(np.int16)
    theirs = mask("onnxruntime", "fp32", photo).astype(np.int16)
    assert np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda path: path.stem)
def test_bf16_stays_within_its_bounds(photo: Path) -> None:
    if not bf16_capable():
        pytest.skip(
            "bf16 needs AMX or AVX-512 BF16: OpenVINO's OPTIMIZATION_CAPABILITIES lacks BF16"
        )
    assert engine("openvino", "bf16").precision == "bf16"
    bf16 = mask("openvino", "bf16", photo)
    fp32 = mask("openvino", "fp32", photo)
    assert soft_iou(bf16, fp32) >= 0.99
    assert np.abs(bf16.astype(np.int16) - fp32.astype(np.int16)).mean() <= 1.0
    assert soft_iou(bf16, reference_alpha(photo)) >= 0.99


def test_auto_is_the_fastest_precision_this_cpu_has() -> None:
    auto = engine("openvino", "auto")
    assert auto.engine == "openvino"
    assert auto.precision == ("bf16" if bf16_capable() else "fp32")


def test_bf16_is_refused_where_the_cpu_lacks_it() -> None:
    if bf16_capable():
        pytest.skip("this CPU has bf16: nothing to refuse")
    from server.openvino_engine import PrecisionUnsupported

    with pytest.raises(PrecisionUnsupported, match="needs a CPU with AMX or AVX-512 BF16"):
        load_engine(model_settings(provider="cpu", engine="openvino", precision="bf16"))


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda path: path.stem)
def test_int8_on_openvino_keeps_the_int8_bound(photo: Path) -> None:
    # The quantised file's own bound (tests/models/test_int8.py): 0.97 against fp32.
    settings = model_settings(precision="int8")
    if not settings.model_file("cpu").is_file():
        pytest.skip("the int8 model is not built (make model-int8)")
    assert engine("openvino", "int8").precision == "int8"
    assert soft_iou(mask("openvino", "int8", photo), mask("openvino", "fp32", photo)) >= 0.97
