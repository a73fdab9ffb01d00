"""Images in and out: decode with limits checked before the pixels, encode PNG/WebP/JPEG/zip."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from .archive import MEDIA_TYPE as ZIP_MEDIA_TYPE
from .archive import split, zip_of
from .errors import BadRequest
from .png import encode_png
from .structure import check_structure
from .webp import encode_webp

# "auto": PNG when the result has any transparency, else JPG (remove.bg's format=auto).
OutputFormat = Literal["png", "webp", "jpg", "zip", "auto"]
MEDIA_TYPES = {
    "png": "image/png",
    "webp": "image/webp",
    "jpg": "image/jpeg",
    "zip": ZIP_MEDIA_TYPE,
}
# Pillow's 4:2:0 JPEG at 90: photos without visible blocks at about a tenth of a PNG.
JPEG_QUALITY = 90

# Pillow plugins we accept. Naming them stops Pillow from trying every other
# decoder it ships (TIFF, PSD, ...) on untrusted bytes.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
MAX_JPEG_SCANS = 100
# How each EXIF orientation (tag 274) turns the stored pixels upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Limits:
    min_side: int
    min_pixels: int
    max_pixels: int


@dataclass(frozen=True)
class Picture:
    """A decoded, upright image: RGB for the model, plus the input's own alpha if it had one."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8, None when the input was opaque

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.rgb.shape[:2]
        return width, height


def decode(data: bytes, limits: Limits) -> Picture:
    """Decode jpeg/png/webp bytes, refusing bad sizes from the header alone."""
    with loaded(data, limits) as image:
        return _to_picture(upright(image))


# Formats people send by mistake (a phone's HEIC, a GIF, a logo as SVG), known by
# their first bytes, so the refusal names what was sent instead of only what is taken.
_SIGNATURES = (
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"%PDF-", "pdf"),
)
_HEIF_BRANDS = {b"heic": "heic", b"heix": "heic", b"mif1": "heic", b"avif": "avif", b"avis": "avif"}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}  # BITMAPINFOHEADER and its kin


def not_accepted(data: bytes) -> str:
    """The refusal of bytes that are not a jpeg, png or webp, naming their format
    when it is one that is commonly sent."""
    name = _other_format(data)
    prefix = f"image: {name} is not supported: " if name else "image: "
    return prefix + "must be a jpeg, png or webp image"


def _other_format(data: bytes) -> str | None:
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[data[8:12]]
    if data.startswith(b"BM") and len(data) >= 18 and data[14] in _BMP_HEADER_SIZES:
        return "bmp"
    head = data[:4096].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "svg"
    return None


