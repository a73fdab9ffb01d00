"""The request log: one access line per request, with what the pipeline measured for it.

`RequestContext` (server/middleware.py) opens a `Trace` for each HTTP request in a
context variable. The stages (`Metrics.observe_stage`), the wait in line and the
decoded image's size are noted into it from wherever they run: Starlette's
`run_in_threadpool` and the scheduler's model threads run in a copy of the
request's context, so they reach the same Trace. Once the response is out,
`write` logs the line.

What the line never holds: the raw path (its ids and tokens are a kind of
secret; the route's path template stands for it), the query string (a key may
ride in it), any header (Authorization) and any body (images, base64, keys).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

ACCESS_LOGGER = "matte.access"

_log = logging.getLogger(ACCESS_LOGGER)


@dataclass(frozen=True)
class ImageSize:
    width: int
    height: int
    bytes_in: int  # the encoded image, as it came (after base64, if any, was undone)


@dataclass
class Trace:
    """One request's figures, filled in while it runs."""

    request_id: str
    stages_s: dict[str, float] = field(default_factory=dict)
    queue_wait_s: float | None = None
    image: ImageSize | None = None


_current: ContextVar[Trace | None] = ContextVar("matte_request_trace", default=None)


def current() -> Trace | None:
    """The running request's Trace (None outside a request)."""
    return _current.get()


@contextlib.contextmanager
def tracing(request_id: str) -> Iterator[Trace]:
    """A Trace for the code inside the block (and the threads it hands work to)."""
    trace = Trace(request_id)
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)


def note_stage(name: str, seconds: float) -> None:
    trace = _current.get()
    if trace is not None:
        # Summed: a request that runs a stage twice spent both times in it.
        trace.stages_s[name] = trace.stages_s.get(name, 0.0) + seconds


def note_queue_wait(seconds: float) -> None:
    trace = _current.get()
    if trace is not None:
        trace.queue_wait_s = (trace.queue_wait_s or 0.0) + seconds


def note_image(width: int, height: int, bytes_in: int) -> None:
    trace = _current.get()
    if trace is not None:
        trace.image = ImageSize(width, height, bytes_in)


@dataclass(frozen=True)
class Exchange:
    """What the middleware knows of a finished request (never its URL or headers)."""

    method: str
    route: str  # the path template, "other" when no route matched
    dialect: str | None  # the dialect that owns the route, None for Matte's own
    status: int
    duration_s: float
    client: str | None  # the peer's address (a proxy's, behind one)


def access_fields(trace: Trace, exchange: Exchange) -> dict[str, object]:
    """The line's fields: the same keys on every line (null when not known), so a
    log pipeline can index them without guessing."""
    image = trace.image
    return {
        "request_id": trace.request_id,
        "dialect": exchange.dialect,
        "method": exchange.method,
        "route": exchange.route,
        "status": exchange.status,
        "duration_ms": _ms(exchange.duration_s),
        # In the order they ran: decode, predict, matte, encode (as matte_stage_seconds).
        "stages": {name: _ms(seconds) for name, seconds in trace.stages_s.items()},
        "queue_wait_ms": None if trace.queue_wait_s is None else _ms(trace.queue_wait_s),
        "image": None
        if image is None
        else {"width": image.width, "height": image.height, "bytes_in": image.bytes_in},
        "client": exchange.client,
    }


def write(trace: Trace, exchange: Exchange) -> None:
    """Log the request's one access line (logger `matte.access`, level info)."""
    fields = access_fields(trace, exchange)
    # The message shows the field's own (rounded) figure, so the two never disagree.
    _log.info(
        "%s %s %d %.1f ms",
        exchange.method,
        exchange.route,
        exchange.status,
        fields["duration_ms"],
        extra={"access": fields},
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
