"""server.rendering: from the alpha to the pixels to encode (formats, backgrounds,
framing, the foreground box), on small synthetic arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest

from server import rendering
from server.framing import Box
from server.imaging import OutputFormat, Picture
from server.option_text import Length, Margin
from server.options import CutoutOptions
from server.rendering import render

Pixels = npt.NDArray[np.uint8]
ORANGE = (250, 180, 90)


def scene(opaque: bool = False) -> tuple[Pixels, Pixels]:
    """A 40 x 30 orange photo; alpha 255 over a 10 x 8 box at (12, 6), with one pixel of
    alpha 128 beside it, 0 elsewhere (or 255 everywhere when `opaque`)."""
    rgb = np.full((30, 40, 3), ORANGE, dtype=np.uint8)
    if opaque:
        return rgb, np.full((30, 40), 255, dtype=np.uint8)
    alpha = np.zeros((30, 40), dtype=np.uint8)
    alpha[6:14, 12:22] = 255
    alpha[6, 22] = 128
    return rgb, alpha


def options(**changes: object) -> CutoutOptions:
    return dataclasses.replace(CutoutOptions(), **changes)  # type: ignore[arg-type]


def test_the_plain_cutout_is_todays() -> None:
    rgb, alpha = scene()
    out = render(rgb, alpha, options())
    assert out.fmt == "png" and out.pixels.shape == (30, 40, 4)
    assert (out.pixels[..., 3] == alpha).all()
    assert tuple(out.pixels[0, 0]) == (0, 0, 0, 0)
    assert out.foreground == Box(12, 6, 11, 8)
    assert out.has_transparency and out.size == (40, 30)


def test_jpg_lays_the_cutout_on_white() -> None:
    rgb, alpha = scene()
    out = render(rgb, alpha, options(output_format="jpg"))
    assert out.fmt == "jpg" and out.pixels.shape == (30, 40, 3)
    assert tuple(out.pixels[0, 0]) == (255, 255, 255)
    assert tuple(out.pixels[8, 15]) == ORANGE
    assert tuple(out.pixels[6, 22]) == (252, 217, 172)  # half orange, half white
    assert not out.has_transparency


def test_jpg_lays_it_on_the_colour_and_a_see_through_colour_on_white() -> None:
    rgb, alpha = scene()
    out = render(rgb, alpha, options(output_format="jpg", bgcolor=(0, 0, 255)))
    assert tuple(out.pixels[0, 0]) == (0, 0, 255)
    half = render(rgb, alpha, options(output_format="jpg", bgcolor=(0, 0, 0, 128)))
    assert tuple(half.pixels[0, 0]) == (127, 127, 127)


def test_jpg_of_an_opaque_result_is_the_photo() -> None:
    rgb, alpha = scene(opaque=True)
    out = render(rgb, alpha, options(output_format="jpg"))
    assert out.pixels is rgb and not out.has_transparency


@pytest.mark.parametrize(
    ("opaque", "bgcolor", "fmt", "transparent"),
    [
        (False, None, "png", True),
        (True, None, "jpg", False),
        (False, (9, 9, 9), "jpg", False),
        (False, (9, 9, 9, 255), "jpg", False),
        (False, (9, 9, 9, 254), "png", True),
    ],
)
def test_auto_is_png_with_transparency_else_jpg(
    opaque: bool, bgcolor: tuple[int, ...] | None, fmt: str, transparent: bool
) -> None:
    rgb, alpha = scene(opaque)
    out = render(rgb, alpha, options(output_format="auto", bgcolor=bgcolor))
    assert (out.fmt, out.has_transparency) == (fmt, transparent)
    assert out.pixels.shape[2] == (4 if fmt == "png" else 3)


@pytest.mark.parametrize("fmt", ["png", "webp", "jpg", "auto"])
def test_a_mask_is_grey_and_opaque(fmt: OutputFormat) -> None:
    rgb, alpha = scene()
    out = render(rgb, alpha, options(only_mask=True, output_format=fmt))
    assert out.pixels is alpha and not out.has_transparency
    assert out.fmt == ("png" if fmt == "auto" else fmt)
    inverse = render(rgb, alpha, options(inverse_mask=True, output_format=fmt))
    assert (inverse.pixels == 255 - alpha).all()
    assert inverse.foreground == Box(12, 6, 11, 8)  # the subject's, not the background's


def test_zip_keeps_the_colours_everywhere_and_the_alpha_apart() -> None:
    rgb, alpha = scene()
    # Matting estimated the colours already: no decontamination to run here.
    out = render(rgb, alpha, options(output_format="zip"), colours_estimated=True)
    assert out.fmt == "zip" and out.pixels.shape == (30, 40, 4)
    assert (out.pixels[..., :3] == rgb).all()  # not cleared where alpha is 0
    assert (out.pixels[..., 3] == alpha).all()


def test_the_background_image_covers_the_output() -> None:
    rgb, alpha = scene()
    background = Picture(np.full((60, 80, 3), [10, 20, 30], dtype=np.uint8), None)
    out = render(rgb, alpha, options(), background)
    assert out.fmt == "png" and not out.has_transparency
    assert tuple(out.pixels[0, 0]) == (10, 20, 30, 255)
    assert tuple(out.pixels[8, 15]) == (*ORANGE, 255)
    jpg = render(rgb, alpha, options(output_format="auto"), background)
    assert jpg.fmt == "jpg" and tuple(jpg.pixels[0, 0]) == (10, 20, 30)


def test_a_see_through_background_image_shows_white_in_a_jpg() -> None:
    rgb, alpha = scene()
    clear = np.zeros((30, 40), dtype=np.uint8)
    background = Picture(np.full((30, 40, 3), 10, dtype=np.uint8), clear)
    png = render(rgb, alpha, options(), background)
    assert png.has_transparency and png.pixels[0, 0, 3] == 0
    jpg = render(rgb, alpha, options(output_format="jpg"), background)
    assert tuple(jpg.pixels[0, 0]) == (255, 255, 255)


def test_crop_reports_the_box_in_the_output() -> None:
    rgb, alpha = scene()
    margin = Margin(*[Length(2, "px")] * 4)
    out = render(rgb, alpha, options(crop=True, crop_margin=margin))
    assert out.size == (15, 12)
    assert out.foreground == Box(2, 2, 11, 8)


def test_an_empty_mask_is_no_error_and_has_no_box() -> None:
    rgb = np.full((30, 40, 3), 9, dtype=np.uint8)
    alpha = np.zeros((30, 40), dtype=np.uint8)
    out = render(rgb, alpha, options(crop=True, scale=0.5))
    assert out.foreground is None and out.size == (40, 30)


def test_decontamination_runs_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake(rgb: Pixels, alpha: Pixels) -> Pixels:
        calls.append(1)
        return rgb

    monkeypatch.setattr(rendering, "decontaminate", fake)
    rgb, alpha = scene()
    render(rgb, alpha, options())
    render(rgb, alpha, options(output_format="jpg", crop=True))
    render(rgb, alpha, options(decontaminate=True, only_mask=True))  # no colours to fix
    render(rgb, alpha, options(decontaminate=True), colours_estimated=True)
    assert calls == []
    render(rgb, alpha, options(decontaminate=True))
    render(rgb, alpha, options(output_format="zip"))  # zip's colours are always corrected
    assert calls == [1, 1]
