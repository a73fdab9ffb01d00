"""structure.py: JPEG segments and PNG chunks counted, and bounded, before Pillow parses them."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
from PIL import Image

from server.errors import BadRequest
from server.imaging import Limits, decode
from server.structure import MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS

ANY_SIZE = Limits(min_side=1, min_pixels=1, max_pixels=4_194_304)
SEGMENTS = "image: a JPEG of more than 1,000 segments before its first scan is refused"
CHUNKS = "image: a PNG of more than 10,000 chunks is refused"
# What Pillow writes before a baseline JPEG's scan: APP0, 2 DQT, SOF0, 4 DHT.
PILLOW_JPEG_SEGMENTS = 8
# And a PNG's chunks: IHDR, one IDAT, IEND.
PILLOW_PNG_CHUNKS = 3
# The cases cost seconds and hundreds of MiB before the walks; now milliseconds.
BOUND_S = 0.5
BOUND_BYTES = 1024 * 1024


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


JPEG = save(Image.new("RGB", (64, 48), "teal"), "JPEG")
PNG = save(Image.new("RGB", (64, 48), "teal"), "PNG")


def segment(marker: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def chunk(kind: bytes, payload: bytes = b"") -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def after_soi(*segments: bytes) -> bytes:
    return JPEG[:2] + b"".join(segments) + JPEG[2:]


def after_ihdr(*chunks: bytes) -> bytes:
    return PNG[:33] + b"".join(chunks) + PNG[33:]


def before_iend(*chunks: bytes) -> bytes:
    return PNG[:-12] + b"".join(chunks) + PNG[-12:]


def refusal(data: bytes) -> tuple[str, ...]:
    with pytest.raises(BadRequest) as refused:
        decode(data, ANY_SIZE)
    return refused.value.messages


def test_the_references_count_what_pillow_writes() -> None:
    head = JPEG[: JPEG.index(b"\xff\xda")]
    assert head.count(b"\xff") - 1 == PILLOW_JPEG_SEGMENTS  # less SOI
    assert PNG.count(b"IHDR") + PNG.count(b"IDAT") + PNG.count(b"IEND") == PILLOW_PNG_CHUNKS


# --- JPEG ------------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", [0xE1, 0xFE])  # APP1, COM
def test_jpeg_segments_up_to_the_limit_are_accepted(marker: int) -> None:
    extra = MAX_JPEG_SEGMENTS - PILLOW_JPEG_SEGMENTS
    assert decode(after_soi(*[segment(marker, b"x")] * extra), ANY_SIZE).size == (64, 48)
    assert refusal(after_soi(*[segment(marker, b"x")] * (extra + 1))) == (SEGMENTS,)


def test_fill_bytes_before_a_marker_are_not_segments() -> None:
    # 0xFF fill before a marker is allowed (ITU T.81 B.1.1.2); it marks nothing.
    filled = JPEG[:2] + b"\xff" * 5_000 + JPEG[2:]
    assert decode(filled, ANY_SIZE).size == (64, 48)


def test_segments_after_the_first_scan_are_libjpegs_to_read() -> None:
    # libjpeg (C) reads those: 200,000 of them cost ~0.03 s. Only the header is walked.
    progressive = save(Image.new("RGB", (64, 48), "teal"), "JPEG", progressive=True)
    second = progressive.index(b"\xff\xda", progressive.index(b"\xff\xda") + 2)
    data = progressive[:second] + segment(0xFE) * 200_000 + progressive[second:]
    started = time.perf_counter()
    assert decode(data, ANY_SIZE).size == (64, 48)
    assert time.perf_counter() - started < BOUND_S


def test_two_million_app_segments_are_refused_at_once_in_flat_memory() -> None:
    data = after_soi(segment(0xE1) * 2_000_000)  # 7.6 MiB: the 2.9 s and 260 MiB
    tracemalloc.start()
    started = time.perf_counter()
    try:
        assert refusal(data) == (SEGMENTS,)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < BOUND_S and peak < BOUND_BYTES, (elapsed, peak)


NOT_AN_IMAGE = "image: must be a jpeg, png or webp image"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # Pillow refuses a header it cannot parse as no image of its formats at all.
        (JPEG[:2] + b"\xff\xe1\x00", NOT_AN_IMAGE),  # a length cut short
        (JPEG[:2] + b"\x00\x00" + JPEG[2:], NOT_AN_IMAGE),  # no marker where one belongs
        (JPEG[:2] + b"\xff", NOT_AN_IMAGE),  # fill to the end
        (JPEG[:2] + b"\xff\xe1\xff\xff" + b"x" * 10, "image: the jpeg is truncated or corrupt"),
    ],
)
def test_a_broken_header_is_left_to_pillow(data: bytes, message: str) -> None:
    assert refusal(data) == (message,)


# --- PNG -------------------------------------------------------------------------------------


def test_png_chunks_up_to_the_limit_are_accepted() -> None:
    extra = MAX_PNG_CHUNKS - PILLOW_PNG_CHUNKS
    assert decode(after_ihdr(chunk(b"abCd") * extra), ANY_SIZE).size == (64, 48)
    assert refusal(after_ihdr(chunk(b"abCd") * (extra + 1))) == (CHUNKS,)


@pytest.mark.parametrize(
    "build",
    [
        lambda: after_ihdr(chunk(b"abCd") * 800_000),  # the case: 2.7 s
        lambda: before_iend(chunk(b"abCd") * 800_000),  # after IDAT, which Pillow reads too
        lambda: after_ihdr(chunk(b"tEXt", b"k\0v") * 800_000),
        lambda: PNG[:-12] + chunk(b"IDAT") * 800_000 + PNG[-12:],  # empty IDATs
    ],
    ids=["before IDAT", "after IDAT", "text", "empty IDAT"],
)
def test_800_000_chunks_are_refused_at_once_in_flat_memory(build: Callable[[], bytes]) -> None:
    data = build()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        assert refusal(data) == (CHUNKS,)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < BOUND_S and peak < BOUND_BYTES, (elapsed, peak)


def test_chunks_past_iend_are_not_counted() -> None:
    # Pillow stops at IEND, and so does the walk: trailing bytes are not chunks.
    assert decode(PNG + chunk(b"abCd") * (MAX_PNG_CHUNKS + 1), ANY_SIZE).size == (64, 48)


def test_a_chunk_running_past_the_end_is_left_to_pillow() -> None:
    data = PNG[:33] + struct.pack(">I", 2**31) + b"abCd" + b"x" * 20
    assert refusal(data) == ("image: the png is truncated or corrupt",)


def test_webp_chunks_are_not_walked() -> None:
    # libwebp parses RIFF chunks in C: 100,000 unknown ones cost milliseconds.
    exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\0\0\0\0\0"
    extended = save(Image.new("RGB", (64, 48), "teal"), "WEBP", exif=exif)
    body = extended[12:] + b"ABCD\0\0\0\0" * 100_000
    data = b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
    started = time.perf_counter()
    assert decode(data, ANY_SIZE).size == (64, 48)
    assert time.perf_counter() - started < BOUND_S
