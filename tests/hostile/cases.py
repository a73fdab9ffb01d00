"""The hostile-input corpus, built in code: broken, disguised and pathological images,
the valid oddities that must still work, and malformed multipart and JSON bodies.

Nothing here is a stored binary; each case's bytes are built the first time they
are asked for (the largest, a 2,049 x 2,049 PNG and 2 MB metadata blocks, take
milliseconds) and kept for the rest of the run.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image

from server.structure import MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS

NOT_AN_IMAGE = "image: must be a jpeg, png or webp image"


def unsupported(name: str) -> str:
    return f"image: {name} is not supported: must be a jpeg, png or webp image"


ANIMATED = "image: animated images are not accepted: send a still jpeg, png or webp"
# Pillow's own ceiling, met while it reads the header (see imaging.loaded).
PAST_PILLOWS_CEILING = "image: must have at most 4,194,304 pixels"
TOO_SMALL = "image: width and height must be at least 64 pixels"
ZLIB_BOMB = "image: the png has a text or colour-profile chunk too large to decompress"
SEGMENTS = (
    f"image: a JPEG of more than {MAX_JPEG_SEGMENTS:,} segments before its first scan is refused"
)
CHUNKS = f"image: a PNG of more than {MAX_PNG_CHUNKS:,} chunks is refused"
SIZE = (96, 80)  # every accepted case's stored width and height


def corrupt(fmt: str) -> str:
    return f"image: the {fmt} is truncated or corrupt"


@dataclass(frozen=True)
class ImageCase:
    """Image bytes and what the server must answer: `refusal`, the decode error's
    message, or None for an image it must accept (as `size`, width by height, once
    turned upright)."""

    name: str
    build: Callable[[], bytes]
    refusal: str | None
    size: tuple[int, int] = SIZE
    filename: str = "upload.bin"

    @cached_property
    def data(self) -> bytes:
        return self.build()


# --- building blocks -----------------------------------------------------------------------


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(mode: str = "RGB", size: tuple[int, int] = SIZE) -> Image.Image:
    """Noise in `mode`: no two neighbours alike, so a cut anywhere loses real data."""
    width, height = size
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def after_ihdr(png: bytes, *chunks: bytes) -> bytes:
    """`png` with `chunks` inserted after its IHDR (signature 8 + IHDR 25 bytes)."""
    return png[:33] + b"".join(chunks) + png[33:]


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` and holds no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to claim `width` x `height`."""
    data = bytearray(save(photo(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    # marker (2), length (2), precision (1), then height and width.
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_segments(marker: int, payload: bytes, count: int) -> bytes:
    """A JPEG with `count` segments of `marker` holding `payload`, right after SOI."""
    segment = struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload
    plain = save(photo(), "JPEG")
    return plain[:2] + segment * count + plain[2:]


def with_scans(total: int) -> bytes:
    """A progressive JPEG claiming `total` scans: its own, and start-of-scan markers
    hidden in a comment, as the scan guard counts them before decoding."""
    plain = save(photo(), "JPEG", progressive=True)
    payload = b"\xff\xda" * (total - plain.count(b"\xff\xda"))
    comment = b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload
    return plain[:2] + comment + plain[2:]


@functools.cache
def _bomb() -> bytes:
    return zlib.compress(b"\0" * (20 * 1024 * 1024), 9)


def zlib_bomb(kind: bytes) -> bytes:
    """A PNG whose zTXt, iTXt or iCCP chunk is 20 KB that inflate to 20 MB."""
    bomb = _bomb()
    payload = {
        b"zTXt": b"comment\0\0" + bomb,
        b"iTXt": b"comment\0\x01\0\0\0" + bomb,  # compressed, no language, no translation
        b"iCCP": b"icc\0\0" + bomb,
    }[kind]
    return after_ihdr(save(photo(), "PNG"), png_chunk(kind, payload))


def exif(orientation: int | None = None, blob: bytes = b"") -> bytes:
    """A big-endian EXIF block: the orientation, and `blob` as one UNDEFINED tag."""
    entries: list[tuple[int, int, int, bytes]] = []
    if orientation is not None:
        entries.append((0x0112, 3, 1, struct.pack(">H", orientation).ljust(4, b"\0")))
    if blob:
        entries.append((0x927C, 7, len(blob), b""))  # MakerNote, stored after the IFD
    offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack(">HHI", tag, kind, count) + (value or struct.pack(">I", offset))
    return b"Exif\0\0MM\0\x2a" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0) + blob


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", SIZE, colour) for colour in ("red", "green", "blue")]
    return save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def pixels_16_bit() -> Image.Image:
    ramp = np.linspace(0, 65535, SIZE[0] * SIZE[1]).astype(np.uint16).reshape(SIZE[::-1])
    return Image.fromarray(ramp)


def palette_with_transparency() -> bytes:
    indices = (np.arange(SIZE[0] * SIZE[1]) % 3).astype(np.uint8).reshape(SIZE[::-1])
    image = Image.fromarray(indices, "P")
    image.putpalette([20, 20, 20, 250, 200, 100, 255, 255, 255])
    return save(image, "PNG", transparency=2)


def oriented(orientation: int) -> bytes:
    return save(photo(), "JPEG", exif=exif(orientation))


def cut(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


HEIC = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0\0\0\x08mdat" + bytes(64)
AVIF = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + b"\0\0\0\x08mdat" + bytes(64)
SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="96" height="80">'
    b'<rect width="96" height="80" fill="red"/></svg>\n'
)

IMAGE_CASES: tuple[ImageCase, ...] = (
    # Not images, or not ours.
    ImageCase("random bytes", lambda: np.random.default_rng(3).bytes(4096), NOT_AN_IMAGE),
    ImageCase(
        "a text file named .png",
        lambda: b"This is a shopping list, not a picture.\n" * 40,
        NOT_AN_IMAGE,
        filename="photo.png",
    ),
    ImageCase("gif", lambda: save(photo("P"), "GIF"), unsupported("gif")),
    ImageCase("animated gif", lambda: animated("GIF"), unsupported("gif")),
    ImageCase("tiff", lambda: save(photo(), "TIFF"), unsupported("tiff")),
    ImageCase("bmp", lambda: save(photo(), "BMP"), unsupported("bmp")),
    ImageCase("ico", lambda: save(photo("RGBA", (64, 64)), "ICO"), unsupported("ico")),
    ImageCase("svg", lambda: SVG, unsupported("svg"), filename="drawing.svg"),
    ImageCase("heic", lambda: HEIC, unsupported("heic"), filename="IMG_0001.HEIC"),
    ImageCase("avif", lambda: AVIF, unsupported("avif")),
    # Animated images in accepted formats: refused, not cut down to a frame.
    ImageCase("animated webp", lambda: animated("WEBP"), ANIMATED),
    ImageCase("animated png", lambda: animated("PNG"), ANIMATED),
    # Cut short.
    ImageCase("truncated jpeg", lambda: cut(save(photo(), "JPEG"), 0.5), corrupt("jpeg")),
    ImageCase("truncated png", lambda: cut(save(photo(), "PNG"), 0.5), corrupt("png")),
    ImageCase(
        "truncated webp", lambda: cut(save(photo(), "WEBP", quality=90), 0.5), corrupt("webp")
    ),
    ImageCase(
        "jpeg cut 10 bytes into its scan data",
        lambda: save(photo(), "JPEG")[:-12],
        corrupt("jpeg"),
    ),
    # Refused too (imaging.loaded says why): Pillow cannot tell it from the case above.
    ImageCase("jpeg missing only its EOI", lambda: save(photo(), "JPEG")[:-2], corrupt("jpeg")),
    # Sizes claimed in the header, past Pillow's own bomb ceiling: refused unread.
    # Past Pillow's warning (89.5 M pixels), short of its error: under warnings as
    # errors, as here, Pillow raises the warning (test_imaging covers both ways).
    ImageCase(
        "png claiming 10,000 x 10,000", lambda: png_header(10_000, 10_000), PAST_PILLOWS_CEILING
    ),
    ImageCase(
        "png claiming 50,000 x 50,000", lambda: png_header(50_000, 50_000), PAST_PILLOWS_CEILING
    ),
    ImageCase(
        "png claiming 65,000 x 65,000", lambda: png_header(65_000, 65_000), PAST_PILLOWS_CEILING
    ),
    ImageCase(
        "jpeg claiming 50,000 x 50,000", lambda: jpeg_claiming(50_000, 50_000), PAST_PILLOWS_CEILING
    ),
    ImageCase(
        "jpeg claiming 65,000 x 65,000", lambda: jpeg_claiming(65_000, 65_000), PAST_PILLOWS_CEILING
    ),
    # Sizes past or short of the server's limits, in real images.
    ImageCase(
        "2049 x 2049",
        lambda: save(Image.new("L", (2049, 2049)), "PNG"),
        "image: must have at most 4,194,304 pixels, got 4,198,401",
    ),
    ImageCase("1 x 1", lambda: save(Image.new("RGB", (1, 1)), "PNG"), TOO_SMALL),
    ImageCase("63 x 5000", lambda: save(Image.new("RGB", (63, 5000)), "PNG"), TOO_SMALL),
    # Work bombs.
    ImageCase("zlib bomb in a png ztxt chunk", lambda: zlib_bomb(b"zTXt"), ZLIB_BOMB),
    ImageCase("zlib bomb in a png itxt chunk", lambda: zlib_bomb(b"iTXt"), ZLIB_BOMB),
    ImageCase("zlib bomb in a png iccp chunk", lambda: zlib_bomb(b"iCCP"), ZLIB_BOMB),
    ImageCase(
        "progressive jpeg of 5,000 scans",
        lambda: with_scans(5_000),
        "image: a JPEG of more than 100 scans is refused (this one has 5000)",
    ),
    ImageCase(
        "jpeg of 100,000 empty app segments", lambda: jpeg_segments(0xE1, b"", 100_000), SEGMENTS
    ),
    ImageCase(
        "png of 100,000 empty chunks",
        lambda: after_ihdr(save(photo(), "PNG"), png_chunk(b"abCd", b"") * 100_000),
        CHUNKS,
    ),
    # Large metadata: bounded by the body limit, and cheap.
    ImageCase(
        "2 MB exif in a png",
        lambda: save(photo(), "PNG", exif=exif(blob=bytes(2_000_000))),
        None,
    ),
    ImageCase(
        "2 MB icc profile in a jpeg",
        lambda: save(photo(), "JPEG", icc_profile=np.random.default_rng(5).bytes(2_000_000)),
        None,
    ),
    ImageCase(
        "900 KB icc profile in a png",
        lambda: save(photo(), "PNG", icc_profile=np.random.default_rng(5).bytes(900_000)),
        None,
    ),
    ImageCase(
        "30 comment segments of 64 KB in a jpeg",
        lambda: jpeg_segments(0xFE, b"c" * 65_000, 30),
        None,
    ),
    ImageCase(
        "2 MB text chunk in a png",
        lambda: after_ihdr(save(photo(), "PNG"), png_chunk(b"tEXt", b"note\0" + b"t" * 2_000_000)),
        None,
    ),
    # Valid oddities.
    ImageCase("16-bit png", lambda: save(pixels_16_bit(), "PNG"), None),
    ImageCase("cmyk jpeg", lambda: save(photo("CMYK"), "JPEG"), None),
    ImageCase("palette png with transparency", palette_with_transparency, None),
    ImageCase("la png", lambda: save(photo("LA"), "PNG"), None),
    *(
        ImageCase(
            f"jpeg with exif orientation {orientation}",
            functools.partial(oriented, orientation),
            None,
            size=SIZE if orientation <= 4 else SIZE[::-1],
        )
        for orientation in range(1, 9)
    ),
)


# --- request bodies -------------------------------------------------------------------------

BOUNDARY = "hostile-boundary"


def multipart(*parts: tuple[bytes, bytes], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body of (content-disposition parameters, data) parts."""
    delimiter = b"--" + boundary.encode()
    body = b"".join(
        delimiter + b"\r\nContent-Disposition: form-data; " + params + b"\r\n\r\n" + data + b"\r\n"
        for params, data in parts
    )
    return body + delimiter + b"--\r\n"


NAME_PART = (b'name="name"', b"photo")


def image_part(data: bytes) -> tuple[bytes, bytes]:
    return (b'name="image"; filename="photo.png"', data)


@dataclass(frozen=True)
class BodyCase:
    """A whole request body and its content type, as a hostile client sends it, and
    the refusal: its message and, for dialects that name one, its kind of problem.
    `upload_problem`: the message where IMG Processing's upload lists the problem
    among its fields (a 422) instead."""

    name: str
    build: Callable[[], bytes]
    refusal: str
    problem: str = "value_error"
    content_type: str = f"multipart/form-data; boundary={BOUNDARY}"
    upload_problem: str | None = None

    @cached_property
    def body(self) -> bytes:
        return self.build()


def _small_png() -> bytes:
    return save(photo(), "PNG")


EMPTY = "image: is empty: the part holds no bytes"
MALFORMED = "body: malformed multipart/form-data"

MULTIPART_CASES: tuple[BodyCase, ...] = (
    BodyCase(
        "an empty image part",
        lambda: multipart(NAME_PART, image_part(b"")),
        EMPTY,
        upload_problem=EMPTY,
    ),
    BodyCase(
        "no image",
        lambda: multipart(NAME_PART, (b'name="prompt"', b"a cat")),
        "image: is required",
        upload_problem="image: is required: a jpeg, png or webp file",
    ),
    BodyCase(
        "two images",
        lambda: multipart(NAME_PART, image_part(_small_png()), image_part(_small_png())),
        "image: must be sent only once",
    ),
    BodyCase(
        "no boundary",
        lambda: multipart(NAME_PART, image_part(_small_png())),
        "content-type: multipart/form-data needs a boundary",
        content_type="multipart/form-data",
    ),
    BodyCase(
        "a wrong boundary",
        lambda: multipart(NAME_PART, image_part(_small_png()), boundary="another-boundary"),
        MALFORMED,
    ),
    BodyCase(
        "10,000 tiny parts",
        lambda: multipart(NAME_PART, *[(b'name="f"', b"x")] * 10_000),
        "body: at most 64 form fields are allowed",
    ),
    BodyCase(
        "a 1 MB field name",
        lambda: multipart((b'name="' + b"n" * 1_000_000 + b'"', b"x"), image_part(_small_png())),
        "body: form part headers are too large",
    ),
    BodyCase(
        "no closing delimiter",
        lambda: multipart(NAME_PART, image_part(_small_png()))[: -len(BOUNDARY) - 6],
        MALFORMED,
    ),
    BodyCase(
        "json instead of a form",
        lambda: b'{"image": "x"}',
        "content-type: must be multipart/form-data",
        content_type="application/json",
    ),
)

JSON = "application/json"
MIB = 1024 * 1024
MISSING = "body: is required: a JSON object"
NOT_AN_OBJECT = "body: must be a JSON object"
NOT_JSON = "body: is not valid JSON"

JSON_BODY_CASES: tuple[BodyCase, ...] = (
    BodyCase("an empty body", lambda: b"", MISSING, "missing", JSON),
    # Exactly the body limit: read whole, then found empty.
    BodyCase(
        "10 MiB of whitespace", lambda: b" \n\t\r" * (10 * MIB // 4), MISSING, "missing", JSON
    ),
    BodyCase("a json list", lambda: b"[1, 2, 3]", NOT_AN_OBJECT, "type_error", JSON),
    BodyCase(
        "a json string", lambda: b'"data:image/png;base64,AAAA"', NOT_AN_OBJECT, "type_error", JSON
    ),
    BodyCase("a json null", lambda: b"null", NOT_AN_OBJECT, "type_error", JSON),
    BodyCase(
        "100,000 nested lists",
        lambda: b"[" * 100_000 + b"]" * 100_000,
        NOT_JSON,
        "json_invalid",
        JSON,
    ),
    BodyCase(
        "100,000 nested objects in a field",
        lambda: b'{"image": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
        NOT_JSON,
        "json_invalid",
        JSON,
    ),
    BodyCase("json cut short", lambda: b'{"image": "iVBORw0KGgo', NOT_JSON, "json_invalid", JSON),
    BodyCase("not utf-8", lambda: b'{"image": "\xff\xfe"}', NOT_JSON, "json_invalid", JSON),
    BodyCase("a raw nul byte", lambda: b'{"image": "\x00"}', NOT_JSON, "json_invalid", JSON),
)


@dataclass(frozen=True)
class FieldCase:
    """A value for a JSON dialect's image field, refused as "<field>: <refusal>"."""

    name: str
    value: object
    refusal: str
    problem: str = "value_error"


IMAGE_FIELD_CASES: tuple[FieldCase, ...] = (
    FieldCase("zero bytes", "", "must not be empty"),
    FieldCase("base64 with junk", "iVBORw0KGgo!!!!$$$$<script>", "is not valid base64"),
    FieldCase("base64 of nothing", "====", "is not valid base64"),
    FieldCase("base64 with a nul", "iVBO\u0000Rw0KGgo", "is not valid base64"),
    FieldCase(
        "a data url of text",
        "data:text/plain;base64,aGVsbG8=",
        "the data URL must be an image/png, image/jpeg or image/webp image",
    ),
    FieldCase(
        "a data url without base64",
        "data:image/png,hello",
        "must be a base64 data URL, like data:image/png;base64,...",
    ),
    FieldCase("a number", 12345, "must be a string", "type_error"),
    FieldCase("a list", ["iVBORw0KGgo="], "must be a string", "type_error"),
)
