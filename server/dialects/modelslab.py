"""ModelsLab's background removal (`removebg_mask`), its `fetch`, and the result URLs.

Contract, from ModelsLab's docs and the `modelslab-py` / `modelslab` clients:

- Four paths, one handler: v5 (documented), v6 image_editing (current docs and
  modelslab-py), v1 image_editing (`modelslab` 0.2) and v1 enterprise.
- JSON; the API key is the body's `key`, so the body is read before `admit`
  (under the admission ticket, as every upload is).
- The answer is a URL to Matte's own result store (`GET /results/<token>.png`,
  no key needed, the token is unguessable) or, with `base64: true`, the PNG
  itself in `output`. `fetch` answers the same body while the result is kept.
- Errors are `{"status": "error", "message": ...}` with the real HTTP status, as
  ModelsLab's error-code docs list (400, 401, 429, 500, ...); modelslab-py
  raises on any status but 200 and shows the body, and a 429 or 503 also says
  `retry_after` in the body, as ModelsLab's does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import ApiError, BadRequest, NotFound, Unauthorized
from ..keyring import Keyring
from ..operations import Api
from ..options import CutoutOptions
from ..outbound import OutboundError
from ..services import Services, services_of
from ..storage import KeptResult
from . import _common, modelslab_api
from .modelslab_api import BASE64, IGNORED, INVERSE_MASK

PATHS = (
    "/api/v5/removebg_mask",
    "/api/v6/image_editing/removebg_mask",
    "/api/v1/image_editing/removebg_mask",
    "/api/v1/enterprise/image_editing/removebg_mask",
)
# The two, and the ones modelslab-py's `fetch(id)` builds: its API
# classes' base URL + "fetch/" + id.
FETCH_PATHS = (
    "/api/v6/fetch/{id}",
    "/api/v5/fetch/{id}",
    "/api/v6/image_editing/fetch/{id}",
    "/api/v1/image_editing/fetch/{id}",
    "/api/v1/enterprise/image_editing/fetch/{id}",
)
RESULTS_PATH = "/results/{name}"

# ModelsLab's own defaults, which differ from rembg's (background 20, erode 5).
DEFAULTS = CutoutOptions(
    alpha_matting_foreground_threshold=240,
    alpha_matting_background_threshold=20,
    alpha_matting_erode_size=5,
)
KEY_MESSAGE = "key: invalid or missing API key"
MEDIA_TYPE = "image/png"


@dataclass(frozen=True)
class Job:
    """One request's effective parameters."""

    image_url: str | None  # None: the image came inline
    options: CutoutOptions
    base64: bool
    seed: int | None
    webhook: str | None
    track_id: str | int | None

    def meta(self) -> dict[str, Any]:
        options = self.options
        return {
            "image": self.image_url,
            "alpha_matting": options.alpha_matting,
            "alpha_matting_foreground_threshold": options.alpha_matting_foreground_threshold,
            "alpha_matting_background_threshold": options.alpha_matting_background_threshold,
            "alpha_matting_erode_size": options.alpha_matting_erode_size,
            "post_process_mask": options.post_process_mask,
            "only_mask": options.only_mask,
            "inverse_mask": options.inverse_mask,
            "seed": self.seed,
            "base64": self.base64,
            "webhook": self.webhook,
            "track_id": self.track_id,
        }


