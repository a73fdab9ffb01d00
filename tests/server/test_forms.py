"""forms.py: multipart parsing that keeps every part as bytes, within its limits."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.types import Message

from server.errors import BadRequest
from server.forms import (
    MAX_BOUNDARY,
    MAX_HEADER_BYTES,
    MAX_PARTS,
    MAX_PREAMBLE_BYTES,
    Form,
    Part,
    read_form,
)

CONTENT_TYPE = "multipart/form-data; boundary=b"
MALFORMED = "body: malformed multipart/form-data"
# Every byte value, and near misses of the delimiter (CRLF "--b"), which a part
# cannot hold: a part must come back exactly as sent, whatever else it holds.
BINARY = bytes(range(256)) + b"--b\r\n\r\n-b\r\n--c\r\n" + bytes(range(255, -1, -1))


def part(
    name: str | None = "f",
    data: bytes = b"v",
    *,
    filename: str | None = None,
    content_type: str | None = None,
    headers: tuple[bytes, ...] = (),
) -> bytes:
    """One part, without its delimiter: headers, a blank line, the data."""
    lines = []
    disposition = b"form-data"
    if name is not None:
        disposition += b'; name="' + name.encode() + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename.encode() + b'"'
    lines.append(b"Content-Disposition: " + disposition)
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type.encode("latin-1"))
    lines.extend(headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + data


def body(*parts: bytes) -> bytes:
    """A complete multipart/form-data body with boundary `b`."""
    return b"".join(b"--b\r\n" + p + b"\r\n" for p in parts) + b"--b--\r\n"


def request(
    data: bytes, content_type: str | None = CONTENT_TYPE, chunk: int | None = None
) -> Request:
    """A Starlette request whose body arrives from a fake ASGI `receive`, in
    `chunk`-byte pieces (so parts and headers span several writes) or at once."""
    size = chunk or max(1, len(data))
    pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    headers = [] if content_type is None else [(b"content-type", content_type.encode("latin-1"))]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def read(data: bytes, content_type: str | None = CONTENT_TYPE, chunk: int | None = None) -> Form:
    return asyncio.run(read_form(request(data, content_type, chunk)))


def refusal(data: bytes, content_type: str | None = CONTENT_TYPE) -> str:
    with pytest.raises(BadRequest) as refused:
        read(data, content_type)
    assert refused.value.status == 400
    assert len(refused.value.messages) == 1
    return refused.value.messages[0]


def summary(form: Form) -> list[tuple[str, str | None, str | None, bytes]]:
    return [(p.name, p.filename, p.content_type, bytes(p.data)) for p in form.parts]


# --- what comes back -----------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 1, 7, 64], ids=["at-once", "1", "7", "64"])
def test_every_part_comes_back_as_the_exact_bytes_sent(chunk: int | None) -> None:
    data = body(
        part("image", BINARY, filename="a.png", content_type="image/png"),
        # No filename: Starlette's parser would decode this as latin-1 text; it must stay bytes.
        part("raw", BINARY),
        part("empty", b""),
        part("output_format", b"webp"),
    )
    form = read(data, chunk=chunk)
    assert summary(form) == [
        ("image", "a.png", "image/png", BINARY),
        ("raw", None, None, BINARY),
        ("empty", None, None, b""),
        ("output_format", None, None, b"webp"),
    ]
    assert all(isinstance(p.data, bytearray) for p in form.parts)


def test_header_names_are_case_insensitive_and_each_header_is_kept_apart() -> None:
    data = b"--b\r\nCONTENT-TYPE: image/webp\r\ncontent-DISPOSITION: form-data; name=x\r\n\r\n1"
    form = read(data + b"\r\n--b--\r\n")
    assert summary(form) == [("x", None, "image/webp", b"1")]


def test_a_part_does_not_inherit_the_previous_parts_headers() -> None:
    form = read(body(part("a", content_type="image/png", filename="a.png"), part("b")))
    assert summary(form) == [("a", "a.png", "image/png", b"v"), ("b", None, None, b"v")]


def test_undecodable_names_are_replaced_and_content_types_read_as_latin_1() -> None:
    data = (
        b'--b\r\nContent-Disposition: form-data; name="n\xff"; filename="\xc3\xa9-\xff.png"\r\n'
        b"Content-Type: image/\xe9\r\n\r\nv\r\n--b--\r\n"
    )
    assert summary(read(data)) == [("n\ufffd", "\u00e9-\ufffd.png", "image/\u00e9", b"v")]


def test_the_content_type_is_matched_without_regard_to_case() -> None:
    form = read(body(part("a")), content_type="Multipart/Form-Data; boundary=b")
    assert summary(form) == [("a", None, None, b"v")]


def test_a_body_with_only_the_closing_boundary_is_an_empty_form() -> None:
    assert read(b"--b--\r\n").parts == []


def test_text_after_the_closing_boundary_is_ignored() -> None:
    # RFC 2046 allows an epilogue; it is not a part.
    assert summary(read(body(part("a")) + b"epilogue")) == [("a", None, None, b"v")]


def test_text_before_the_first_boundary_is_ignored() -> None:
    # RFC 2046 allows a preamble too.
    data = b"This is a preamble.\r\n" + body(part("a"))
    assert summary(read(data)) == [("a", None, None, b"v")]


# --- the limits -----------------------------------------------------------------------------


def test_a_boundary_of_256_characters_works() -> None:
    boundary = "x" * MAX_BOUNDARY
    data = body(part("a")).replace(b"--b", b"--" + boundary.encode())
    form = read(data, content_type=f"multipart/form-data; boundary={boundary}")
    assert summary(form) == [("a", None, None, b"v")]


def test_a_longer_boundary_is_a_400_not_a_500() -> None:
    # python-multipart raises on one over 256 characters as it is built.
    boundary = "x" * (MAX_BOUNDARY + 1)
    data = body(part("a")).replace(b"--b", b"--" + boundary.encode())
    assert refusal(data, f"multipart/form-data; boundary={boundary}") == (
        "content-type: the multipart boundary must be at most 256 characters"
    )


def test_64_parts_are_accepted() -> None:
    form = read(body(*(part(f"f{i}", str(i).encode()) for i in range(MAX_PARTS))))
    assert MAX_PARTS == 64
    assert [p.name for p in form.parts] == [f"f{i}" for i in range(64)]
    assert form.parts[63].data == b"63"


def test_a_65th_part_is_refused() -> None:
    data = body(*(part(f"f{i}") for i in range(65)))
    assert refusal(data) == "body: at most 64 form fields are allowed"


def padded_part(header_bytes: int, name: str = "a") -> bytes:
    """A part whose header names and values add up to exactly `header_bytes` (what the
    limit counts). python-multipart allows 8 headers of ~4 KiB, so the padding is spread."""
    disposition = f'form-data; name="{name}"'.encode()
    left = header_bytes - len(b"Content-Disposition") - len(disposition)
    pads = []
    for i in range(4):
        field = f"X-Pad-{i}".encode()
        size = left // (4 - i)
        pads.append(field + b": " + b"p" * (size - len(field)))
        left -= size
    assert left == 0
    lines = [b"Content-Disposition: " + disposition, *pads]
    return b"\r\n".join(lines) + b"\r\n\r\nv"


def test_part_headers_of_exactly_the_limit_are_accepted_for_every_part() -> None:
    assert MAX_HEADER_BYTES == 16 * 1024
    # Two parts at the limit: the count starts again for each part.
    data = body(padded_part(MAX_HEADER_BYTES, "a"), padded_part(MAX_HEADER_BYTES, "b"))
    assert [p.name for p in read(data).parts] == ["a", "b"]


def test_part_headers_one_byte_over_the_limit_are_refused() -> None:
    data = body(padded_part(MAX_HEADER_BYTES + 1))
    assert refusal(data) == "body: form part headers are too large"


def one_line_part(header_bytes: int) -> bytes:
    """A part whose only header, Content-Disposition, counts `header_bytes`."""
    fixed = len(b"Content-Disposition") + len(b'form-data; name=""')
    return part("n" * (header_bytes - fixed))


def test_one_header_line_may_take_the_whole_limit() -> None:
    # python-multipart alone refuses a line past ~4 KiB; the limit here is the 16 KiB.
    [only] = read(body(one_line_part(MAX_HEADER_BYTES))).parts
    assert len(only.name) > 16_000


@pytest.mark.parametrize("chunk", [None, 1_000, 70_000])
@pytest.mark.parametrize("size", [MAX_HEADER_BYTES + 1, 1_000_000])
def test_one_header_line_past_the_limit_is_too_large_not_malformed(
    size: int, chunk: int | None
) -> None:
    with pytest.raises(BadRequest) as refused:
        read(body(one_line_part(size)), chunk=chunk)
    assert refused.value.messages == ("body: form part headers are too large",)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "data", "message"),
    [
        (None, body(part()), "content-type: must be multipart/form-data"),
        ("application/json", b"{}", "content-type: must be multipart/form-data"),
        ("multipart/mixed; boundary=b", body(part()), "content-type: must be multipart/form-data"),
        ("multipart/form-data", body(part()), "content-type: multipart/form-data needs a boundary"),
        (
            "multipart/form-data; boundary=",
            body(part()),
            "content-type: multipart/form-data needs a boundary",
        ),
        (
            "multipart/form-data; charset=utf-8",
            body(part()),
            "content-type: multipart/form-data needs a boundary",
        ),
        (CONTENT_TYPE, b"not multipart at all", MALFORMED),
        (CONTENT_TYPE, body(part()).replace(b"--b", b"--c"), MALFORMED),
        # Cut short: the closing boundary never came, wherever the body stops.
        (CONTENT_TYPE, b"--b\r\n" + part("a", b"hello"), MALFORMED),
        (CONTENT_TYPE, b"--b\r\n" + part("a", b"hello") + b"\r\n", MALFORMED),
        (CONTENT_TYPE, b"--b\r\n" + part("a", b"hello") + b"\r\n--b", MALFORMED),
        (CONTENT_TYPE, b"--b\r\n" + part("a", b"hello") + b"\r\n--b\r\n", MALFORMED),
        (CONTENT_TYPE, b'--b\r\nContent-Disposition: form-data; name="a"\r\n', MALFORMED),
        (CONTENT_TYPE, b"--b\r\n", MALFORMED),
        (CONTENT_TYPE, b"", MALFORMED),
        (CONTENT_TYPE, body(part(None)), "body: every form part needs a name"),
        (
            CONTENT_TYPE,
            body(b"Content-Type: text/plain\r\n\r\nv"),
            "body: every form part needs a name",
        ),
    ],
    ids=[
        "no-content-type",
        "json",
        "multipart-mixed",
        "no-boundary",
        "empty-boundary",
        "other-parameter-only",
        "garbage",
        "wrong-boundary",
        "unterminated-last-part",
        "unterminated-after-crlf",
        "unterminated-after-delimiter",
        "no-closing-boundary",
        "cut-in-the-headers",
        "only-an-opening-delimiter",
        "empty-body",
        "part-without-a-name",
        "part-without-content-disposition",
    ],
)
def test_bad_bodies_are_refused_with_a_message_naming_the_problem(
    content_type: str | None, data: bytes, message: str
) -> None:
    assert refusal(data, content_type) == message


# --- Part and Form ---------------------------------------------------------------------------


def test_text_is_utf_8_without_surrounding_whitespace() -> None:
    field = Part("bgcolor", None, None, bytearray(" \t\u00e9 0,0,255\r\n ".encode()))
    assert field.text() == "\u00e9 0,0,255"


def test_a_text_field_that_is_not_utf_8_is_refused_by_name() -> None:
    field = Part("output_format", None, None, bytearray(b"\xffpng"))
    with pytest.raises(BadRequest) as refused:
        field.text()
    assert refused.value.messages == ("output_format: must be UTF-8 text",)


def test_form_get_and_text_find_the_one_part_of_a_name() -> None:
    form = read(body(part("image", BINARY, filename="a"), part("format", b" webp ")))
    image = form.get("image")
    assert image is not None and bytes(image.data) == BINARY
    assert form.text("format") == "webp"
    assert form.get("missing") is None
    assert form.text("missing") is None


def test_a_repeated_field_is_refused_as_ambiguous() -> None:
    form = read(body(part("format", b"png"), part("other"), part("format", b"webp")))
    with pytest.raises(BadRequest) as refused:
        form.get("format")
    assert refused.value.messages == ("format: must be sent only once",)
    with pytest.raises(BadRequest):
        form.text("format")
    assert form.text("other") == "v"


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_a_preamble_split_across_writes_is_dropped(chunk: int | None) -> None:
    data = b"preamble --b not yet\r\n-b\r\n" + body(part("a"), part("b", b"w"))
    form = read(data, chunk=chunk)
    assert summary(form) == [("a", None, None, b"v"), ("b", None, None, b"w")]


def test_a_preamble_longer_than_the_limit_is_refused() -> None:
    data = b"x" * (MAX_PREAMBLE_BYTES + 1) + b"\r\n" + body(part("a"))
    assert refusal(data) == MALFORMED


def test_a_body_with_no_delimiter_is_still_malformed() -> None:
    assert refusal(b"no parts here at all") == MALFORMED


def test_a_preamble_at_the_limit_is_fine() -> None:
    data = b"x" * (MAX_PREAMBLE_BYTES - 2) + b"\r\n" + body(part("a"))
    assert summary(read(data, chunk=4096)) == [("a", None, None, b"v")]


def test_an_endless_preamble_is_refused_while_it_streams() -> None:
    # No delimiter ever: refused once the preamble limit is past, not held to the end.
    sent = 0

    async def receive() -> Message:
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": b"y" * 1024, "more_body": sent < 1000}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", CONTENT_TYPE.encode())],
    }
    with pytest.raises(BadRequest, match="malformed"):
        asyncio.run(read_form(Request(scope, receive)))
    assert sent <= MAX_PREAMBLE_BYTES // 1024 + 2
