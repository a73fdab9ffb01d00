"""WebP output for cut-outs: lossy colour, lossless alpha, the two encoded apart.

libwebp (through Pillow) spends most of a cut-out's time on the lossless alpha plane:
at 4 MP 530 ms in all, of which the colour is about 120. Pillow exposes no setting for
the alpha's effort, so this module writes the file itself, as libwebp lays it out
(RIFF: VP8X, ALPH, VP8): the colour is libwebp's own, at its fastest effort, from an
encode whose alpha is thrown away (at alpha quality 0 it costs almost nothing, and
libwebp still smooths the colour under transparent pixels, which keeps edges clean),
and the alpha is libwebp's lossless (VP8L) stream at its lowest effort over a plane
pre-filtered with the Up predictor, the ALPH chunk's own "vertical" filter that every
decoder undoes. At 4 MP the two take about 106 and 86 ms, side by side on two cores,
against 530 ms for Pillow's whole-file encode (0.49 MB there, 0.46 MB here; PNG is
2.3 MB; benchmarks/PIPELINE.md). The alpha decodes bit for bit.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator

import numpy as np
from PIL import Image

from . import cores

_ALPHA_IS_USED = 0x10  # the VP8X flag
_VERTICAL = 2  # the ALPH chunk's filtering method
_LOSSLESS = 1  # the ALPH chunk's compression method
_VP8L_HEADER = 5  # signature byte, then 14 + 14 + 1 + 3 bits of size, alpha and version
# libwebp's effort for the colour: 0, its fastest. At 4 MP the colour took 106 ms
# against 125 at method 2, for 0.21 against 0.14 MB; a lone WebP request went from
# 1.30-1.35x to 1.25-1.28x the PNG one's time (issue 12's bound is 1.3x), and the
# file (0.46 MB) is still a fifth of the PNG's.
_COLOUR_METHOD = 0


def encode_webp(rgba: np.ndarray, quality: int) -> bytes:
    """(H, W, 4) uint8 straight RGBA -> WebP, colour at `quality`, alpha exact;
    (H, W, 3) RGB (a cut-out on a background) or (H, W) L (a mask) -> an opaque WebP."""
    if rgba.ndim == 2 or rgba.shape[2] == 3:
        return _save(Image.fromarray(rgba), quality=quality)
    alpha = rgba[:, :, 3]
    if alpha.min() == 255:
        # Opaque: libwebp would leave the alpha out too.
        return _save(Image.fromarray(np.ascontiguousarray(rgba[:, :, :3])), quality=quality)
    height, width = alpha.shape
    # The two encodes are independent: on two cores a lone request waits for the
    # longer one only (libwebp runs without the GIL).
    colour_file, alpha_stream = cores.both(
        lambda: _save(Image.fromarray(rgba), quality=quality, alpha_quality=0),
        lambda: _alpha_stream(alpha),
    )
    colour = _chunks(colour_file)[b"VP8 "]
    vp8x = bytes([_ALPHA_IS_USED, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1)
    alph = bytes([_VERTICAL << 2 | _LOSSLESS]) + alpha_stream
    body = b"WEBP" + _chunk(b"VP8X", vp8x) + _chunk(b"ALPH", alph) + _chunk(b"VP8 ", colour)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _alpha_stream(alpha: np.ndarray) -> bytes:
    """The ALPH chunk's lossless payload: the VP8L image stream of the filtered plane
    in the green channel, without VP8L's header (the chunk's dimensions are the image's)."""
    filtered = np.empty_like(alpha)
    # The vertical filter: the top row predicts from the left, the top-left pixel
    # from nothing; uint8 arithmetic wraps modulo 256, as the decoder's does.
    filtered[0, 0] = alpha[0, 0]
    np.subtract(alpha[0, 1:], alpha[0, :-1], out=filtered[0, 1:])
    np.subtract(alpha[1:], alpha[:-1], out=filtered[1:])
    blank = Image.new("L", (alpha.shape[1], alpha.shape[0]))
    green = Image.merge("RGB", (blank, Image.fromarray(filtered), blank))
    lossless = _chunks(_save(green, lossless=True, quality=0, method=0))[b"VP8L"]
    return lossless[_VP8L_HEADER:]


def _save(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    options.setdefault("method", _COLOUR_METHOD)
    image.save(buffer, "WEBP", **options)
    return buffer.getvalue()


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """A WebP file's chunks by kind (each kind once in what libwebp writes for a still)."""
    return dict(_walk(data))


def _walk(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 12  # past "RIFF", the size and "WEBP"
    while offset + 8 <= len(data):
        kind = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        yield kind, data[offset + 8 : offset + 8 + size]
        offset += 8 + size + (size & 1)


def _chunk(kind: bytes, body: bytes) -> bytes:
    # RIFF chunks are padded to an even length; the size excludes the pad.
    return kind + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def _u24(value: int) -> bytes:
    return value.to_bytes(3, "little")
