"""Omixa's unified images endpoint, `POST /api/v1/images/generations` (OpenAI-style).

The OpenAI SDK reaches it with `base_url=".../api/v1"`: `images.generate(model=...,
prompt="", output_format=..., extra_body={"input_images": [...]})`. What that SDK
needs (openai-python's `_base_client.py` and `_client.py`):

- Errors as `{"error": {"message", "type", "param", "code"}}`: the SDK picks an
  exception class by status and shows `message`.
- It retries 408, 409, 429 and 5xx, sleeping for `Retry-After` when that is at
  most 60 s (120 s in releases from 2026 on) and for its own short back-off
  otherwise, unless `x-should-retry` says "false". A lock-out longer than 60 s
  therefore says "false": a retry within it would only be refused again.
- The reply is always JSON, whatever `Accept` says (an empty one included).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import ApiError, BadRequest, RateLimited
from ..imaging import OutputFormat
from ..operations import (
    BEARER,
    BODY_ERRORS,
    JSON,
    KEY_ERRORS,
    MODEL_ERRORS,
    SERVER_ERROR,
    Api,
    Body,
    ErrorShape,
    Field,
    Operation,
    Reply,
    choice,
    obj,
)
from ..options import OUTPUT_FORMATS, CutoutOptions, parse_format
from ..services import services_of
from ._common import (
    b64encode,
    cut_out,
    get,
    read_json_object,
    require,
    to_image,
    to_list,
    to_object,
    to_str,
)
from .stability import bearer_key

PATH = "/api/v1/images/generations"
MODEL = "stability-remove-background"
URL_FIELD = "input_images[0].image_url.url"

# The longest Retry-After every OpenAI SDK release sleeps for (older ones: 60 s).
SDK_MAX_RETRY_AFTER_S = 60
DEFAULT_FORMAT: OutputFormat = "png"

MODEL_FIELD = Field(
    "model",
    {"type": "string", "const": MODEL},
    "The only model this server runs; anything else is a 400 naming it.",
    required=True,
)
_IMAGE_URL = obj(
    {
        "type": {"const": "image_url"},
        "image_url": obj(
            {
                "url": {
                    "type": "string",
                    "description": "a `data:image/png|jpeg|webp;base64,...` URL or bare "
                    "base64; links are refused (inline images only)",
                }
            },
            ["url"],
        ),
    },
    ["type", "image_url"],
)
INPUT_IMAGES = Field(
    "input_images",
    {"type": "array", "items": _IMAGE_URL, "minItems": 1, "maxItems": 1},
    "Exactly one image, as an OpenAI image_url part.",
    required=True,
)
OUTPUT_FORMAT = choice("output_format", OUTPUT_FORMATS, "The result's format.", DEFAULT_FORMAT)
PROMPT = Field("prompt", {"type": "string"}, 'Ignored (the SDK requires one: send "").')
SUCCESS = Reply(
    200,
    "The cut-out as bare base64 (no data: prefix).",
    {
        JSON: obj(
            {
                "created": {"type": "integer", "description": "unix seconds"},
                "data": {
                    "type": "array",
                    "items": obj(
                        {
                            "b64_json": {"type": "string", "contentEncoding": "base64"},
                            "url": {"type": "null"},
                        },
                        ["b64_json", "url"],
                    ),
                    "minItems": 1,
                    "maxItems": 1,
                },
                "usage": obj({"billed_amount": {"const": "0.000000"}}, ["billed_amount"]),
            },
            ["created", "data", "usage"],
        )
    },
)
_ERROR_TYPES = ["invalid_request_error", "authentication_error", "rate_limit_error", "server_error"]
ERROR = ErrorShape(
    "OmixaError",
    obj(
        {
            "error": obj(
                {
                    "message": {"type": "string"},
                    "type": {"enum": _ERROR_TYPES},
                    "param": {
                        "type": ["string", "null"],
                        "description": "the field at fault, when one is",
                    },
                    "code": {"type": "string", "description": "Matte's error name"},
                },
                ["message", "type", "param", "code"],
            )
        },
        ["error"],
        examples=[
            {
                "error": {
                    "message": "model: must be stability-remove-background, the only model "
                    "this server runs",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "bad_request",
                }
            }
        ],
    ),
)


class OmixaDialect:
    name = "omixa"
    # Wall-clock seconds for `created`; a test pins it.
    clock: Callable[[], float] = staticmethod(time.time)

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.generate, methods=["POST"])]

    def api(self) -> Api:
        operation = Operation(
            "POST",
            (PATH,),
            "Remove the background (images.generate)",
            'The openai SDK reaches it with `base_url=".../api/v1"` and '
            '`extra_body={"input_images": [...]}`. Unknown fields are ignored.',
            body=Body(JSON, (MODEL_FIELD, INPUT_IMAGES, OUTPUT_FORMAT, PROMPT)),
            replies=(SUCCESS,),
            errors={
                400: "a field is missing or invalid; `param` names it",
                **KEY_ERRORS,
                **BODY_ERRORS,
                **MODEL_ERRORS,
                **SERVER_ERROR,
            },
            auth=(BEARER,),
        )
        return Api(
            self.name,
            "Omixa (OpenAI-style)",
            "Omixa's unified images endpoint, as the openai SDK calls it. The reply is "
            "always JSON. A 429 whose lock-out is over 60 s also says `x-should-retry: "
            "false`, so the SDK does not retry into it.",
            ERROR,
            (operation,),
        )

    def render_error(self, error: ApiError, request_id: str) -> Response:
        body = {
            "error": {
                "message": " ".join(error.messages),
                "type": error_type(error.status),
                "param": error.field if isinstance(error, BadRequest) else None,
                "code": error.name,
            }
        }
        headers = dict(error.headers)
        if isinstance(error, RateLimited) and error.retry_after_s > SDK_MAX_RETRY_AFTER_S:
            headers["x-should-retry"] = "false"
        return JSONResponse(body, status_code=error.status, headers=headers)

    async def generate(self, request: Request) -> Response:
        request.state.dialect = self
        services = services_of(request)
        pipeline = await services.admit(request, bearer_key(request.headers.get("authorization")))
        with pipeline.admission.ticket() as ticket:
            body = await read_json_object(request)
            # `prompt` (the SDK requires one; callers send "") and other fields are ignored.
            check_model(body)
            data = input_image(body)
            options = CutoutOptions(output_format=output_format(body)).checked()
            cutout = await cut_out(request, pipeline, ticket, data, options, URL_FIELD)
        return JSONResponse(
            {
                "created": int(self.clock()),
                # Bare base64, as OpenAI's b64_json is: no data: prefix.
                "data": [{"b64_json": b64encode(cutout.data), "url": None}],
                "usage": {"billed_amount": "0.000000"},
            }
        )


def error_type(status: int) -> str:
    """OpenAI's error `type` vocabulary for a status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def check_model(body: Mapping[str, object]) -> None:
    model = get(body, MODEL_FIELD.name)
    if model != MODEL:
        raise BadRequest(
            f"model: must be {MODEL}, the only model this server runs",
            field="model",  # OpenAI's `param`; its errors have no problem kind
        )


def input_image(body: Mapping[str, object]) -> bytes:
    """The one `{"type": "image_url", "image_url": {"url": "data:..."}}` in `input_images`."""
    images = to_list(require(body, INPUT_IMAGES.name), INPUT_IMAGES.name)
    if len(images) != 1:
        raise BadRequest("input_images: must hold exactly one image", field="input_images")
    item = to_object(images[0], "input_images[0]")
    if get(item, "type") != "image_url":
        raise BadRequest('input_images[0].type: must be "image_url"', field="input_images[0].type")
    image_url = to_object(
        require(item, "image_url", "input_images[0].image_url"), "input_images[0].image_url"
    )
    url = to_str(require(image_url, "url", URL_FIELD), URL_FIELD)
    return to_image(url, URL_FIELD)


def output_format(body: Mapping[str, object]) -> OutputFormat:
    value = get(body, OUTPUT_FORMAT.name)
    if value is None:
        return DEFAULT_FORMAT
    return parse_format(OUTPUT_FORMAT.name, to_str(value, OUTPUT_FORMAT.name))
