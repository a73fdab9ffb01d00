"""Decoding with limits checked before the pixels, and encoding PNG/WebP."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from server.errors import BadRequest
from server.imaging import (
    MAX_JPEG_SCANS,
    Limits,
    Picture,
    _to_picture,
    check_size,
    decode,
    encode,
)

# The server's limits (README): sides of 64 px or more, 4,096 to 4,194,304 pixels.
LIMITS = Limits(min_side=64, min_pixels=4_096, max_pixels=4_194_304)
# For content tests on small images.
ANY_SIZE = Limits(min_side=1, min_pixels=1, max_pixels=4_194_304)

NOT_AN_IMAGE = "image: must be a jpeg, png or webp image"


def corrupt(fmt: str) -> str:
    return f"image: the {fmt} is truncated or corrupt"


Array = npt.NDArray[np.uint8]


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def refusal(data: bytes, limits: Limits = ANY_SIZE) -> tuple[str, ...]:
    with pytest.raises(BadRequest) as error:
        decode(data, limits)
    return error.value.messages


def pattern(height: int = 6, width: int = 8) -> Array:
    """An RGB image with a different colour at every pixel, so any flip or swap shows."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 30, yy * 40, 255 - xx * 10 - yy * 5], axis=-1).astype(np.uint8)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def png_header(width: int, height: int) -> bytes:
    """A greyscale PNG that claims `width` x `height` and holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"") + _chunk(b"IEND", b"")
    )


# --- check_size: each limit at its edge and one past it ----------------------------------


def assert_checked(size: tuple[int, int], limits: Limits, message: str | None) -> None:
    """`size` passes `limits` (message None) or is refused with exactly `message`."""
    if message is None:
        check_size(*size, limits)  # passes: raises nothing
    else:
        with pytest.raises(BadRequest) as error:
            check_size(*size, limits)
        assert error.value.messages == (message,)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((64, 64), None),
        ((63, 100), "image: width and height must be at least 64 pixels"),
        ((100, 63), "image: width and height must be at least 64 pixels"),
        ((63, 63), "image: width and height must be at least 64 pixels"),
        ((64, 65_536), None),
        ((2048, 2048), None),
        ((2049, 2048), "image: must have at most 4,194,304 pixels, got 4,196,352"),
        ((2048, 2049), "image: must have at most 4,194,304 pixels, got 4,196,352"),
    ],
)
def test_sides_and_pixels_at_the_servers_limits(size: tuple[int, int], message: str | None) -> None:
    assert_checked(size, LIMITS, message)


# Each limit on its own: sides of 1 px allowed, so the pixel counts can sit at any edge.
PIXELS = Limits(min_side=1, min_pixels=4_096, max_pixels=4_194_304)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((4_096, 1), None),
        ((1, 4_096), None),
        ((4_095, 1), "image: must have at least 4,096 pixels"),
        ((1, 4_095), "image: must have at least 4,096 pixels"),
        ((4_194_304, 1), None),
        ((1, 4_194_304), None),
        ((4_194_305, 1), "image: must have at most 4,194,304 pixels, got 4,194,305"),
        ((1, 4_194_305), "image: must have at most 4,194,304 pixels, got 4,194,305"),
        # The count is width times height, not their sum or either side.
        ((100, 41), None),
        ((64, 63), "image: must have at least 4,096 pixels"),
        ((2049, 2047), None),
    ],
)
def test_pixel_counts_at_each_edge(size: tuple[int, int], message: str | None) -> None:
    assert_checked(size, PIXELS, message)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((10, 20), None),
        ((9, 30), "image: width and height must be at least 10 pixels"),
        ((30, 9), "image: width and height must be at least 10 pixels"),
        ((10, 19), "image: must have at least 200 pixels"),
        ((10, 30), None),
        ((10, 31), "image: must have at most 300 pixels, got 310"),
    ],
)
def test_the_limits_given_are_the_ones_checked(size: tuple[int, int], message: str | None) -> None:
    assert_checked(size, Limits(min_side=10, min_pixels=200, max_pixels=300), message)


# --- decode: formats ---------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("WEBP", {"lossless": True})])
def test_lossless_formats_decode_to_their_exact_pixels(
    fmt: str, options: dict[str, object]
) -> None:
    # The format is sniffed from the bytes: decode is given nothing else.
    rgb = pattern()
    picture = decode(save(Image.fromarray(rgb), fmt, **options), ANY_SIZE)
    assert picture.rgb.dtype == np.uint8 and picture.rgb.shape == (6, 8, 3)
    assert np.array_equal(picture.rgb, rgb)
    assert picture.alpha is None
    assert picture.size == (8, 6)  # (width, height)


def test_jpeg_decodes_to_its_colours() -> None:
    rgb = np.zeros((64, 96, 3), dtype=np.uint8)
    rgb[:, :48] = (200, 60, 30)
    rgb[:, 48:] = (20, 90, 220)
    picture = decode(save(Image.fromarray(rgb), "JPEG", quality=95), ANY_SIZE)
    assert picture.size == (96, 64) and picture.alpha is None
    # Two-sided: JPEG is lossy, but flat areas come back within a few levels.
    for (y, x), colour in {(32, 20): (200, 60, 30), (32, 76): (20, 90, 220)}.items():
        got = picture.rgb[y, x].astype(int)
        assert (np.abs(got - colour) <= 4).all(), (got, colour)


@pytest.mark.parametrize(
    ("fmt", "mode", "named"),
    [
        ("GIF", "P", "gif"),
        ("TIFF", "RGB", "tiff"),
        ("BMP", "RGB", "bmp"),
        ("ICO", "RGBA", "ico"),
        ("PDF", "RGB", "pdf"),
        # No signature worth naming: the plain refusal.
        ("TGA", "RGB", None),
        ("PPM", "RGB", None),
    ],
)
def test_other_image_formats_are_refused_by_name(fmt: str, mode: str, named: str | None) -> None:
    # Pillow could decode most of these; naming the accepted plugins stops it.
    data = save(Image.new(mode, (64, 64)), fmt)
    expected = f"image: {named} is not supported: " if named else "image: "
    assert refusal(data) == (expected + "must be a jpeg, png or webp image",)


@pytest.mark.parametrize(
    "data",
    [
        b"BM" + bytes(64),  # "BM" and no DIB header size after it
        b"\0\0\0\x18ftypmp42" + bytes(32),  # an MP4, not a HEIF image
        b"<?xml version='1.0'?><html/>",
    ],
)
def test_lookalikes_of_other_formats_get_the_plain_refusal(data: bytes) -> None:
    assert refusal(data) == (NOT_AN_IMAGE,)


def test_heic_avif_and_svg_are_named() -> None:
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)
    avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + bytes(64)
    svg = b'  <?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'
    for data, name in ((heic, "heic"), (avif, "avif"), (svg, "svg")):
        assert refusal(data) == (
            f"image: {name} is not supported: must be a jpeg, png or webp image",
        )


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8"]
)
def test_unknown_bytes_are_not_an_image(data: bytes) -> None:
    assert refusal(data) == (NOT_AN_IMAGE,)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "png"),  # the signature, then no valid chunk
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),  # a WebP header cut short
    ],
)
def test_a_broken_header_names_the_format(data: bytes, fmt: str) -> None:
    # The same message as a file cut short in its pixels: one message per format.
    assert refusal(data) == (corrupt(fmt),)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_file_cut_short_names_its_format(fmt: str, keep: float) -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    data = save(Image.fromarray(noisy), fmt)
    assert refusal(data[: int(len(data) * keep)]) == (corrupt(fmt.lower()),)


def test_png_without_pixel_data_is_corrupt() -> None:
    assert refusal(png_header(100, 100)) == (corrupt("png"),)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize(
    "chunk",
    [b"zTXt", b"iCCP"],
)
def test_a_zlib_bomb_in_a_png_chunk_is_named_as_such(chunk: bytes) -> None:
    bomb = zlib.compress(b"\0" * (20 * 1024 * 1024), 9)  # 20 KB that inflate to 20 MB
    payload = (b"comment" if chunk == b"zTXt" else b"icc") + b"\0\0" + bomb
    plain = save(Image.new("RGB", (100, 100)), "PNG")
    data = plain[:33] + png_chunk(chunk, payload) + plain[33:]  # after IHDR
    assert refusal(data) == (
        "image: the png has a text or colour-profile chunk too large to decompress",
    )


# --- decode: sizes before pixels -----------------------------------------------------------


def test_pillows_own_bomb_ceiling_is_a_400_not_a_crash() -> None:
    # 14000 x 14000 = 196 M pixels is past Pillow's ceiling (2 x 89.5 M): Image.open itself
    # raises DecompressionBombError while reading the header, before our own check runs.
    assert refusal(png_header(14_000, 14_000), LIMITS) == (
        "image: must have at most 4,194,304 pixels",
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (png_header(2049, 2048), "image: must have at most 4,194,304 pixels, got 4,196,352"),
        (png_header(8000, 8000), "image: must have at most 4,194,304 pixels, got 64,000,000"),
        (png_header(63, 100), "image: width and height must be at least 64 pixels"),
        (
            save(Image.new("RGB", (2049, 2048)), "JPEG"),
            "image: must have at most 4,194,304 pixels, got 4,196,352",
        ),
        (
            save(Image.new("RGB", (64, 63)), "WEBP"),
            "image: width and height must be at least 64 pixels",
        ),
    ],
)
def test_sizes_are_refused_before_pillow_decodes(
    data: bytes, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels were decoded before the size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert refusal(data, LIMITS) == (message,)


def test_pixels_are_decoded_once_the_size_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # The counterpart of the test above: the patched load is what reads the pixels.
    loads: list[str] = []
    original = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile) -> object:
        loads.append(self.format or "")
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    picture = decode(save(Image.new("RGB", (64, 64), (9, 8, 7)), "PNG"), LIMITS)
    assert loads and loads[0] == "PNG"
    assert picture.rgb.shape == (64, 64, 3) and (picture.rgb == (9, 8, 7)).all()


# --- decode: modes --------------------------------------------------------------------------


def test_sixteen_bit_png_is_scaled_to_8_bits_not_clipped() -> None:
    values = np.array([[0, 255, 256, 2000, 32768, 60000, 65280, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    picture = decode(save(image, "PNG"), ANY_SIZE)
    # value >> 8, as an independent table: clipping would make everything from 255 on white.
    expected = np.array([[0, 0, 1, 7, 128, 234, 255, 255]], dtype=np.uint8)
    assert np.array_equal(picture.rgb, np.repeat(expected[..., None], 3, axis=2))
    assert picture.alpha is None


@pytest.mark.parametrize(
    ("mode", "raw"),
    [
        ("I;16", lambda v: v.astype("<u2").tobytes()),
        ("I;16L", lambda v: v.astype("<u2").tobytes()),
        ("I;16B", lambda v: v.astype(">u2").tobytes()),
        ("I;16N", lambda v: v.astype("=u2").tobytes()),
        ("I", lambda v: v.astype("=i4").tobytes()),
    ],
)
def test_every_sixteen_bit_mode_is_scaled(
    mode: str, raw: Callable[[npt.NDArray[np.int64]], bytes]
) -> None:
    # Older Pillows opened 16-bit PNGs as "I"; byte orders vary by platform and plugin.
    values = np.array([[0, 255, 256, 2000, 32768, 60000, 65535]], dtype=np.int64)
    picture = _to_picture(Image.frombytes(mode, (7, 1), raw(values)))
    expected = np.array([0, 0, 1, 7, 128, 234, 255], dtype=np.uint8)
    assert np.array_equal(picture.rgb[0], np.repeat(expected[:, None], 3, axis=1))


def test_32_bit_values_past_16_bits_saturate_at_white() -> None:
    values = np.array([[70_000, 16_777_215]], dtype=np.int32)
    picture = _to_picture(Image.fromarray(values, "I"))
    assert (picture.rgb == 255).all()


def test_float_images_are_clipped_to_8_bits() -> None:
    values = np.array([[-5.0, 0.0, 100.7, 255.0, 300.0]], dtype=np.float32)
    picture = _to_picture(Image.fromarray(values, "F"))
    expected = np.array([0, 0, 100, 255, 255], dtype=np.uint8)
    assert np.array_equal(picture.rgb[0], np.repeat(expected[:, None], 3, axis=1))


def test_palette_with_transparency_gives_an_alpha() -> None:
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([20, 20, 20, 250, 200, 100, 255, 255, 255])
    picture = decode(save(image, "PNG", transparency=2), ANY_SIZE)
    palette = np.array([(20, 20, 20), (250, 200, 100), (255, 255, 255)], dtype=np.uint8)
    assert np.array_equal(picture.rgb, palette[indices])
    assert picture.alpha is not None
    assert np.array_equal(picture.alpha, np.array([[255, 255, 0], [0, 255, 255]]))


def test_palette_without_transparency_is_opaque() -> None:
    indices = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([20, 30, 40, 250, 200, 100])
    picture = decode(save(image, "PNG"), ANY_SIZE)
    assert np.array_equal(picture.rgb[0], [(20, 30, 40), (250, 200, 100)])
    assert picture.alpha is None


@pytest.mark.parametrize(
    ("mode", "pixels", "key", "rgb"),
    [
        (
            "RGB",
            [[(255, 255, 255), (10, 20, 30)]],
            (255, 255, 255),
            [(255, 255, 255), (10, 20, 30)],
        ),
        ("L", [[0, 200]], 0, [(0, 0, 0), (200, 200, 200)]),
    ],
)
def test_a_png_colour_key_gives_an_alpha(
    mode: str, pixels: list[list[object]], key: object, rgb: list[tuple[int, int, int]]
) -> None:
    # PNG's tRNS in an L or RGB image names one colour as transparent (Pillow keeps the
    # mode and puts the key in info["transparency"]): those pixels must stay transparent.
    image = Image.fromarray(np.array(pixels, dtype=np.uint8), mode)
    picture = decode(save(image, "PNG", transparency=key), ANY_SIZE)
    assert np.array_equal(picture.rgb[0], rgb)
    assert picture.alpha is not None and np.array_equal(picture.alpha, [[0, 255]])


def test_grey_is_spread_over_three_channels() -> None:
    grey = np.array([[0, 30, 200, 255]], dtype=np.uint8)
    picture = decode(save(Image.fromarray(grey, "L"), "PNG"), ANY_SIZE)
    assert np.array_equal(picture.rgb[0], np.repeat(grey[0][:, None], 3, axis=1))
    assert picture.alpha is None


def test_grey_with_alpha_keeps_both() -> None:
    la = np.array([[[200, 128], [30, 255], [250, 0]]], dtype=np.uint8)
    picture = decode(save(Image.fromarray(la, "LA"), "PNG"), ANY_SIZE)
    assert np.array_equal(picture.rgb[0], [(200, 200, 200), (30, 30, 30), (250, 250, 250)])
    assert picture.alpha is not None and np.array_equal(picture.alpha, [[128, 255, 0]])


def test_rgba_keeps_its_alpha_and_colours() -> None:
    rgba = np.array([[[240, 180, 120, 200], [10, 20, 30, 255], [1, 2, 3, 0]]], dtype=np.uint8)
    picture = decode(save(Image.fromarray(rgba, "RGBA"), "PNG"), ANY_SIZE)
    assert np.array_equal(picture.rgb, rgba[..., :3])
    assert picture.alpha is not None and np.array_equal(picture.alpha, rgba[..., 3])
    assert picture.rgb.flags.c_contiguous and picture.alpha.dtype == np.uint8


def test_an_all_opaque_alpha_is_dropped() -> None:
    rgba = np.concatenate([pattern(), np.full((6, 8, 1), 255, dtype=np.uint8)], axis=2)
    picture = decode(save(Image.fromarray(rgba, "RGBA"), "PNG"), ANY_SIZE)
    assert picture.alpha is None
    assert np.array_equal(picture.rgb, pattern())


def test_one_pixel_short_of_opaque_keeps_the_alpha() -> None:
    rgba = np.concatenate([pattern(), np.full((6, 8, 1), 255, dtype=np.uint8)], axis=2)
    rgba[5, 7, 3] = 254
    picture = decode(save(Image.fromarray(rgba, "RGBA"), "PNG"), ANY_SIZE)
    assert picture.alpha is not None
    assert picture.alpha[5, 7] == 254 and (picture.alpha.sum() == 255 * 48 - 1)


@pytest.mark.parametrize(
    ("mode", "raw"),
    [
        ("RGBA", bytes([9, 8, 7, 255, 9, 8, 7, 0])),
        ("RGBa", bytes([9, 8, 7, 255, 0, 0, 0, 0])),  # premultiplied
        ("LA", bytes([9, 255, 9, 0])),
        ("PA", bytes([0, 255, 0, 0])),
    ],
)
def test_every_mode_with_alpha_keeps_it(mode: str, raw: bytes) -> None:
    # Modes that no accepted decoder makes today (PA, RGBa) are covered here directly.
    picture = _to_picture(Image.frombytes(mode, (2, 1), raw))
    assert picture.alpha is not None and np.array_equal(picture.alpha, [[255, 0]])


def test_cmyk_is_converted_to_rgb_by_its_channels() -> None:
    cmyk = Image.new("CMYK", (64, 64), (20, 60, 180, 25))
    picture = decode(save(cmyk, "JPEG", quality=95), ANY_SIZE)
    # Independent reference: channel = (255 - C|M|Y) * (255 - K) / 255.
    expected = np.array([(255 - c) * (255 - 25) / 255 for c in (20, 60, 180)])
    got = picture.rgb[32, 32].astype(float)
    assert (np.abs(got - expected) <= 4).all(), (got, expected)
    assert picture.alpha is None


# --- decode: EXIF orientation ----------------------------------------------------------------

# How each EXIF orientation's stored pixels turn into the displayed image (EXIF 2.3, tag 274),
# written with numpy, not with Pillow's transpose.
UPRIGHT: dict[int, Callable[[Array], Array]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),  # turned 90 clockwise to display
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, 1),  # turned 90 anticlockwise to display
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = pattern(6, 8)
    picture = decode(save(Image.fromarray(stored), "PNG", exif=exif.tobytes()), ANY_SIZE)
    assert np.array_equal(picture.rgb, UPRIGHT[orientation](stored))


def test_exif_is_applied_to_the_alpha_as_well() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)  # the only opaque pixel: stored top-left
    picture = decode(save(Image.fromarray(rgba), "PNG", exif=exif.tobytes()), ANY_SIZE)
    assert picture.alpha is not None and picture.alpha.shape == (8, 6)
    assert [tuple(p) for p in np.argwhere(picture.alpha == 255)] == [(0, 5)]  # top-right


def test_picture_size_is_width_then_height() -> None:
    picture = Picture(np.zeros((6, 8, 3), dtype=np.uint8), None)
    assert picture.size == (8, 6)


# --- encode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pixels", "mode"),
    [
        (pattern()[..., 0], "L"),
        (pattern(), "RGB"),
        (np.concatenate([pattern(), pattern()[..., :1]], axis=2), "RGBA"),
    ],
)
def test_png_round_trips_exactly(pixels: Array, mode: str) -> None:
    data = encode(pixels, "png", png_level=1, webp_quality=90)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == mode
    assert np.array_equal(np.asarray(image), pixels)


def test_png_level_is_the_compression_level() -> None:
    smooth = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    stored = encode(smooth, "png", png_level=0, webp_quality=90)
    packed = encode(smooth, "png", png_level=9, webp_quality=90)
    assert len(packed) < len(stored) // 4
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored))), smooth)


def test_webp_keeps_the_alpha_lossless_and_the_colours_close() -> None:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:64, 0:96]
    rgb = np.stack([xx * 2, yy * 3, 255 - xx], axis=-1).astype(np.uint8)
    alpha = rng.integers(0, 256, (64, 96), dtype=np.uint8)  # noise: lossy coding would blur it
    alpha[alpha == 0] = 1  # WebP may drop the colour under alpha 0; keep every pixel visible
    data = encode(np.dstack([rgb, alpha]), "webp", png_level=1, webp_quality=90)
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP" and image.mode == "RGBA"
    out = np.asarray(image)
    assert np.array_equal(out[..., 3], alpha)
    assert np.abs(out[..., :3].astype(int) - rgb).mean() < 6


def test_webp_of_rgb_and_grey() -> None:
    rgb = np.full((64, 64, 3), (200, 100, 50), dtype=np.uint8)
    image = Image.open(io.BytesIO(encode(rgb, "webp", png_level=1, webp_quality=90)))
    assert image.format == "WEBP" and image.mode == "RGB"
    assert (np.abs(np.asarray(image)[32, 32].astype(int) - (200, 100, 50)) <= 4).all()
    grey = np.full((64, 64), 77, dtype=np.uint8)
    image = Image.open(io.BytesIO(encode(grey, "webp", png_level=1, webp_quality=90)))
    assert image.format == "WEBP"
    assert (np.abs(np.asarray(image.convert("L")).astype(int) - 77) <= 3).all()


def test_webp_quality_is_the_colour_quality() -> None:
    noisy = np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    low = encode(noisy, "webp", png_level=1, webp_quality=5)
    high = encode(noisy, "webp", png_level=1, webp_quality=95)
    assert len(low) * 2 < len(high)


# --- decode: malformed EXIF -------------------------------------------------------------------


def exif_block(*entries: tuple[int, int, int, bytes]) -> bytes:
    """A big-endian EXIF block with one IFD of (tag, type, count, value) entries, written
    by hand: Pillow refuses to write tags of the wrong type, and hostile clients do not."""
    ifd_size = 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack(">H", len(entries)), b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            ifd += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            ifd += struct.pack(">HHII", tag, kind, count, 8 + ifd_size + len(extra))
            extra += value
    ifd += struct.pack(">I", 0)
    return b"Exif\0\0MM\0\x2a" + struct.pack(">I", 8) + ifd + extra


ORIENTATION_6 = (0x0112, 3, 1, struct.pack(">H", 6))  # SHORT: rotate 90 clockwise
MALFORMED_EXIF = {
    # ImageOps.exif_transpose rewrote these after turning the image, and raised.
    "xresolution as text": exif_block(ORIENTATION_6, (0x011A, 2, 4, b"abc\0")),
    "artist as a rational": exif_block(ORIENTATION_6, (0x013B, 5, 1, struct.pack(">II", 3, 2))),
    "a zero denominator": exif_block(ORIENTATION_6, (0x011A, 5, 1, struct.pack(">II", 3, 0))),
}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("case", sorted(MALFORMED_EXIF))
def test_malformed_exif_still_decodes_upright(fmt: str, case: str) -> None:
    # JPEG's APP1, PNG's eXIf chunk, WebP's EXIF chunk: the orientation is still read.
    data = save(Image.new("RGB", (200, 100), "red"), fmt, exif=MALFORMED_EXIF[case])
    picture = decode(data, ANY_SIZE)
    assert picture.size == (100, 200)


def test_an_orientation_of_the_wrong_type_is_no_orientation() -> None:
    data = save(Image.new("RGB", (200, 100)), "JPEG", exif=exif_block((0x0112, 2, 4, b"six\0")))
    assert decode(data, ANY_SIZE).size == (200, 100)


@pytest.mark.parametrize("block", [b"Exif\0\0MM\0", b"Exif\0\0XX\0\x2a\0\0\0\x08"])
def test_an_exif_block_that_cannot_be_read_is_ignored(block: bytes) -> None:
    # Not even a TIFF header: reading the orientation fails, the photo does not (it
    # was refused as corrupt, though its pixels are whole).
    data = save(Image.new("RGB", (200, 100)), "PNG", exif=block)
    assert decode(data, ANY_SIZE).size == (200, 100)


# --- decode: work bounded by the file's structure ---------------------------------------------


def test_a_progressive_jpeg_decodes() -> None:
    data = save(Image.new("RGB", (200, 100), "blue"), "JPEG", progressive=True)
    assert data.count(b"\xff\xda") > 1  # it has several scans
    assert decode(data, ANY_SIZE).size == (200, 100)


def with_scans(data: bytes, extra: int) -> bytes:
    """`data` with `extra` more start-of-scan markers, hidden in a comment segment
    right after SOI: the count is all the guard reads, before any decoding."""
    payload = b"\xff\xda" * extra
    comment = b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + comment + data[2:]


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_of_too_many_scans_is_refused_before_decoding(progressive: bool) -> None:
    data = save(Image.new("RGB", (200, 100)), "JPEG", progressive=progressive)
    own = data.count(b"\xff\xda")
    assert decode(with_scans(data, MAX_JPEG_SCANS - own), ANY_SIZE).size == (200, 100)
    with pytest.raises(BadRequest) as refused:
        decode(with_scans(data, MAX_JPEG_SCANS - own + 1), ANY_SIZE)
    assert refused.value.messages == (
        f"image: a JPEG of more than 100 scans is refused (this one has {MAX_JPEG_SCANS + 1})",
    )


def test_png_and_webp_are_not_counted_as_jpeg_scans() -> None:
    # The same two bytes in a PNG's text are just text.
    image = Image.new("RGB", (200, 100))
    info = PngImagePlugin.PngInfo()
    info.add_text("note", "\xff\xda" * 200)
    assert decode(save(image, "PNG", pnginfo=info), ANY_SIZE).size == (200, 100)


# --- decode: animation, Pillow's bomb warning, a missing end marker ---------------------------

ANIMATED = "image: animated images are not accepted: send a still jpeg, png or webp"


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_an_animated_image_is_refused_not_cut_to_its_first_frame(fmt: str) -> None:
    # Two frames: the fewest that animate.
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "green")]
    data = save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50)
    assert refusal(data) == (ANIMATED,)


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_one_frame_saved_as_an_animation_is_a_still_image(fmt: str) -> None:
    data = save(Image.new("RGB", (64, 64), "red"), fmt, save_all=True, duration=50)
    assert decode(data, ANY_SIZE).size == (64, 64)


def test_a_header_between_pillows_warning_and_its_ceiling_is_refused() -> None:
    # 100 M pixels: past Pillow's DecompressionBombWarning (89.5 M), short of its error.
    header = png_header(10_000, 10_000)
    # Where warnings are errors (this suite) Pillow raises the warning itself...
    assert refusal(header, LIMITS) == ("image: must have at most 4,194,304 pixels",)
    # ...and elsewhere it only warns, and the header check refuses the size.
    with pytest.warns(Image.DecompressionBombWarning):
        message = refusal(header, LIMITS)
    assert message == ("image: must have at most 4,194,304 pixels, got 100,000,000",)


def test_a_jpeg_missing_only_its_end_marker_is_refused() -> None:
    data = save(Image.new("RGB", (200, 100), "blue"), "JPEG")
    assert data.endswith(b"\xff\xd9")
    assert refusal(data[:-2]) == (corrupt("jpeg"),)


def test_why_a_missing_end_marker_cannot_be_told_from_a_cut() -> None:
    """What imaging.loaded's comment rests on: with EOI put back, a flat JPEG cut
    20 bytes short decodes the same whatever padding comes first (so comparing two
    paddings cannot spot the cut), yet its bottom is not the original's."""
    whole = save(Image.new("RGB", (200, 100), (200, 200, 200)), "JPEG", quality=90)
    cut = whole[:-20]

    def pixels(data: bytes) -> bytes:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.tobytes()

    repaired = pixels(cut + b"\xff\xd9")
    assert repaired == pixels(cut + b"\xff\x00" * 4 + b"\xff\xd9")
    assert repaired != pixels(whole)
