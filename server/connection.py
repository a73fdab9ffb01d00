"""Connections: uvicorn's h11 protocol with Matte's rules for what a client may send.

These checks come before any route, so no dialect is known yet: a refusal is a
plain-text 4xx with `connection: close`, and the connection is closed.

- The head (request line and headers) must be complete within `header_timeout_s`
  of the connection opening, or of the first byte of a later request: 408 when some
  of it came, a plain close when nothing did (an idle connection between requests
  is uvicorn's keep-alive timeout instead).
- The request line and each header line hold at most 8 KiB, a head at most 100
  headers and 64 KiB, even when it all arrives in one write: 414 or 431.
- Header values are printable ASCII (and tabs): a control byte or a byte over
  0x7f is a 400. h11 itself refuses NUL in values, control and non-ASCII bytes in
  the target, header names that are not tokens, two different Content-Lengths
  (400) and any Transfer-Encoding but chunked (501).
- Content-Length and Transfer-Encoding together are a 400, as RFC 9112 6.3 lets a
  server do: one framing or the other, never a guess that a proxy might make
  differently (request smuggling).
"""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

MAX_LINE_BYTES = 8 * 1024
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024

# Anything but printable ASCII and the tab.
_UNCLEAN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f-\xff]")


class Refusal(h11.RemoteProtocolError):
    """A request Matte refuses at the connection; its message is safe to send back."""


def head_problem(request: h11.Request) -> Refusal | None:
    """What is wrong with a parsed head, if anything."""
    if len(request.method) + len(request.target) + len(b"  HTTP/1.1") > MAX_LINE_BYTES:
        return Refusal(f"request line: longer than {MAX_LINE_BYTES} bytes", 414)
    if len(request.headers) > MAX_HEADERS:
        return Refusal(f"headers: more than {MAX_HEADERS}", 431)
    total = 0
    for name, value in request.headers:
        line = len(name) + len(value) + len(b": ")
        if line > MAX_LINE_BYTES:
            return Refusal(f"headers: a line is longer than {MAX_LINE_BYTES} bytes", 431)
        total += line + len(b"\r\n")
        if _UNCLEAN_VALUE.search(value):
            return Refusal(f"headers: {name.decode()} holds a control or non-ASCII byte", 400)
    if total > MAX_HEAD_BYTES:
        return Refusal(f"headers: more than {MAX_HEAD_BYTES} bytes in all", 431)
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return Refusal("headers: Content-Length and Transfer-Encoding must not come together", 400)
    return None


class _CheckedConnection(h11.Connection):
    """h11's parser, refusing heads that break Matte's rules, and remembering why
    the last request was refused (uvicorn's handler is told only that it was)."""

    def __init__(self) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.refusal: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        # Any: h11's own union of an event and its two sentinel types.
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = exc
            raise
        if isinstance(event, h11.Request):
            problem = head_problem(event)
            if problem is not None:
                self.refusal = problem
                raise problem
        return event


class HttpConnection(H11Protocol):
    """One client connection (see the module's rules)."""

    header_timeout_s: float = 10.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._checked = self.conn = _CheckedConnection()
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        self._watch_head()
        super().data_received(data)
        self._settle_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._settle_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Refuse with the status the refusal calls for (uvicorn always says 400)."""
        refusal = self._checked.refusal
        status = refusal.error_status_hint if refusal is not None else 400
        if isinstance(refusal, Refusal):
            detail = str(refusal)
        else:
            # h11's messages quote the client's bytes: never echo them.
            detail = f"{HTTPStatus(status).phrase}: the request is not valid HTTP/1.1"
        self._refuse(status, detail)

    def _refuse(self, status: int, detail: str) -> None:
        body = detail.encode("ascii", "replace")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        reason = HTTPStatus(status).phrase.encode()
        try:
            response = h11.Response(status_code=status, headers=headers, reason=reason)
            output = self.conn.send(response) or b""
            output += self.conn.send(h11.Data(data=body)) or b""
            output += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            # A response had already started (a broken chunked body mid-reply):
            # all that is left is to close.
            output = b""
        self.transport.write(output)
        self.transport.close()

    # --- the head's deadline --------------------------------------------------------------

    def _watch_head(self) -> None:
        if self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _settle_head(self) -> None:
        if self.conn.their_state is not h11.IDLE:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        pending, _ = self.conn.trailing_data
        if pending:
            # h11 cannot answer a request it has not parsed: the reply is written as is.
            body = f"headers: not complete within {self.header_timeout_s:g} seconds".encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
        self.transport.close()


def connection_class(header_timeout_s: float) -> type[HttpConnection]:
    """HttpConnection with this head deadline, as uvicorn's `http=` takes a class."""

    class Configured(HttpConnection):
        pass

    Configured.header_timeout_s = header_timeout_s
    return Configured
