"""rembg's own HTTP server (`rembg s`): `POST /api/remove` and `GET /api/remove?url=`.

What its clients rely on (rembg/commands/s_command.py, a FastAPI app):

- POST: multipart with the image in `file` (a file part or a plain one), the
  options as form fields, and `bgc` / `extras` as query parameters even then.
  GET: the same options as query parameters beside `url`, which the server fetches
  (here through the outbound guard, off unless MATTE_OUTBOUND_ENABLED).
- The answer is always a PNG (`image/png`): the cut-out, or the mask with `om`.
- Validation errors are FastAPI's 422 `{"detail": [{"type", "loc", "msg",
  "input"}]}` (see rembg_fields.py); other errors are `{"detail": "<text>"}`
  with their status. An image that does not decode is a 400 here (rembg answers
  500), and so is a model this server does not run.
- rembg has no authentication. With no keys configured none is needed (callers are
  counted by address); with keys configured, `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl

from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import ApiError, BadRequest, Unauthorized
from ..forms import MAX_PARTS, Form, Part, read_form
from ..operations import Api
from ..options import MAX_ERODE_SIZE, CutoutOptions
from ..outbound import OutboundError
from ..pipeline import Pipeline
from ..services import Services, services_of
from ..settings import Settings
from . import rembg_api
from ._common import cut_out
from .rembg_fields import (
    MODELS,
    OPTION_NAMES,
    SERVED_MODEL,
    FieldErrors,
    FieldReader,
    RembgFields,
    read_fields,
)
from .stability import bearer_key

PATH = "/api/remove"
MEDIA_TYPE = "image/png"
FILE_FIELD = rembg_api.FILE.name
URL_FIELD = rembg_api.URL.name


class RembgDialect:
    name = "rembg"

    def routes(self) -> list[BaseRoute]:
        return [
            Route(PATH, self.remove_upload, methods=["POST"]),
            Route(PATH, self.remove_url, methods=["GET"]),
        ]

    def api(self) -> Api:
        return rembg_api.describe(self.name, PATH)

    def render_error(self, error: ApiError, request_id: str) -> Response:
        if isinstance(error, FieldErrors):
            return JSONResponse({"detail": error.details}, status_code=422, headers=error.headers)
        headers = dict(error.headers)
        if isinstance(error, Unauthorized):
            # What FastAPI's HTTPBearer answers: the scheme the client should use.
            headers["www-authenticate"] = "Bearer"
        return JSONResponse(
            {"detail": " ".join(error.messages)}, status_code=error.status, headers=headers
        )

    async def remove_upload(self, request: Request) -> Response:
        """`POST /api/remove`: the image in the form's `file`."""
        request.state.dialect = self
        services = services_of(request)
        pipeline = await _admit(request, services)
        # The ticket comes before the body: when the server is full, the upload is
        # refused unread.
        with pipeline.admission.ticket() as ticket:
            form = await read_any_form(request)
            reader = FieldReader()
            values = _values(form)
            fields = read_fields(reader, "body", values, request.query_params)
            part = _last(form, FILE_FIELD)
            if part is None or (not part.data and not part.filename):
                # FastAPI: no part, or an empty one that is not a file, is missing.
                reader.missing("body", FILE_FIELD)
            options = _options(reader, fields, "body", services.settings)
            assert part is not None  # _options raised the missing file otherwise
            if not part.data:
                raise BadRequest(f"{FILE_FIELD}: is empty: the part holds no bytes")
            cutout = await cut_out(request, pipeline, ticket, bytes(part.data), options, FILE_FIELD)
        return Response(cutout.data, media_type=MEDIA_TYPE)

    async def remove_url(self, request: Request) -> Response:
        """`GET /api/remove?url=...`: the image fetched through the outbound guard."""
        request.state.dialect = self
        services = services_of(request)
        pipeline = await _admit(request, services)
        query = request.query_params
        reader = FieldReader()
        fields = read_fields(reader, "query", query, query)
        url = query.get(URL_FIELD)
        if url is None:
            reader.missing("query", URL_FIELD)
        options = _options(reader, fields, "query", services.settings)
        assert url is not None  # _options raised the missing url otherwise
        with pipeline.admission.ticket() as ticket:
            data = await fetch(services, url)
            cutout = await cut_out(request, pipeline, ticket, data, options, URL_FIELD)
        return Response(cutout.data, media_type=MEDIA_TYPE)


