"""Property-based fuzzing of every request parser and the image decoder: whatever
the input, the answer is a value or an ApiError with a 4xx status, never another
exception (a 500) and never an unbounded wait (the profile's deadline, conftest.py)."""

from __future__ import annotations

import asyncio
import io
import json
import string
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from server.dialects import _common, imgproc_fields
from server.errors import ApiError
from server.forms import read_form
from server.imaging import Limits, decode
from server.options import CutoutOptions
from tests.server.dialects.test_common import json_request
from tests.server.test_forms import request

T = TypeVar("T")
# The server's limits, and ones that let the small fuzzed images through to their pixels.
LIMITS = Limits(min_side=64, min_pixels=4_096, max_pixels=4_194_304)
ANY_SIZE = Limits(min_side=1, min_pixels=1, max_pixels=4_194_304)
# A whole call, on top of the per-example deadline (which Hypothesis checks only
# after the call returns): reported with the input that took that long.
CALL_BOUND_S = 2.0

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def value_or_4xx(call: Callable[[], T]) -> T | ApiError:
    """`call()`'s value, or the ApiError it raised, which must be a client's error.
    Anything else it raises fails the test with that input."""
    started = time.perf_counter()
    try:
        result: T | ApiError = call()
    except ApiError as error:
        assert 400 <= error.status < 500, (error.status, error.messages)
        assert error.messages and all(isinstance(m, str) and m for m in error.messages)
        result = error
    elapsed = time.perf_counter() - started
    assert elapsed < CALL_BOUND_S, f"took {elapsed:.2f} s"
    return result


# --- multipart forms -------------------------------------------------------------------------