class ModelsLabDialect:
    name = "modelslab"

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route(path, self.remove_background, methods=["POST"]) for path in PATHS
        ]
        routes += [Route(path, self.fetch, methods=["POST"]) for path in FETCH_PATHS]
        routes.append(Route(RESULTS_PATH, self.result, methods=["GET"]))
        return routes

    def api(self) -> Api:
        return modelslab_api.describe(self.name, PATHS, FETCH_PATHS, RESULTS_PATH, DEFAULTS)

    def render_error(self, error: ApiError, request_id: str) -> Response:
        # Status and message only: ModelsLab's errors name no field, so this
        # module's own BadRequests carry none (the message starts with it).
        message = KEY_MESSAGE if isinstance(error, Unauthorized) else "; ".join(error.messages)
        body: dict[str, Any] = {"status": "error", "message": message}
        retry_after = error.headers.get("retry-after")
        if retry_after is not None:
            body["retry_after"] = int(retry_after)
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    async def remove_background(self, request: Request) -> Response:
        request.state.dialect = self
        started = time.perf_counter()
        services = services_of(request)
        pipeline = services.ready_pipeline()
        with pipeline.admission.ticket() as ticket:
            body = await _common.read_json_object(request)
            key = _key(body)
            await services.admit(request, key)
            assert key is not None  # admit refuses a missing key
            job = parse_job(body, services)
            data = await image_bytes(body, job, services)
            cutout = await _common.cut_out(request, pipeline, ticket, data, job.options, "image")
        png = cutout.data
        details = {
            "generationTime": round(time.perf_counter() - started, 4),
            "meta": job.meta(),
            "base64": job.base64,
            "base_url": _common.base_url(request, services.settings),
        }
        _, results = services.stored()
        result = await run_in_threadpool(
            results.put, png, MEDIA_TYPE, Keyring.identity(key), details
        )
        reply = success_body(result)
        if job.webhook is not None:
            services.webhooks.send(job.webhook, {**reply, "track_id": job.track_id})
        return JSONResponse(reply)

    async def fetch(self, request: Request) -> Response:
        request.state.dialect = self
        services = services_of(request)
        body = await _common.read_json_object(request)
        key = _key(body)
        await services.admit(request, key)
        assert key is not None
        raw = request.path_params["id"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
            raise BadRequest("id: must be the id of a result, a number")
        _, results = services.stored()
        result = await run_in_threadpool(results.by_id, int(raw), Keyring.identity(key))
        if result is None:
            raise NotFound(_gone("id", services))
        return JSONResponse(success_body(result))

    async def result(self, request: Request) -> Response:
        request.state.dialect = self
        services = services_of(request)
        token, _, extension = request.path_params["name"].rpartition(".")
        _, results = services.stored()
        found = await run_in_threadpool(results.by_token, token) if extension == "png" else None
        if found is None:
            raise NotFound(_gone("result", services))
        # The URL is the only secret: no shared cache may keep it.
        return Response(
            found.data, media_type=found.media_type, headers={"cache-control": "no-store"}
        )


def parse_job(body: Mapping[str, object], services: Services) -> Job:
    """Every field but `image`'s bytes, checked before any work is done."""
    inverse_mask = _common.boolean(body, INVERSE_MASK.name, False)
    options = _common.cutout_options({**body, **dict.fromkeys(IGNORED)}, DEFAULTS)
    if inverse_mask:
        # The inverse of the mask is a mask: white background, black subject.
        options = dataclasses.replace(options, only_mask=True, inverse_mask=True)
    image = _common.require(body, "image")
    image_url = _image_url(image, services)
    webhook = _common.optional_string(body, "webhook")
    if webhook is not None and not webhook.strip():
        webhook = None  # an empty form field means "not sent"
    if webhook is not None:
        try:
            services.outbound.check_url(webhook.strip())
        except OutboundError as error:
            raise BadRequest(f"webhook: {error.reason}") from None
        webhook = webhook.strip()
    return Job(
        image_url=image_url,
        options=options,
        base64=_common.boolean(body, BASE64.name, False),
        seed=_common.optional_integer(body, "seed"),
        webhook=webhook,
        track_id=_track_id(body.get("track_id")),
    )


async def image_bytes(body: Mapping[str, object], job: Job, services: Services) -> bytes:
    """The image: fetched through the outbound guard, or decoded from base64 / a data URL."""
    if job.image_url is None:
        return _common.to_image(body["image"], "image")
    try:
        reply = await services.outbound.get(job.image_url)
    except OutboundError as error:
        raise BadRequest(f"image: {error.reason}") from None
    if not reply.ok:
        raise BadRequest(f"image: the URL answered HTTP {reply.status}")
    if not reply.content:
        raise BadRequest("image: the URL answered with an empty body")
    return reply.content


def success_body(result: KeptResult) -> dict[str, Any]:
    details = result.details
    url = f"{details['base_url']}/results/{result.token}.png"
    output = _common.b64encode(result.data) if details["base64"] else url
    return {
        "status": "success",
        "generationTime": details["generationTime"],
        "id": result.id,
        "output": [output],
        "proxy_links": [url],
        "meta": details["meta"],
    }


def _key(body: Mapping[str, object]) -> str | None:
    # A key of the wrong type is as good as none: 401, never a hint about the type.
    key = body.get("key")
    return key if isinstance(key, str) and key else None


def _image_url(value: object, services: Services) -> str | None:
    """The image's URL when `image` is one (checked now), None when it is inline data."""
    text = _common.to_str(value, "image").strip()
    if not text.lower().startswith(("http://", "https://")):
        return None
    try:
        services.outbound.check_url(text)
    except OutboundError as error:
        raise BadRequest(f"image: {error.reason}") from None
    return text


def _track_id(value: object) -> str | int | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadRequest("track_id: must be a string, an integer or null")


def _gone(label: str, services: Services) -> str:
    ttl = services.settings.results_ttl_s
    seconds = str(int(ttl)) if float(ttl).is_integer() else f"{ttl:g}"
    return f"{label}: no such result; results are kept for {seconds} seconds"
