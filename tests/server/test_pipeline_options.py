"""server.pipeline with issue 15's shared options, on the fake engine (bright = subject):
size caps, region of interest, crop, scale and position, backgrounds, jpg/zip/auto."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from server.errors import BadRequest
from server.framing import Box, foreground_box
from server.option_text import CENTER, Length, Margin, Position, Region, parse_margin
from server.options import CutoutOptions
from server.pipeline import Cutout
from server.settings import Settings
from tests.fakes import BrightnessEngine
from tests.server.test_pipeline import Run, read, to_png

Pixels = npt.NDArray[np.uint8]
BRIGHT = (250, 220, 200)
DARK = (20, 40, 30)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path)


def photo(*boxes: Box, width: int = 200, height: int = 120) -> bytes:
    """A dark photo with bright rectangles (the fake engine's subjects)."""
    pixels = np.full((height, width, 3), DARK, dtype=np.uint8)
    for box in boxes:
        pixels[box.top : box.bottom, box.left : box.right] = BRIGHT
    return to_png(pixels)


SUBJECT = Box(50, 30, 60, 40)
PHOTO = photo(SUBJECT)


def run(settings: Settings, data: bytes = PHOTO, **changes: object) -> Cutout:
    options = dataclasses.replace(CutoutOptions(), **changes)  # type: ignore[arg-type]
    return Run(BrightnessEngine(), settings).one(data, options)


def alpha_of(cutout: Cutout) -> Pixels:
    return np.asarray(read(cutout).convert("RGBA"))[..., 3]


def test_the_plain_cutout_reports_its_size_and_box(settings: Settings) -> None:
    cutout = run(settings)
    assert (cutout.width, cutout.height) == (200, 120)
    assert cutout.media_type == "image/png" and cutout.has_transparency
    # The mask comes up from the model's 1024 x 1024 with Lanczos: within a pixel.
    box = cutout.foreground
    assert box is not None
    assert abs(box.left - 50) <= 1 and abs(box.top - 30) <= 1
    assert abs(box.width - 60) <= 2 and abs(box.height - 40) <= 2
    assert box == foreground_box(alpha_of(cutout))


def test_crop_with_margin_is_exact_in_pixels(settings: Settings) -> None:
    box = run(settings).foreground
    assert box is not None
    margin = parse_margin("crop_margin", "10px 5% 4px 20px")
    cutout = run(settings, crop=True, crop_margin=margin)
    right = round(box.width * 0.05)
    assert (cutout.width, cutout.height) == (box.width + 20 + right, box.height + 14)
    assert cutout.foreground == Box(20, 10, box.width, box.height)
    assert read(cutout).size == (cutout.width, cutout.height)
    assert foreground_box(alpha_of(cutout)) == cutout.foreground


def test_crop_without_margin_is_the_box(settings: Settings) -> None:
    box = run(settings).foreground
    assert box is not None
    cutout = run(settings, crop=True)
    assert (cutout.width, cutout.height) == (box.width, box.height)
    assert cutout.foreground == Box(0, 0, box.width, box.height)


def test_outside_the_region_of_interest_is_background(settings: Settings) -> None:
    right = Box(140, 40, 30, 30)
    data = photo(SUBJECT, right)
    both = run(settings, data)
    assert both.foreground is not None and both.foreground.right >= 169
    roi = Region(Length(0), Length(0), Length(50, "%"), Length(100, "%"))
    cutout = run(settings, data, roi=roi)
    alpha = alpha_of(cutout)
    assert (cutout.width, cutout.height) == (200, 120)  # the output is the whole image
    assert (alpha[:, 100:] == 0).all()
    box = cutout.foreground
    assert box is not None and abs(box.left - 50) <= 1 and box.right <= 100


def test_a_region_with_nothing_of_the_image_is_a_bad_request(settings: Settings) -> None:
    roi = Region(Length(300, "px"), Length(0), Length(400, "px"), Length(10, "px"))
    engine = BrightnessEngine()
    (result,) = Run(engine, settings).cutout((PHOTO, CutoutOptions(roi=roi)))
    assert isinstance(result, BadRequest) and result.field == "roi"
    assert engine.batches == []  # refused before the model ran


def test_the_size_cap_shrinks_the_output_before_the_mask(settings: Settings) -> None:
    cutout = run(settings, max_output_pixels=6_000)
    assert (cutout.width, cutout.height) == (100, 60)
    box = cutout.foreground
    assert box is not None and abs(box.left - 25) <= 1 and abs(box.width - 30) <= 2
    # Under the cap, nothing changes.
    assert (run(settings, max_output_pixels=24_000).width, run(settings).width) == (200, 200)


def test_a_region_in_pixels_follows_the_size_cap(settings: Settings) -> None:
    # The roi is in the photo's pixels, whatever the cap does to it.
    roi = Region(Length(100, "px"), Length(0), Length(200, "px"), Length(120, "px"))
    cutout = run(settings, photo(SUBJECT, Box(140, 40, 30, 30)), roi=roi, max_output_pixels=6_000)
    alpha = alpha_of(cutout)
    assert alpha.shape == (60, 100)
    assert (alpha[:, :50] == 0).all() and alpha[24:31, 74:81].min() >= 250


def test_scale_and_position_place_the_subject_in_the_canvas(settings: Settings) -> None:
    box = run(settings).foreground
    assert box is not None
    cutout = run(settings, scale=0.5, position=CENTER)
    assert (cutout.width, cutout.height) == (200, 120)
    found = cutout.foreground
    assert found is not None
    # 50% of 200 x 120 is 100 x 60: the subject (about 60 x 40) is scaled by 1.5.
    factor = min(100 / box.width, 60 / box.height)
    assert (
        abs(found.width - box.width * factor) <= 2 and abs(found.height - box.height * factor) <= 2
    )
    assert abs(found.left + found.width / 2 - 100) <= 1.5
    assert abs(found.top + found.height / 2 - 60) <= 1.5
    corner = run(settings, position=Position(1.0, 1.0)).foreground
    assert corner is not None and (corner.right, corner.bottom) == (200, 120)


def test_jpg_has_no_alpha_and_sits_on_white_or_the_colour(settings: Settings) -> None:
    cutout = run(settings, output_format="jpg")
    assert cutout.media_type == "image/jpeg" and cutout.data.startswith(b"\xff\xd8")
    image = read(cutout)
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (200, 120)
    pixels = np.asarray(image).astype(int)
    assert (np.abs(pixels[:10, :10] - 255) <= 3).all()
    assert not cutout.has_transparency
    red = np.asarray(read(run(settings, output_format="jpg", bgcolor=(255, 0, 0)))).astype(int)
    assert (np.abs(red[:10, :10] - [255, 0, 0]) <= 6).all()
    # The subject is the photo's own colour.
    assert (np.abs(pixels[45:55, 70:90] - BRIGHT) <= 6).all()


def test_auto_is_png_with_transparency_and_jpg_without(settings: Settings) -> None:
    assert run(settings, output_format="auto").media_type == "image/png"
    over = run(settings, output_format="auto", bgcolor=(0, 0, 0))
    assert over.media_type == "image/jpeg" and not over.has_transparency
    background = to_png(np.full((12, 20, 3), 90, dtype=np.uint8))
    assert run(settings, output_format="auto", bg_image=background).media_type == "image/jpeg"


def test_zip_holds_the_colours_and_the_alpha(settings: Settings) -> None:
    cutout = run(settings, output_format="zip")
    assert cutout.media_type == "application/zip"
    mask = np.asarray(read(run(settings, only_mask=True)))
    with zipfile.ZipFile(io.BytesIO(cutout.data)) as archive:
        assert archive.namelist() == ["color.jpg", "alpha.png"]
        colour = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
        colour.load()
        alpha.load()
    assert colour.format == "JPEG" and colour.mode == "RGB" and colour.size == (200, 120)
    assert alpha.format == "PNG" and alpha.mode == "L"
    assert (np.asarray(alpha) == mask).all()
    # The colours are the photo's, transparent parts included (not cleared to black).
    assert (np.abs(np.asarray(colour)[:10, :10].astype(int) - DARK) <= 6).all()


def test_a_background_image_covers_the_output(settings: Settings) -> None:
    background = to_png(np.full((30, 50, 3), [0, 0, 255], dtype=np.uint8))
    cutout = run(settings, bg_image=background)
    pixels = np.asarray(read(cutout))
    assert pixels.shape == (120, 200, 4) and not cutout.has_transparency
    assert tuple(pixels[0, 0]) == (0, 0, 255, 255)
    assert tuple(pixels[50, 80]) == (*BRIGHT, 255)


def test_a_bad_background_image_is_refused_before_the_model(settings: Settings) -> None:
    engine = BrightnessEngine()
    (result,) = Run(engine, settings).cutout((PHOTO, CutoutOptions(bg_image=b"nope")))
    assert isinstance(result, BadRequest) and result.field == "bg_image"
    assert result.messages == ("bg_image: must be a jpeg, png or webp image",)
    assert engine.batches == []


def test_an_empty_mask_is_no_error(settings: Settings) -> None:
    dark = photo()
    cutout = run(settings, dark, crop=True, crop_margin=Margin(*[Length(5, "px")] * 4))
    assert cutout.foreground is None
    assert (cutout.width, cutout.height) == (200, 120)