BOUNDARIES = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=80
)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A boundary and a body: random parts around it, then bytes flipped, cut or inserted."""
    boundary = draw(BOUNDARIES)
    delimiter = b"--" + boundary.encode()
    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.binary(max_size=12))
        headers = draw(st.lists(st.binary(max_size=30), max_size=3))
        data = draw(st.binary(max_size=60))
        lines = [b'Content-Disposition: form-data; name="' + name + b'"', *headers]
        pieces.append(delimiter + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + data + b"\r\n")
    body = bytearray(draw(st.binary(max_size=20)) + b"".join(pieces) + delimiter + b"--\r\n")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(body)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(body):
            body[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del body[at:]
        else:
            body[at:at] = draw(st.sampled_from([b"\r\n", b"--", delimiter, b"\r\n\r\n", b"\0"]))
    return boundary, bytes(body)


@settings(max_examples=300)
@given(body=multipart_bodies(), chunk=st.integers(1, 512))
def test_multipart_forms(body: tuple[str, bytes], chunk: int) -> None:
    boundary, data = body
    content_type = f"multipart/form-data; boundary={boundary}"
    value_or_4xx(lambda: asyncio.run(read_form(request(data, content_type, chunk))))


@given(
    content_type=st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=120),
    data=st.binary(max_size=300),
)
def test_multipart_forms_under_any_content_type(content_type: str, data: bytes) -> None:
    value_or_4xx(lambda: asyncio.run(read_form(request(data, content_type))))


# --- JSON bodies and their fields -------------------------------------------------------------


@given(
    body=st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    ),
    split=st.integers(0, 300),
)
@example(body=b"[" * 50_000, split=0)
@example(body=b'{"a": "\xed\xa0\x80"}', split=3)  # a lone UTF-16 surrogate, UTF-8 encoded
def test_json_bodies(body: bytes, split: int) -> None:
    chunks = (body[:split], body[split:])
    result = value_or_4xx(lambda: asyncio.run(_common.read_json_object(json_request(*chunks))))
    assert isinstance(result, (dict, ApiError))


# The base64 alphabet, the URL-safe one's extras, whitespace and a few misfits.
BASE64ISH = st.text(
    alphabet=string.ascii_letters + string.digits + "+/=-_ \n\t:;,.!\0\u00e9", max_size=60
)


DATA_URL_HEADS = st.sampled_from(
    [
        "data:",
        "data:image/png;base64,",
        "DATA:IMAGE/JPEG;BASE64,",
        "data:;base64,",
        "data:image/webp;charset=x;base64,",
        "http://",
        "https://x/",
    ]
)


@given(value=st.one_of(JSON_VALUES, BASE64ISH, st.tuples(DATA_URL_HEADS, BASE64ISH).map("".join)))
def test_base64_images(value: object) -> None:
    result = value_or_4xx(lambda: _common.to_image(value, "image"))
    assert isinstance(result, ApiError) or (isinstance(result, bytes) and result)


OPTION_NAMES = (
    "only_mask",
    "post_process_mask",
    "alpha_matting",
    "alpha_matting_foreground_threshold",
    "alpha_matting_background_threshold",
    "alpha_matting_erode_size",
    "bgcolor",
    "output_format",
)


@given(body=st.dictionaries(st.sampled_from(OPTION_NAMES), JSON_VALUES, max_size=8))
def test_json_cutout_options(body: dict[str, object]) -> None:
    value_or_4xx(lambda: _common.cutout_options(body, CutoutOptions()))


@given(value=JSON_VALUES, low=st.none() | st.integers(-5, 5), high=st.none() | st.integers(0, 300))
def test_json_values(value: object, low: int | None, high: int | None) -> None:
    for parse in (
        lambda: _common.to_bool(value, "f"),
        lambda: _common.to_int(value, "f", low, high),
        lambda: _common.to_str(value, "f"),
        lambda: _common.to_object(value, "f"),
        lambda: _common.to_list(value, "f"),
        lambda: _common.to_bgcolor(value, "f"),
    ):
        value_or_4xx(parse)


FORM_TEXT = st.text(max_size=24) | st.sampled_from(
    ["true", "FALSE", "1", "yes", "off", "255,0,0", "[1, 2, 3, 4]", "9" * 40, "+0", "png", "webp"]
)


@given(fields=st.dictionaries(st.sampled_from(OPTION_NAMES), FORM_TEXT, max_size=8))
def test_form_cutout_options(fields: dict[str, str]) -> None:
    value_or_4xx(lambda: CutoutOptions().with_fields(fields.get))


# --- IMG Processing's fields ------------------------------------------------------------------


@given(value=JSON_VALUES, required=st.booleans(), collect=st.booleans())
def test_imgproc_names(value: object, required: bool, collect: bool) -> None:
    problems: list[str] | None = [] if collect else None
    result = value_or_4xx(lambda: imgproc_fields.name_field(value, required, problems))
    assert result is None or isinstance(result, (str, ApiError))


@given(raw=st.none() | st.text(max_size=12))
def test_imgproc_query_values(raw: str | None) -> None:
    value_or_4xx(lambda: imgproc_fields.take_field(imgproc_fields.query_value(raw)))


# --- the image decoder ------------------------------------------------------------------------


def _seed(fmt: str, mode: str, **options: object) -> bytes:
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt, **options)
    return buffer.getvalue()


SEEDS = {
    "jpeg": _seed("JPEG", "RGB"),
    "progressive jpeg": _seed("JPEG", "RGB", progressive=True),
    "png": _seed("PNG", "RGB"),
    "palette png": _seed("PNG", "P", transparency=0),
    "webp": _seed("WEBP", "RGB"),
    "lossless webp": _seed("WEBP", "RGBA", lossless=True),
}


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del data[at:]
            if not data:
                break
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 16))]
            if not data:
                break
    return bytes(data)


def assert_decodes_or_refuses(data: bytes, limits: Limits) -> None:
    result = value_or_4xx(lambda: decode(data, limits))
    if not isinstance(result, ApiError):
        width, height = result.size
        assert result.rgb.shape == (height, width, 3) and result.rgb.dtype == np.uint8


@settings(max_examples=500)
@given(data=mutated_images())
def test_mutated_images(data: bytes) -> None:
    assert_decodes_or_refuses(data, ANY_SIZE)


@settings(max_examples=300)
@given(data=st.binary(max_size=600))
@example(data=b"\xff\xd8")
@example(data=b"\x89PNG\r\n\x1a\n")
@example(data=b"RIFF\0\0\0\0WEBP")
def test_random_bytes(data: bytes) -> None:
    assert_decodes_or_refuses(data, LIMITS)


@given(data=mutated_images())
def test_mutated_uploads(data: bytes) -> None:
    # IMG Processing's upload check: the same decode, its refusals as a 422.
    value_or_4xx(lambda: imgproc_fields.probe(data, ANY_SIZE))


@given(
    head=st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x10\0\0\0WEBPVP8"]),
    tail=st.binary(max_size=400),
)
def test_random_bytes_behind_a_signature(head: bytes, tail: bytes) -> None:
    assert_decodes_or_refuses(head + tail, ANY_SIZE)
