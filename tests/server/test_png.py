"""The PNG writer: every supported layout decodes back to the exact pixels."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from server import cores, png
from server.png import encode_png


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize(
    ("shape", "mode"),
    [((7, 5), "L"), ((1, 9, 3), "RGB"), ((33, 17, 4), "RGBA"), ((256, 300, 4), "RGBA")],
)
@pytest.mark.parametrize("level", [0, 1, 9])
def test_round_trip_is_exact(shape: tuple[int, ...], mode: str, level: int) -> None:
    pixels = _noise(shape)
    image = Image.open(io.BytesIO(encode_png(pixels, level)))
    assert image.format == "PNG"
    assert image.mode == mode
    assert image.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(image), pixels)


def test_up_filter_wraps_modulo_256() -> None:
    # Rows going 255 -> 0 -> 255 need the uint8 wrap-around of the Up filter.
    pixels = np.array([[255, 0], [0, 255], [255, 0]], dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(pixels, 1)))), pixels)


def test_non_contiguous_input_is_accepted() -> None:
    pixels = _noise((40, 60, 4))[:, ::2]
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(pixels, 1))))
    assert np.array_equal(decoded, pixels)


def test_level_is_the_zlib_level() -> None:
    # A smooth gradient compresses far better at 9 than at 0 (stored).
    pixels = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    stored, best = encode_png(pixels, 0), encode_png(pixels, 9)
    assert len(best) < len(stored) / 10
    assert len(stored) > pixels.size  # level 0 stores every filtered byte


def test_chunks_carry_valid_crcs() -> None:
    data = encode_png(_noise((8, 8, 3)), 1)
    offset = 8
    kinds = []
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        crc = int.from_bytes(data[offset + 8 + length : offset + 12 + length], "big")
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


@pytest.mark.parametrize(
    "pixels",
    [np.zeros((4, 4), dtype=np.uint16), np.zeros((4, 4, 2), dtype=np.uint8)],
    ids=["uint16", "two-channels"],
)
def test_unsupported_layouts_are_refused(pixels: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_png(pixels, 1)


@pytest.mark.parametrize("level", [2, 3, 4, 6])
def test_every_level_round_trips(level: int) -> None:
    pixels = _noise((50, 31, 4), seed=level)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(pixels, level)))), pixels)


def _idat(data: bytes) -> bytes:
    # The writer emits one IDAT, right after the signature and the 25-byte IHDR chunk.
    offset = 8 + 25
    length = int.from_bytes(data[offset : offset + 4], "big")
    assert data[offset + 4 : offset + 8] == b"IDAT"
    return data[offset + 8 : offset + 8 + length]


@pytest.mark.parametrize(("level", "isal"), [(0, False), (1, True), (3, True), (4, False)])
def test_levels_1_to_3_deflate_with_isal(level: int, isal: bool) -> None:
    # ISA-L writes the served level 1 about 5x faster than zlib; its levels stop at 3.
    from isal import isal_zlib

    pixels = np.tile(np.arange(64, dtype=np.uint8), (32, 1))
    filtered = np.empty((32, 65), dtype=np.uint8)
    filtered[0] = [0, *pixels[0]]
    filtered[1:, 0] = 2
    filtered[1:, 1:] = 0
    expected = (isal_zlib if isal else zlib).compress(filtered.tobytes(), level)
    assert _idat(encode_png(pixels, level)) == expected


@pytest.mark.parametrize("bands", [2, 3, 7])
@pytest.mark.parametrize(
    ("shape", "mode"), [((1024, 1100), "L"), ((700, 800, 3), "RGB"), ((613, 1024, 4), "RGBA")]
)
def test_bands_deflated_on_several_cores_make_one_valid_stream(
    bands: int, shape: tuple[int, ...], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cores, "cores", lambda: bands)
    monkeypatch.setattr(png, "MIN_BAND_BYTES", 1)
    pixels = _noise(shape)
    data = encode_png(pixels, 1)
    # zlib checks the stream's Adler-32 (the bands' combined) and that it ends.
    raw = zlib.decompress(_idat(data))
    height = shape[0]
    assert len(raw) == height * (pixels[0].size + 1)
    assert _sync_flushes(_idat(data)) >= bands - 1  # it was cut, not deflated whole
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == mode
        assert np.array_equal(np.asarray(image), pixels)


def _sync_flushes(stream: bytes) -> int:
    """The empty stored blocks a sync flush leaves (00 00 FF FF)."""
    return stream.count(b"\x00\x00\xff\xff")


@pytest.mark.parametrize("length", [0, 1, 5552, 65520, 65521, 65522, 300_000])
def test_adler32_combine_is_zlibs(length: int) -> None:
    rng = np.random.default_rng(length)
    first, second = rng.bytes(1234), rng.bytes(length)
    combined = png.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)