@contextlib.contextmanager
def loaded(data: bytes, limits: Limits) -> Iterator[Image.Image]:
    """The image, fully decoded, once its header passed the limits: the file's
    segments or chunks (structure.py), its size and frames, and for a JPEG its
    number of scans, are checked before any pixel is. Every refusal is a
    BadRequest about `image`."""
    check_structure(data)
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own ceiling (far above ours) fired while reading the header. Its
        # warning, at half that ceiling, only raises where warnings are errors (the
        # tests, python -W error); elsewhere check_size below refuses that image.
        raise BadRequest(f"image: must have at most {limits.max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise BadRequest(not_accepted(data)) from None
    except ValueError as error:
        if "Decompressed data too large" in str(error):
            # A zlib bomb in a PNG's text or ICC chunk (Pillow caps them at 1 MB).
            raise BadRequest(
                "image: the png has a text or colour-profile chunk too large to decompress"
            ) from None
        raise BadRequest(corrupt(data)) from None
    except (OSError, SyntaxError):
        raise BadRequest(corrupt(data)) from None
    with image:
        check_size(*image.size, limits)
        check_still(image)
        if image.format == "JPEG":
            check_scans(data)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            # A JPEG that lacks only its final EOI marker lands here too, although
            # most decoders accept it. Pillow cannot tell it from one cut short in
            # its scan data: libjpeg pads either with zeros once the bytes run out,
            # and reports that only as a warning Pillow discards. Appending EOI and
            # comparing against a decode with other padding (so an image that used
            # the padding would differ) still took flat images cut 20 bytes short
            # for whole ones (test_imaging shows it), so both stay refused rather
            # than accept cut photos.
            raise BadRequest(corrupt(data)) from None
        yield image


def check_still(image: Image.Image) -> None:
    """Refuse an animated WebP or PNG (APNG): a cut-out of its first frame alone
    would drop the rest unannounced, and a still image cannot hold them all."""
    if getattr(image, "n_frames", 1) > 1:
        raise BadRequest("image: animated images are not accepted: send a still jpeg, png or webp")


def corrupt(data: bytes) -> str:
    """One message for a file whose signature names a format but whose rest does not
    decode, whether its header or its pixels are cut short or broken."""
    return f"image: the {_signature(data)} is truncated or corrupt"


def _signature(data: bytes) -> str:
    # Only called after Pillow identified one of ACCEPTED_FORMATS from these bytes.
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    return "jpeg"


def check_scans(data: bytes) -> None:
    """Refuse a JPEG of more than MAX_JPEG_SCANS scans before decoding it.

    Each scan of a progressive JPEG is another pass over the whole image: one
    of 5,000 scans and 265 KB took 12.6 s to decode (issue 13), so at that rate
    100 scans bound a file's decode to about 0.25 s. Cameras and encoders write
    about 10. Start-of-scan markers cannot appear inside entropy-coded data
    (an 0xFF byte there is stuffed as FF 00), so counting FF DA counts scans,
    plus the few of an embedded thumbnail.
    """
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise BadRequest(
            f"image: a JPEG of more than {MAX_JPEG_SCANS} scans is refused (this one has {scans})"
        )


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF (or XMP) orientation says.

    Only the orientation is read, never rewritten: ImageOps.exif_transpose
    re-encodes the whole EXIF block afterwards, and a tag of the wrong type
    (XResolution as text, Artist as a number) makes that raise. A block so
    malformed that even reading it fails counts as no orientation, as most
    decoders treat it: the pixels are still a good photo.
    """
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # Pillow's EXIF parser, on hostile bytes, raises almost anything
        return image
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(method)


def check_size(width: int, height: int, limits: Limits) -> None:
    if width < limits.min_side or height < limits.min_side:
        raise BadRequest(f"image: width and height must be at least {limits.min_side} pixels")
    pixels = width * height
    if pixels < limits.min_pixels:
        raise BadRequest(f"image: must have at least {limits.min_pixels:,} pixels")
    if pixels > limits.max_pixels:
        raise BadRequest(f"image: must have at most {limits.max_pixels:,} pixels, got {pixels:,}")


def _to_picture(image: Image.Image) -> Picture:
    if image.mode in _SIXTEEN_BIT_MODES:
        # convert("L") would clip 16-bit values at 255 and turn the photo white.
        # 32-bit "I" values past 16 bits saturate at white. (A float "F" image needs no
        # such care: Pillow's own conversion below truncates and clips it to 8 bits.)
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray(np.minimum(wide >> 8, 255).astype(np.uint8))
    # "transparency" is a palette entry (P) or a colour key (a PNG's tRNS in L or RGB).
    # ("La", premultiplied LA, is left out: Pillow cannot convert it to RGBA.)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[:, :, 3]
        # An all-opaque alpha changes nothing; dropping it saves work later.
        return Picture(np.ascontiguousarray(rgba[:, :, :3]), None if alpha.min() == 255 else alpha)
    # convert() to the mode an image already has is a copy (16 MB at 4 MP): skipped.
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return Picture(np.asarray(rgb), None)


def downscaled(picture: Picture, max_pixels: int | None) -> tuple[Picture, float]:
    """The picture shrunk (aspect kept) to at most `max_pixels` pixels, and the factor
    applied (1.0: unchanged, the same object). A size preset's cap, applied before the
    model so that the mask is brought up to the smaller size only."""
    width, height = picture.size
    if max_pixels is None or width * height <= max_pixels:
        return picture, 1.0
    factor = math.sqrt(max_pixels / (width * height))
    size = (max(int(width * factor), 1), max(int(height * factor), 1))
    # Lanczos with a reducing gap: a box pre-shrink, then Lanczos over the last 3x.
    rgb = Image.fromarray(picture.rgb).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    alpha = None
    if picture.alpha is not None:
        small = Image.fromarray(picture.alpha).resize(size, Image.Resampling.LANCZOS)
        alpha = np.asarray(small)
    return Picture(np.asarray(rgb), alpha), size[0] / width


def encode(pixels: np.ndarray, fmt: OutputFormat, png_level: int, webp_quality: int) -> bytes:
    """Encode an (H, W) L, (H, W, 3) RGB or (H, W, 4) RGBA uint8 array.

    jpg takes L or RGB (the pipeline lays a cut-out over white or its background
    first); zip takes RGBA and stores its colour as color.jpg, its alpha as alpha.png.
    """
    if fmt == "png":
        return encode_png(pixels, png_level)
    if fmt == "jpg":
        return encode_jpeg(pixels)
    if fmt == "zip":
        colour, alpha = split(pixels)
        return zip_of(encode_jpeg(colour), encode_png(alpha, png_level))
    if fmt != "webp":
        raise ValueError(f"encode: {fmt} is decided by the pipeline, not encoded")
    # Lossy colour keeps files small; an alpha plane stays lossless so edges are exact.
    return encode_webp(pixels, webp_quality)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """A baseline JPEG of an (H, W) L or (H, W, 3) RGB array (no alpha: JPEG has none)."""
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ValueError(f"encode_jpeg: needs L or RGB pixels, got shape {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
