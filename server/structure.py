"""An image file's container structure, walked and bounded before Pillow parses it.

Pillow reads a JPEG's segments before its first scan, and every PNG chunk, in
Python, one at a time, keeping what it reads: 2 million empty APP segments
(7.6 MiB) cost 3.9 s and 260 MiB, and 800,000 empty PNG chunks (9.2 MiB) 2.4 s
and 83 MiB, for a 200 x 100 image. These walks stop at a count far above any
real file's, so they cost at most a few milliseconds, and a file past it is
refused before Pillow sees it. (libwebp parses WebP's chunks in C: 800,000 of
them cost 0.07 s.) Anything else the walks meet that is not well formed is left
for Pillow to refuse with the format's own message.
"""

from __future__ import annotations

import re
import struct

from .errors import BadRequest

# A camera JPEG has about 10 segments before its first scan; one with a 16 MB ICC
# profile split over APP2 segments (the most the format allows) about 270.
MAX_JPEG_SEGMENTS = 1_000
# libpng writes 8 KiB IDAT chunks, so a 10 MiB PNG (the body limit) has about 1,300;
# every other kind of chunk is rare.
MAX_PNG_CHUNKS = 10_000

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
_FILL = re.compile(rb"\xff+")  # a marker's 0xFF, with any fill bytes before it
_SOS = 0xDA
# Markers that stand alone, with no length after them: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}


def check_structure(data: bytes) -> None:
    """Refuse a JPEG or PNG of more segments or chunks than the limits."""
    if data.startswith(JPEG_SIGNATURE):
        check_jpeg_segments(data)
    elif data.startswith(PNG_SIGNATURE):
        check_png_chunks(data)


def check_jpeg_segments(data: bytes) -> None:
    """Count the segments between SOI and the first start of scan."""
    position, segments = len(JPEG_SIGNATURE), 0
    while (fill := _FILL.match(data, position)) is not None and fill.end() < len(data):
        marker = data[fill.end()]
        if marker == _SOS:
            return
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise BadRequest(
                f"image: a JPEG of more than {MAX_JPEG_SEGMENTS:,} segments before its "
                "first scan is refused"
            )
        position = fill.end() + 1
        if marker not in _STANDALONE:
            if position + 2 > len(data):
                return
            (length,) = struct.unpack_from(">H", data, position)
            position += length


def check_png_chunks(data: bytes) -> None:
    """Count the chunks from the signature to IEND (or the end of the data)."""
    position, chunks = len(PNG_SIGNATURE), 0
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise BadRequest(f"image: a PNG of more than {MAX_PNG_CHUNKS:,} chunks is refused")
        if kind == b"IEND":
            return
        position += 12 + length  # length, type, data, CRC