async def _admit(request: Request, services: Services) -> Pipeline:
    # rembg has no keys: with none configured a caller needs none (counted by address).
    key = bearer_key(request.headers.get("authorization"))
    return await services.admit(request, key, keyless_when_open=True)


def _options(
    reader: FieldReader, fields: RembgFields, where: str, settings: Settings
) -> CutoutOptions:
    """The cut-out options for `fields`, once every field check has passed (all the
    problems raised together as a 422), then the model (a 400: rembg's own answer
    for a model it cannot load is an error from its handler, not a 422)."""
    if fields.a and fields.af <= fields.ab:
        # rembg would run a trimap whose sure foreground and background overlap.
        reader.value_error(where, "af", "af must be greater than ab for alpha matting", fields.af)
    reader.check()
    check_model(fields.model, settings)
    options = CutoutOptions(
        output_format="png",
        only_mask=fields.om,
        post_process_mask=fields.ppm,
        alpha_matting=fields.a,
        bgcolor=fields.bgc,
    )
    if fields.a:
        options = dataclasses.replace(
            options,
            alpha_matting_foreground_threshold=fields.af,
            alpha_matting_background_threshold=fields.ab,
            # rembg sets no upper bound; past this the trimap has no sure regions left
            # worth solving, so larger sizes run as this one.
            alpha_matting_erode_size=min(fields.ae, MAX_ERODE_SIZE),
        )
    return options.checked()


def check_model(model: str | None, settings: Settings) -> None:
    """Not sent (rembg's default is u2net; IS-Net runs here) and `isnet-general-use`
    run; any other of rembg's names runs IS-Net only when MATTE_REMBG_ANY_MODEL says so."""
    if model is None or model == SERVED_MODEL:
        return
    if model in MODELS and settings.rembg_any_model:
        return
    shown = model if len(model) <= 100 else model[:100] + "..."
    raise BadRequest(
        f"model: {shown} is not available on this server; it runs {SERVED_MODEL} "
        f"(send model={SERVED_MODEL} or leave model out)"
    )


async def fetch(services: Services, url: str) -> bytes:
    """The image at `url`, through the outbound guard; every failure a 400 naming `url`."""
    try:
        reply = await services.outbound.get(url.strip())
    except OutboundError as error:
        raise BadRequest(f"{URL_FIELD}: {error.reason}") from None
    if not reply.ok:
        raise BadRequest(f"{URL_FIELD}: the URL answered HTTP {reply.status}")
    if not reply.content:
        raise BadRequest(f"{URL_FIELD}: the URL answered with an empty body")
    return reply.content


async def read_any_form(request: Request) -> Form:
    """The body as a form: multipart, or urlencoded (FastAPI reads both for form
    fields); any other body holds no fields, so `file` is missing (FastAPI's 422)."""
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        return await read_form(request)
    if content_type != b"application/x-www-form-urlencoded":
        return Form([])
    body = bytearray()
    async for chunk in request.stream():  # under the body limit (middleware.BodyLimit)
        body += chunk
    try:
        # latin-1 keeps every byte of a percent-encoded value as it was sent.
        pairs = parse_qsl(
            body.decode("latin-1"),
            keep_blank_values=True,
            encoding="latin-1",
            max_num_fields=MAX_PARTS,
        )
    except ValueError:
        raise BadRequest(f"body: at most {MAX_PARTS} form fields are allowed") from None
    return Form(
        [
            Part(
                name.encode("latin-1").decode("utf-8", "replace"),
                None,
                None,
                bytearray(value.encode("latin-1")),
            )
            for name, value in pairs
        ]
    )


def _last(form: Form, name: str) -> Part | None:
    """The last part called `name`: FastAPI keeps the last of a repeated field."""
    found = None
    for part in form.parts:
        if part.name == name:
            found = part
    return found


def _values(form: Form) -> dict[str, str]:
    """Each option field's text, the last one of a repeated name, exactly as sent
    (FastAPI neither strips it nor refuses bytes that are not UTF-8)."""
    return {
        part.name: part.data.decode("utf-8", "replace")
        for part in form.parts
        if part.name in OPTION_NAMES
    }
