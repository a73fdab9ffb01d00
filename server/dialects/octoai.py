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
from ..options import CutoutOptions
from ..services import services_of
from ._common import b64encode, cut_out, cutout_options, image, read_json_object
from .stability import bearer_key

PATH = "/background-removal"
IMAGE_FIELD = "init_image"

# OctoAI's defaults; post_process_mask is on there, unlike rembg's.
DEFAULTS = CutoutOptions(post_process_mask=True)


class OctoAIDialect:
    name = "octoai"

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.remove_background, methods=["POST"])]

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
