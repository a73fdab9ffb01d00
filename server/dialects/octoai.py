"""OctoAI's `POST /background-removal`, as its SDKs' generic `infer(url, inputs)` calls it.

What the clients send and need (octoai 1.11, octoai-sdk, @octoai/client):

- `octoai` 1.11's `infer()` posts with no Authorization header at all, and
  @octoai/client sends empty `Authorization:`, `Accept:` and `X-OctoAI-Async:`
  headers. An empty header counts as missing; with no keys configured
  (an open keyring) no key is needed, so those clients work out of the box.
- Success must be exactly 200 (`infer()` raises on anything else).
- The only error body the SDKs know is FastAPI's: a `detail` list for a bad
  body (422), a `detail` string otherwise. The SDKs retry 5xx, so every bad
  value is a 422, never a 500.
- The reply is always JSON, whatever `Accept` says (an empty one included),
  as OctoAI's FastAPI server did. `X-OctoAI-Async` is ignored: the answer
  comes in the response.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import ApiError, BadRequest
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
    Operation,
    Reply,
    obj,
)
from ..options import CutoutOptions
from ..services import services_of
from ._common import b64encode, cut_out, cutout_options, image, read_json_object
from ._fields import json_image, json_option_fields
from .stability import bearer_key

PATH = "/background-removal"
IMAGE_FIELD = "init_image"

# OctoAI's defaults; post_process_mask is on there, unlike rembg's.
DEFAULTS = CutoutOptions(post_process_mask=True)

SUCCESS = Reply(
    200,
    "The cut-out (or mask) as a base64 PNG of the input's size.",
    {
        JSON: obj(
            {
                "image_b64": {"type": "string", "contentEncoding": "base64"},
                "removed_for_safety": {"const": False},
            },
            ["image_b64", "removed_for_safety"],
        )
    },
)
_PROBLEMS = ["missing", "type_error", "value_error", "json_invalid"]
INVALID = ErrorShape(
    "OctoAIValidationError",
    obj(
        {
            "detail": {
                "type": "array",
                "items": obj(
                    {
                        "loc": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": '["body"] or ["body", "<field>"]',
                        },
                        "msg": {"type": "string"},
                        "type": {"enum": _PROBLEMS},
                    },
                    ["loc", "msg", "type"],
                ),
            }
        },
        ["detail"],
        examples=[
            {
                "detail": [
                    {
                        "loc": ["body", "init_image"],
                        "msg": "init_image: is required",
                        "type": "missing",
                    }
                ]
            }
        ],
    ),
)
ERROR = ErrorShape(
    "OctoAIError",
    obj(
        {"detail": {"type": "string"}},
        ["detail"],
        examples=[{"detail": "authorization: invalid or missing header value"}],
    ),
    by_status={422: INVALID},
)


class OctoAIDialect:
    name = "octoai"

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.remove_background, methods=["POST"])]

    def api(self) -> Api:
        fields = (json_image(IMAGE_FIELD), *json_option_fields(DEFAULTS))
        operation = Operation(
            "POST",
            (PATH,),
            "Remove the background (infer)",
            "As OctoAI's SDKs call it with `infer(url, inputs)`. With no keys configured "
            "no key is needed here (octoai 1.11 sends none); with keys, a missing one is "
            "a 401. `X-OctoAI-Async` is ignored: the answer always comes in the response.",
            body=Body(JSON, fields),
            replies=(SUCCESS,),
            errors={
                422: "a field is missing or invalid, or the body is not a JSON object",
                **KEY_ERRORS,
                **BODY_ERRORS,
                **MODEL_ERRORS,
                **SERVER_ERROR,
            },
            auth=(BEARER,),
            auth_optional=True,
        )
        return Api(
            self.name,
            "OctoAI",
            "OctoAI's background removal, with FastAPI's error shapes (the only ones its "
            "SDKs know): a bad body is a 422 list, anything else a `detail` string. An "
            "empty `Authorization:` header counts as missing.",
            ERROR,
            (operation,),
        )

    def render_error(self, error: ApiError, request_id: str) -> Response:
        if isinstance(error, BadRequest):
            # FastAPI's validation error: 422, one entry per problem, `loc` from the body down.
            loc = ["body"] if error.field in (None, "body") else ["body", error.field]
            detail = [
                {"loc": loc, "msg": message, "type": error.problem} for message in error.messages
            ]
            return JSONResponse({"detail": detail}, status_code=422, headers=error.headers)
        return JSONResponse(
            {"detail": " ".join(error.messages)}, status_code=error.status, headers=error.headers
        )

    async def remove_background(self, request: Request) -> Response:
        request.state.dialect = self
        services = services_of(request)
        key = bearer_key(request.headers.get("authorization"))
        pipeline = await services.admit(request, key, keyless_when_open=True)
        with pipeline.admission.ticket() as ticket:
            body = await read_json_object(request)
            data = image(body, IMAGE_FIELD)
            options = cutout_options(body, DEFAULTS)
            cutout = await cut_out(request, pipeline, ticket, data, options, IMAGE_FIELD)
        return JSONResponse({"image_b64": b64encode(cutout.data), "removed_for_safety": False})
