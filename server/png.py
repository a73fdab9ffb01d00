"""A PNG writer for 8-bit gray, RGB and RGBA arrays, tuned for speed.

Pillow picks a filter per row by trying all five, which costs more than the
compression itself at zlib level 1. A cut-out compresses just as well with the
"Up" filter on every row (4 MP cut-out of cloth-1: 1,058,361 bytes against
Pillow's 1,058,901), and numpy applies it to the whole image in one pass:
44 ms against Pillow's 105 ms on this project's 2-core CPU, which is 3% of the
whole request's CPU time at 4 MP.

Levels 1 to 3 deflate with ISA-L (python-isal) instead of zlib: its level 1 wrote the
4 MP cut-out of benchmarks/stages.py in 13 ms against zlib's 68 ms, and 2% smaller
(2.26 against 2.32 MB). Its output is an ordinary zlib stream. Level 0 (stored) and
levels 4 to 9, where an operator asks for smaller files, stay with zlib.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (gray, RGB, RGBA)
_FILTER_NONE = 0
_FILTER_UP = 2
_ISAL_LEVELS = 3  # ISA-L's levels are 0-3; its 0 is not "stored"


def encode_png(pixels: np.ndarray, level: int) -> bytes:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 -> PNG bytes at zlib `level` (0-9)."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, got {pixels.dtype}")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in _COLOR_TYPES:
        raise ValueError(f"PNG pixels must have 1, 3 or 4 channels, got {channels}")
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    # Each scanline is its filter-type byte followed by the filtered row.
    filtered = np.empty((height, width * channels + 1), dtype=np.uint8)
    filtered[0, 0] = _FILTER_NONE
    filtered[0, 1:] = rows[0]
    filtered[1:, 0] = _FILTER_UP
    # uint8 arithmetic wraps modulo 256, which is what the Up filter specifies.
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", _deflate(filtered.data, level)),
            _chunk(b"IEND", b""),
        )
    )


def _deflate(data: memoryview, level: int) -> bytes:
    if 1 <= level <= _ISAL_LEVELS:
        return isal_zlib.compress(data, level)
    return zlib.compress(data, level)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
