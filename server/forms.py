"""Multipart form reading that keeps every part as bytes.

Starlette's form parser turns a part without a `filename` into text (decoding
binary as latin-1) and caps it at 1 MB; several clients send the image that
way. This parser keeps every part as raw bytes in memory: the body limit
(10 MiB) bounds it, and nothing is spooled to disk where it could outlive the
request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from .errors import BadRequest

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_PARTS = 64
MAX_HEADER_BYTES = 16 * 1024
MAX_BOUNDARY = 256  # python-multipart's own ceiling (RFC 2046: 70)
MAX_PREAMBLE_BYTES = 16 * 1024
# python-multipart refuses a header line of over ~4 KiB with the parse error that
# reads as "malformed" (a 1 MB field name did). It is given room past
# MAX_HEADER_BYTES instead, and the body is written to it in slices: the parser
# hands over the header bytes it holds at the end of every write, so the builder's
# own count, and its clearer message, fire first. Slices of 64 KiB are about what
# uvicorn hands over anyway: a 10 MiB form reads in the same ~0.4 s as before.
_SLICE = 64 * 1024
_PARSER_HEADER_LINE = MAX_HEADER_BYTES + 2 * _SLICE


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        try:
            return self.data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise BadRequest(f"{self.name}: must be UTF-8 text") from None


@dataclass
class Form:
    parts: list[Part]

    def get(self, name: str) -> Part | None:
        """The only part called `name`; a repeated field is ambiguous, so refused."""
        matches = [part for part in self.parts if part.name == name]
        if len(matches) > 1:
            raise BadRequest(f"{name}: must be sent only once")
        return matches[0] if matches else None

    def text(self, name: str) -> str | None:
        part = self.get(name)
        return None if part is None else part.text()


async def read_form(request: Request) -> Form:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise BadRequest("content-type: must be multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("content-type: multipart/form-data needs a boundary")
    if len(boundary) > MAX_BOUNDARY:
        # RFC 2046 allows 70 characters; python-multipart refuses over 256 by raising.
        raise BadRequest(
            f"content-type: the multipart boundary must be at most {MAX_BOUNDARY} characters"
        )
    builder = _FormBuilder()
    parser = MultipartParser(boundary, builder.callbacks(), max_header_size=_PARSER_HEADER_LINE)
    preamble = _Preamble(b"--" + boundary)
    try:
        async for chunk in request.stream():
            _write(parser, preamble.strip(chunk))
        _write(parser, preamble.rest())
        parser.finalize()
    except FormParserError:
        raise BadRequest("body: malformed multipart/form-data") from None
    # finalize() does not check that the closing boundary came: a body cut short
    # anywhere (in a part's data, its headers, or between parts) is refused here.
    if parser.state != MultipartState.END:
        raise BadRequest("body: malformed multipart/form-data")
    return Form(builder.parts)


def _write(parser: MultipartParser, data: bytes) -> None:
    for start in range(0, len(data), _SLICE):
        parser.write(data[start : start + _SLICE])


class _Preamble:
    """Drops what comes before the first delimiter (RFC 2046's preamble, which
    python-multipart refuses), up to MAX_PREAMBLE_BYTES."""

    def __init__(self, delimiter: bytes) -> None:
        self._delimiter = delimiter
        self._held = bytearray()
        self._done = False

    def strip(self, chunk: bytes) -> bytes:
        if self._done:
            return chunk
        self._held += chunk
        start = self._first_delimiter()
        if (start is None and len(self._held) > MAX_PREAMBLE_BYTES + len(self._delimiter) + 2) or (
            start is not None and start > MAX_PREAMBLE_BYTES
        ):
            raise BadRequest("body: malformed multipart/form-data")
        if start is None:
            return b""
        self._done = True
        rest = bytes(self._held[start:])
        self._held.clear()
        return rest

    def rest(self) -> bytes:
        """What was held back for want of a delimiter: the parser's to refuse."""
        rest = bytes(self._held)
        self._held.clear()
        return rest

    def _first_delimiter(self) -> int | None:
        if self._held.startswith(self._delimiter):
            return 0
        found = self._held.find(b"\r\n" + self._delimiter)
        return None if found < 0 else found + 2


class _FormBuilder:
    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._header_bytes = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise BadRequest(f"body: at most {MAX_PARTS} form fields are allowed")
        self._headers = {}
        self._header_bytes = 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if name is None:
            raise BadRequest("body: every form part needs a name")
        filename = options.get(b"filename")
        content_type = self._headers.get(b"content-type")
        # Kept from here on: read_form refuses a body whose last part never ended.
        self.parts.append(
            Part(
                name=name.decode("utf-8", "replace"),
                filename=None if filename is None else filename.decode("utf-8", "replace"),
                content_type=None if content_type is None else content_type.decode("latin-1"),
            )
        )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        # Data only ever follows a part's headers, so it belongs to the last part.
        self.parts[-1].data += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise BadRequest("body: form part headers are too large")
