"""remove.bg's API v1.0: `POST /v1.0/removebg` and `GET /v1.0/account`.

remove.bg's own service shut down; its clients (the npm `remove.bg` and PyPI
`removebg` wrappers, remove.bg's Ruby gem, WordPress and shop plugins, scripts)
work against Matte by changing only the host. What they rely on:

- `X-Api-Key` on every call; a missing or wrong key is a **403**
  (`{"errors": [{"title": "API Key invalid", "code": "auth_failed"}]}`), not a 401.
- The result image itself by default (no Accept, `*/*`, `image/*`: also axios's
  `application/json, text/plain, */*`, which remove.bg's own Node sample sent while
  saving the bytes), or `{"data": {"result_b64", "foreground_*"}}` labelled
  `application/json` when JSON is preferred to an image (the npm wrapper sends
  exactly `Accept: application/json` and parses the body as JSON).
- `X-Width`, `X-Height`, `X-Credits-Charged`, `X-Type`, `X-Foreground-*` and the
  `X-RateLimit-*` headers on a 200 (the npm wrapper and the Ruby gem read them).
- Errors as `{"errors": [{"title", "code", "detail"}]}` with 400, 403, 429, 500: the
  docs list no 413, so a body over the limit is the 400 `file_too_large`. The PyPI
  wrapper logs `errors[0].title`; the Ruby gem raises with it.

Credits are counted per key in the storage's usage table (as quarter credits, the
unit of a preview), under an owner of their own, so /v1.0/account reports them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import logging
import math
import time
from typing import Literal

from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..admission import Ticket
from ..errors import (
    ApiError,
    BadRequest,
    ConcurrencyLimited,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)
from ..framing import Box
from ..imaging import ACCEPTED_FORMATS, Limits
from ..keyring import Keyring
from ..operations import Api
from ..options import CutoutOptions
from ..outbound import OutboundError
from ..pipeline import Cutout, Pipeline
from ..ratelimit import Budget
from ..services import Services, services_of
from ..storage import StorageError
from ..structure import check_structure
from . import removebg_api
from .removebg_fields import Job, Refusal, Source, parse_job, read_fields

log = logging.getLogger("matte")

PATH = "/v1.0/removebg"
ACCOUNT_PATH = "/v1.0/account"
KEY_HEADER = "x-api-key"
MISSING_KEY = "Missing API Key"
INVALID_KEY = "API Key invalid"
# Usage rows of this dialect: quarter credits (a preview is one), apart from the
# images the IMG Processing dialect counts for the same key.
USAGE_OWNER = "removebg:"
QUARTERS = 4
# The headers of a 200 (and their CORS exposure, see app.py).
RESULT_HEADERS = (
    "x-width",
    "x-height",
    "x-credits-charged",
    "x-type",
    "x-foreground-top",
    "x-foreground-left",
    "x-foreground-width",
    "x-foreground-height",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)

Reply = Literal["image", "json"]

# Titles for the codes that are not `invalid_<field>`, as remove.bg words them.
_TITLES = {
    "file_too_large": "File too large",
    "failed_to_read_image": "Failed to read image",
    "invalid_file_type": "Invalid file type",
    "invalid_dimensions": "Invalid image dimensions",
    "resolution_too_high": "Image resolution too high",
    "unknown_foreground": "Could not identify foreground in image",
    "rate_limit_exceeded": "Rate limit exceeded",
    "request_timeout": "Request timeout",
    "service_unavailable": "Service unavailable",
    "internal_error": "Internal server error",
}


class RemoveBgDialect:
    name = "removebg"
    # Wall-clock time: X-RateLimit-Reset is a Unix time, usage is counted per UTC day.
    clock = staticmethod(time.time)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(PATH, self.remove_background, methods=["POST"]),
            Route(ACCOUNT_PATH, self.account, methods=["GET"]),
        ]

    def api(self) -> Api:
        return removebg_api.describe(self.name, PATH, ACCOUNT_PATH)

    def render_error(self, error: ApiError, request_id: str) -> Response:
        status, code, title = _described(error)
        entry = {"title": title, "code": code, "detail": " ".join(error.messages)}
        return JSONResponse({"errors": [entry]}, status_code=status, headers=error.headers)

    async def remove_background(self, request: Request) -> Response:
        request.state.dialect = self
        services = services_of(request)
        identity = await self._authorize(request, services)
        pipeline = services.ready_pipeline()
        reply = reply_kind(request.headers.get("accept"))
        # The ticket comes before the body: when the server is full, the upload is
        # refused unread. A URL is fetched under it too, as a slow upload would be.
        with pipeline.admission.ticket() as ticket:
            job = parse_job(await read_fields(request), services.outbound)
            image = await _fetched(services, job.image)
            options = job.options
            if job.background is not None:
                background = await _fetched(services, job.background)
                options = dataclasses.replace(options, bg_image=background)
            cutout = await _cut_out(request, pipeline, ticket, image, options, job)
        box = cutout.foreground
        if box is None:
            raise Refusal(
                "unknown_foreground",
                _TITLES["unknown_foreground"],
                f"{job.image.field}: no foreground was found: the whole image is background",
            )
        await self._count(services, identity, job.credits)
        headers = _result_headers(cutout, box, job)
        budget = await services.budget(identity)
        if budget is not None:
            headers.update(self._rate_headers(budget))
        if reply == "json":
            data = {
                "result_b64": base64.b64encode(cutout.data).decode("ascii"),
                "foreground_top": box.top,
                "foreground_left": box.left,
                "foreground_width": box.width,
                "foreground_height": box.height,
            }
            return JSONResponse({"data": data}, headers=headers)
        return Response(cutout.data, media_type=cutout.media_type, headers=headers)

    async def account(self, request: Request) -> Response:
        """The credits this key has been charged here, and the calls it has left in
        its rate-limit window: Matte keeps no balance and never refuses for credits."""
        request.state.dialect = self
        services = services_of(request)
        identity = await self._authorize(request, services)
        storage, _ = services.stored()
        try:
            days = await run_in_threadpool(storage.usage, USAGE_OWNER + identity)
        except StorageError:
            log.exception("storage failed")
            raise Unavailable("storage: temporarily unavailable, please retry shortly", 5) from None
        charged = _credits(sum(days.values()) / QUARTERS)
        budget = await services.budget(identity)
        credits = {"total": charged, "subscription": 0, "payg": charged, "enterprise": 0}
        api = {"free_calls": budget.remaining if budget else 0, "sizes": "all"}
        return JSONResponse({"data": {"attributes": {"credits": credits, "api": api}}})

    async def _authorize(self, request: Request, services: Services) -> str:
        """The caller's identity once its key is accepted and within the rate limit;
        a 429 carries the X-RateLimit-* headers too."""
        key = (request.headers.get(KEY_HEADER) or "").strip() or None
        try:
            return await services.authorize(request, key)
        except Unauthorized:
            raise Unauthorized(MISSING_KEY if key is None else INVALID_KEY) from None
        except ConcurrencyLimited:
            raise  # not the rate: its Retry-After (1 s) says it all
        except RateLimited as error:
            limit = services.limiter.limit
            if services.keyring.accepts(key):
                assert key is not None  # accepts() refuses None
                rate = services.keyring.limits(Keyring.identity(key)).rate
                limit = rate.requests if rate else limit
            error.headers.update(self._rate_headers(Budget(limit, 0, error.retry_after_s)))
            raise

    def _rate_headers(self, budget: Budget) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(budget.limit),
            "x-ratelimit-remaining": str(budget.remaining),
            # A Unix time, whole seconds: when `remaining` next grows.
            "x-ratelimit-reset": str(math.ceil(self.clock() + budget.reset_s)),
        }

    async def _count(self, services: Services, identity: str, credits: float) -> None:
        """Count the credits charged. The result is ready by now, so a storage that
        fails here is logged and the client still gets it."""
        day = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
        quarters = round(credits * QUARTERS)
        try:
            storage, _ = services.stored()
            await run_in_threadpool(storage.count_usage, USAGE_OWNER + identity, day, quarters)
        except (StorageError, Unavailable):
            log.exception("remove.bg credits could not be counted")


def _result_headers(cutout: Cutout, box: Box, job: Job) -> dict[str, str]:
    """Every 200's headers but the rate limit's."""
    headers = {
        "x-width": str(cutout.width),
        "x-height": str(cutout.height),
        "x-credits-charged": _number(job.credits),
        "x-foreground-top": str(box.top),
        "x-foreground-left": str(box.left),
        "x-foreground-width": str(box.width),
        "x-foreground-height": str(box.height),
    }
    if job.foreground_type is not None:
        headers["x-type"] = job.foreground_type
    return headers


def reply_kind(accept: str | None) -> Reply:
    """JSON only when the client prefers it to an image: an image/* or */* range as
    good as application/json (axios's default Accept) still gets the image."""
    json_q = image_q = 0.0
    for item in (accept or "").split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media == "application/json":
            json_q = max(json_q, q)
        elif media == "*/*" or media.startswith("image/"):
            image_q = max(image_q, q)
    return "json" if json_q > image_q else "image"


async def _fetched(services: Services, source: Source) -> bytes:
    """The source's bytes: those that came with the request, or its URL's, fetched
    through the outbound guard."""
    if source.data is not None:
        return source.data
    assert source.url is not None
    try:
        reply = await services.outbound.get(source.url)
    except OutboundError as error:
        raise _download_failed(source, error.reason) from None
    if not reply.ok:
        raise _download_failed(source, f"HTTP Status {reply.status}")
    if not reply.content:
        raise _download_failed(source, "the URL answered with an empty body")
    return reply.content


def _download_failed(source: Source, reason: str) -> Refusal:
    # remove.bg's own words: "Failed to download image from given image_url: HTTP Status 404"
    code = (
        "failed_to_download_bg_image"
        if source.field.startswith("bg_")
        else "failed_to_download_image"
    )
    title = f"Failed to download image from given {source.field}: {reason}"
    return Refusal(code, title, f"{source.field}: {reason}", field=source.field)


async def _cut_out(
    request: Request,
    pipeline: Pipeline,
    ticket: Ticket,
    image: bytes,
    options: CutoutOptions,
    job: Job,
) -> Cutout:
    """The cut-out; an image the pipeline refuses gets remove.bg's code for what is
    wrong with it, read from its bytes (an error's text is never parsed)."""
    try:
        return await pipeline.cutout(ticket, image, options, request.receive)
    except Refusal:
        raise
    except BadRequest as error:
        if error.field in (None, "image"):
            refused, named, field = image, "image", job.image.field
        elif error.field == "bg_image" and job.background is not None:
            refused, named, field = options.bg_image or b"", "bg_image", job.background.field
        else:
            raise  # a field of the options (the roi, once resolved): invalid_<field>
        code = image_problem(refused, pipeline.limits)
        # The messages name the pipeline's field; the client knows the one it sent.
        detail = " ".join(
            field + message.removeprefix(named) if message.startswith(named + ": ") else message
            for message in error.messages
        )
        raise Refusal(code, _TITLES[code], detail, field=field) from None


def image_problem(data: bytes, limits: Limits) -> str:
    """remove.bg's code for image bytes the pipeline refused: not an image it reads
    (`invalid_file_type`), a size out of bounds (`invalid_dimensions`,
    `resolution_too_high`), or anything else (`failed_to_read_image`). Only the
    header is read, after the same structure check the decoder makes first."""
    try:
        check_structure(data)
    except BadRequest:
        return "failed_to_read_image"
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
            width, height = opened.size
            frames = getattr(opened, "n_frames", 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "resolution_too_high"
    except UnidentifiedImageError:
        return "invalid_file_type"
    except (OSError, SyntaxError, ValueError):
        return "failed_to_read_image"
    if width * height > limits.max_pixels:
        return "resolution_too_high"
    if min(width, height) < limits.min_side or width * height < limits.min_pixels:
        return "invalid_dimensions"
    return "invalid_file_type" if frames > 1 else "failed_to_read_image"


def _described(error: ApiError) -> tuple[int, str, str]:
    """The status, code and title remove.bg would answer `error` with."""
    if isinstance(error, Refusal):
        return error.status, error.code, error.title
    if isinstance(error, Unauthorized):
        title = (
            error.messages[0] if error.messages[0] in (MISSING_KEY, INVALID_KEY) else INVALID_KEY
        )
        return 403, "auth_failed", title
    if isinstance(error, PayloadTooLarge):
        return 400, "file_too_large", _TITLES["file_too_large"]
    if isinstance(error, BadRequest) and error.status == 400:
        field = error.field or "request"
        return 400, f"invalid_{field}", f"Invalid {field}"
    for kind, code in (
        (RateLimited, "rate_limit_exceeded"),
        (RequestTimeout, "request_timeout"),
        (Unavailable, "service_unavailable"),
    ):
        if isinstance(error, kind):
            return error.status, code, _TITLES[code]
    if error.status >= 500:
        return error.status, "internal_error", _TITLES["internal_error"]
    return error.status, error.name, error.name.replace("_", " ").capitalize()


def _credits(value: float) -> float | int:
    """1 rather than 1.0 where it is whole, as remove.bg writes credits."""
    return int(value) if value.is_integer() else value


def _number(value: float) -> str:
    return str(_credits(value))
