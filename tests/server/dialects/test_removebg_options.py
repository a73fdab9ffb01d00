"""Every remove.bg option through the dialect, on the fake engine: sizes, formats (zip
contents), channels, crop and its margin in exact pixels, roi, scale and position,
background colours and images, and the fields Matte accepts but does not act on."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.dialects.removebg import PATH
from tests.conftest import wait_ready
from tests.server.dialects.test_removebg import (
    AUTH,
    alpha_box,
    app_with,
    decoded,
    error_of,
    header_box,
    multipart,
    photo,
    remove,
)

Box = tuple[int, int, int, int]
Sides = Callable[[int, int], tuple[int, int, int, int]]
Place = Callable[[int, int], tuple[int, int]]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app_with(tmp_path), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def reference(client: TestClient) -> Box:
    """The subject's box in the plain cut-out of photo(): what the options move."""
    response = remove(client, photo(), format="png")
    assert response.status_code == 200, response.text
    return header_box(response)


def rgba(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(decoded(response.content).convert("RGBA"))


# --- sizes ----------------------------------------------------------------------------------


def big_photo(width: int, height: int) -> bytes:
    return photo(width, height, subject=(width // 4, height // 4, 3 * width // 4, 3 * height // 4))


@pytest.mark.parametrize(
    ("size", "cap"),
    [
        ("preview", 250_000),
        ("small", 250_000),
        ("regular", 250_000),
        ("medium", 1_500_000),
    ],
)
def test_a_size_preset_caps_the_output(running: TestClient, size: str, cap: int) -> None:
    response = remove(running, big_photo(2000, 1500), size=size, format="png")
    width, height = decoded(response.content).size
    assert (str(width), str(height)) == (response.headers["x-width"], response.headers["x-height"])
    assert width * height <= cap
    assert width * height >= cap * 0.98  # scaled down to the cap, not below it
    assert abs(width / height - 2000 / 1500) < 0.01


def test_without_a_size_the_output_is_a_preview(running: TestClient) -> None:
    response = remove(running, big_photo(2000, 1500), format="png")
    width, height = decoded(response.content).size
    assert width * height <= 250_000
    assert response.headers["x-credits-charged"] == "0.25"


@pytest.mark.parametrize("size", ["hd", "full", "4k", "auto", "50MP"])
def test_the_larger_sizes_keep_the_input_size(running: TestClient, size: str) -> None:
    response = remove(running, big_photo(2000, 1500), size=size, format="png")
    assert decoded(response.content).size == (2000, 1500)


def test_a_preview_smaller_than_its_cap_keeps_its_size(running: TestClient) -> None:
    response = remove(running, photo(), size="preview", format="png")
    assert decoded(response.content).size == (200, 160)


# --- formats and channels -------------------------------------------------------------------


def test_png_webp_jpg_and_zip(running: TestClient) -> None:
    png = remove(running, photo(), format="png")
    assert png.headers["content-type"] == "image/png"
    alpha = np.asarray(decoded(png.content))[:, :, 3]
    webp = remove(running, photo(), format="webp")
    assert webp.headers["content-type"] == "image/webp"
    webp_image = decoded(webp.content)
    assert webp_image.format == "WEBP" and webp_image.mode == "RGBA"
    # WebP's alpha is lossless.
    assert np.array_equal(np.asarray(webp_image)[:, :, 3], alpha)
    jpg = remove(running, photo(), format="jpg")
    assert jpg.headers["content-type"] == "image/jpeg"
    jpeg = decoded(jpg.content)
    assert jpeg.format == "JPEG" and jpeg.mode == "RGB" and jpeg.size == (200, 160)
    # JPEG has no alpha: the cut-out lies on white.
    assert (np.asarray(jpeg)[2, 2] >= 250).all()
    archive = remove(running, photo(), format="zip")
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        assert sorted(opened.namelist()) == ["alpha.png", "color.jpg"]
        color = Image.open(io.BytesIO(opened.read("color.jpg")))
        matte = Image.open(io.BytesIO(opened.read("alpha.png")))
        assert color.format == "JPEG" and color.size == (200, 160)
        assert matte.mode == "L" and np.array_equal(np.asarray(matte), alpha)
    for response in (png, webp, jpg, archive):
        assert response.headers["x-width"] == "200" and header_box(response) == header_box(png)


def test_auto_is_png_with_transparency_and_jpg_without(running: TestClient) -> None:
    transparent = remove(running, photo())  # format=auto is the default
    assert transparent.headers["content-type"] == "image/png"
    assert decoded(transparent.content).mode == "RGBA"
    opaque = remove(running, photo(), bg_color="ffffff")
    assert opaque.headers["content-type"] == "image/jpeg"


def test_channels_alpha_is_the_mask(running: TestClient) -> None:
    cutout = rgba(remove(running, photo(), format="png"))
    mask = remove(running, photo(), channels="alpha", format="png")
    image = decoded(mask.content)
    assert image.mode == "L"
    assert np.array_equal(np.asarray(image), cutout[:, :, 3])
    assert header_box(mask) == alpha_box(cutout[:, :, 3])
    # format=auto keeps a mask lossless (the pipeline's choice: rendering.py).
    auto = remove(running, photo(), channels="alpha")
    assert auto.headers["content-type"] == "image/png"
    assert decoded(auto.content).mode == "L"


# --- crop and its margin, in exact pixels ---------------------------------------------------


def test_crop_trims_to_the_subject(running: TestClient) -> None:
    left, top, width, height = reference(running)
    response = remove(running, photo(), crop="true", format="png")
    assert decoded(response.content).size == (width, height)
    assert (response.headers["x-width"], response.headers["x-height"]) == (str(width), str(height))
    assert header_box(response) == (0, 0, width, height)
    plain = rgba(remove(running, photo(), format="png"))
    cropped = rgba(response)
    assert np.array_equal(cropped, plain[top : top + height, left : left + width])


@pytest.mark.parametrize(
    ("margin", "sides"),
    [
        ("10px", lambda w, h: (10, 10, 10, 10)),
        ("0", lambda w, h: (0, 0, 0, 0)),
        ("5px 12px", lambda w, h: (5, 12, 5, 12)),
        ("1px 2px 3px 4px", lambda w, h: (1, 2, 3, 4)),
        ("1px,2px,3px,4px", lambda w, h: (1, 2, 3, 4)),
        ("10%", lambda w, h: (round(h / 10), round(w / 10), round(h / 10), round(w / 10))),
        # Each side at most 50% of the subject (and 500 px).
        ("900px", lambda w, h: (round(h / 2), round(w / 2), round(h / 2), round(w / 2))),
    ],
)
def test_crop_margin_in_exact_pixels(running: TestClient, margin: str, sides: Sides) -> None:
    _, _, width, height = reference(running)
    top, right, bottom, left = sides(width, height)
    response = remove(running, photo(), crop="true", crop_margin=margin, format="png")
    assert decoded(response.content).size == (width + left + right, height + top + bottom)
    assert header_box(response) == (left, top, width, height)


def test_the_pypi_wrappers_crop_true_is_a_crop_without_margin(running: TestClient) -> None:
    # removebg's master sends crop=true with crop_margin=str(True) for crop=True.
    _, _, width, height = reference(running)
    response = remove(running, photo(), crop="true", crop_margin="True", format="png")
    assert decoded(response.content).size == (width, height)


def test_a_margin_without_crop_changes_nothing(running: TestClient) -> None:
    plain = remove(running, photo(), format="png")
    for crop in ("false", "0", "no", "off", "False"):
        response = remove(running, photo(), crop=crop, crop_margin="30px", format="png")
        assert response.content == plain.content


@pytest.mark.parametrize("crop", ["true", "True", "TRUE", "1", "yes", "on"])
def test_crop_booleans_as_forms_send_them(running: TestClient, crop: str) -> None:
    _, _, width, height = reference(running)
    response = remove(running, photo(), crop=crop, format="png")
    assert decoded(response.content).size == (width, height)


# --- roi --------------------------------------------------------------------------------------


def test_outside_the_roi_is_background(running: TestClient) -> None:
    # The subject spans x 60-140: the roi keeps x < 100 only.
    left, top, _, height = reference(running)
    response = remove(running, photo(), roi="0 0 100px 100%", format="png")
    alpha = rgba(response)[:, :, 3]
    assert not alpha[:, 100:].any()
    box = header_box(response)
    assert box[0] == left and box[1] == top and box[3] == height
    assert box[0] + box[2] <= 100
    same = remove(running, photo(), roi="0% 0% 50% 100%", format="png")
    assert same.content == response.content


@pytest.mark.parametrize("whole", ["0 0 100% 100%", "0% 0% 100% 100%", "0px 0px 100% 100%"])
def test_the_whole_image_as_roi_is_no_roi(running: TestClient, whole: str) -> None:
    assert remove(running, photo(), roi=whole).content == remove(running, photo()).content


def test_a_roi_that_misses_the_subject_finds_no_foreground(running: TestClient) -> None:
    response = remove(running, photo(), roi="0 0 50px 100%")
    error_of(response, 400, "unknown_foreground")


def test_a_roi_outside_the_image_is_invalid_roi(running: TestClient) -> None:
    response = remove(running, photo(), roi="300px 0 400px 100%")
    error_of(response, 400, "invalid_roi")


# --- scale and position -----------------------------------------------------------------------


def within(box: Box, target: Box, slack: int = 1) -> bool:
    """`box` (the subject as the headers report it) lies in `target`, give or take
    the soft edge resized with it."""
    return (
        abs(box[0] - target[0]) <= slack
        and abs(box[1] - target[1]) <= slack
        and abs(box[0] + box[2] - target[0] - target[2]) <= slack
        and abs(box[1] + box[3] - target[1] - target[3]) <= slack
    )


def test_scale_implies_center(running: TestClient) -> None:
    corner = photo(subject=(10, 10, 90, 90))  # off centre, so "original" would differ
    _, _, width, height = header_box(remove(running, corner, format="png"))
    response = remove(running, corner, scale="25%", format="png")
    assert decoded(response.content).size == (200, 160)
    factor = min(0.25 * 200 / width, 0.25 * 160 / height)
    size = (round(width * factor), round(height * factor))
    target = (round((200 - size[0]) / 2), round((160 - size[1]) / 2), *size)
    assert within(header_box(response), target)


@pytest.mark.parametrize(
    ("position", "where"),
    [
        ("0% 0%", lambda free_x, free_y: (0, 0)),
        ("100% 100%", lambda free_x, free_y: (free_x, free_y)),
        ("100%", lambda free_x, free_y: (free_x, free_y)),
        ("25% 75%", lambda free_x, free_y: (round(free_x / 4), round(free_y * 3 / 4))),
        ("center", lambda free_x, free_y: (round(free_x / 2), round(free_y / 2))),
    ],
)
def test_position_places_the_scaled_subject(
    running: TestClient, position: str, where: Place
) -> None:
    _, _, width, height = reference(running)
    response = remove(running, photo(), scale="25%", position=position, format="png")
    factor = min(0.25 * 200 / width, 0.25 * 160 / height)
    size = (round(width * factor), round(height * factor))
    left, top = where(200 - size[0], 160 - size[1])
    assert within(header_box(response), (left, top, *size))


def test_position_original_keeps_the_subject_where_it_was(running: TestClient) -> None:
    corner = photo(subject=(10, 10, 90, 90))  # off centre, so "center" would differ
    left, top, width, height = header_box(remove(running, corner, format="png"))
    response = remove(running, corner, scale="25%", position="original", format="png")
    box = header_box(response)
    assert box[2] < width - 10  # it did shrink
    # Scaled about its own centre.
    assert abs((box[0] + box[2] / 2) - (left + width / 2)) <= 1
    assert abs((box[1] + box[3] / 2) - (top + height / 2)) <= 1


def test_position_alone_moves_the_subject_at_its_size(running: TestClient) -> None:
    _, _, width, height = reference(running)
    response = remove(running, photo(), position="0% 0%", format="png")
    assert header_box(response) == (0, 0, width, height)


def test_scale_and_position_original_are_the_plain_cutout(running: TestClient) -> None:
    plain = remove(running, photo(), format="png")
    response = remove(running, photo(), scale="original", position="original", format="png")
    assert response.content == plain.content


def test_crop_then_scale_in_the_cropped_canvas(running: TestClient) -> None:
    _, _, width, height = reference(running)
    response = remove(running, photo(), crop="true", crop_margin="20px", scale="50%", format="png")
    assert decoded(response.content).size == (width + 40, height + 40)
    box = header_box(response)
    assert abs(box[2] - round((width + 40) / 2)) <= 2


# --- backgrounds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("color", "expected"),
    [
        ("red", (255, 0, 0, 255)),
        ("81d4fa", (0x81, 0xD4, 0xFA, 255)),
        ("#81d4fa", (0x81, 0xD4, 0xFA, 255)),
        ("fff", (255, 255, 255, 255)),
        ("00ff0080", (0, 255, 0, 128)),
        ("0f08", (0, 255, 0, 136)),
        ("Green", (0, 128, 0, 255)),
    ],
)
def test_bg_color(running: TestClient, color: str, expected: tuple[int, ...]) -> None:
    pixels = rgba(remove(running, photo(), bg_color=color, format="png"))
    assert tuple(pixels[2, 2]) == expected
    # The subject itself is untouched.
    assert pixels[80, 100, 3] == 255 and (pixels[80, 100, :3] >= 225).all()


def solid(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def test_bg_image_file_lies_under_the_cutout(running: TestClient) -> None:
    body, header = multipart(
        ("image_file", "photo.png", "image/png", photo()),
        ("bg_image_file", "background.png", None, solid((0, 0, 200), (50, 30))),
        ("format", None, None, b"png"),
    )
    response = running.post(PATH, headers={**AUTH, "content-type": header}, content=body)
    pixels = rgba(response)
    assert pixels.shape[:2] == (160, 200)  # the background is fitted to the output
    assert tuple(pixels[2, 2]) == (0, 0, 200, 255)
    assert (pixels[:, :, 3] == 255).all()
    assert (pixels[80, 100, :3] >= 225).all()
    auto = running.post(
        PATH,
        headers={**AUTH, "content-type": header},
        content=body.replace(b"\r\n\r\npng\r\n", b"\r\n\r\nauto\r\n"),
    )
    assert auto.headers["content-type"] == "image/jpeg"  # nothing is transparent


# --- what Matte accepts and does not act on ---------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"add_shadow": "true"},
        {"add_shadow": "false"},
        {"shadow_type": "none"},
        {"shadow_type": "car"},
        {"shadow_type": "3D"},
        {"shadow_type": "drop"},
        {"shadow_opacity": "0"},
        {"shadow_opacity": "50"},
        {"shadow_opacity": "100"},
        {"semitransparency": "true"},
        {"semitransparency": "false"},
        {"type": "car", "type_level": "2"},
        {"unknown_field": "anything", "api_key": "ignored"},
    ],
)
def test_accepted_fields_that_change_nothing(running: TestClient, fields: dict[str, str]) -> None:
    plain = remove(running, photo(), format="png")
    response = remove(running, photo(), format="png", **fields)
    assert response.status_code == 200, response.text
    assert response.content == plain.content


def test_every_documented_value_is_accepted(running: TestClient) -> None:
    values = {
        "size": ["preview", "small", "regular", "medium", "hd", "full", "4k", "auto", "50MP"],
        "type": [
            "auto",
            "person",
            "product",
            "animal",
            "car",
            "car_interior",
            "car_part",
            "transportation",
            "graphic",
            "graphics",
            "other",
        ],
        "type_level": ["none", "latest", "1", "2"],
        "format": ["auto", "png", "jpg", "zip", "webp"],
        "channels": ["rgba", "alpha"],
        "shadow_type": ["none", "car", "3D", "drop"],
    }
    for name, accepted in values.items():
        for value in accepted:
            response = remove(running, photo(), **{name: value})
            assert response.status_code == 200, (name, value, response.text)
