"""The IMG Processing API (img-processing.com): stored images, their transforms and
background removal.

Background removal is an operation on a stored image: a client uploads once,
gets an `image_...` id and calls `POST /v1/images/{id}/remove-background`,
which creates a new PNG image. What its official SDK (npm `img-processing-sdk`)
needs:

- `x-api-key` on every call; errors as problem details, which the SDK turns
  into its `IMGProcessingAPIError` (`type`, `error`, `status`, `message`, and
  `errors` for a 422).
- Creating and transforming calls answer 201 with an Image object and
  `X-Image-Processing-Usage` (images counted); reads answer 200.
- Transforms never change their source: each creates a new image.
- `links.next`/`links.previous` of a listing are full URLs the SDK fetches.

Images belong to the key that created it: any other key gets the same 404 as
for an id that never existed. The rows and bytes live in server/storage/.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Callable
from http import HTTPStatus

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import transforms
from ..errors import (
    ApiError,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from ..forms import read_form
from ..imaging import Limits
from ..operations import Api
from ..options import CutoutOptions
from ..outbound import OutboundError
from ..services import Services, services_of
from ..storage import ImageFormat, NewImage
from . import _common, imgproc_api
from .imgproc_fields import (
    IMAGES,
    PUBLIC_PREFIX,
    image_object,
    name_field,
    new_id,
    not_found,
    probe,
)
from .imgproc_library import ImageLibrary, in_storage, reader

IMAGE = "/v1/images/{id}"
# Published images: served without a key, the token being the only secret.
PUBLIC = PUBLIC_PREFIX + "{name}"
USAGE = "/v1/usage"
USAGE_HEADER = "x-image-processing-usage"
# The SDK's sandbox keys: their images may be given a maximum age.
TEST_KEY_PREFIX = "test_"
ERROR_DOCS = "https://docs.img-processing.com/api-reference/errors"

# The hosted API's other operations: generation, classification, captioning and
# text extraction have no model here.
NOT_OFFERED = (
    "/v1/images/imagine",
    "/v1/images/{id}/classify",
    "/v1/images/{id}/visualize",
    "/v1/images/{id}/extract-text",
)


class ImgProcessingDialect(ImageLibrary):
    name = "imgproc"
    # Wall-clock time for created_at and retention; a test pins it.
    clock: Callable[[], float] = staticmethod(time.time)

    def routes(self) -> list[BaseRoute]:
        def post(path: str, endpoint: Callable[[Request], object]) -> Route:
            return Route(path, endpoint, methods=["POST"])

        return [
            post(IMAGES + "/upload", self.upload),
            post(IMAGES, self.create_from_url),
            Route(IMAGES, self.list_images, methods=["GET"]),
            *(post(path, self.not_offered) for path in NOT_OFFERED),
            Route(IMAGE, self.get_image, methods=["GET"]),
            Route(IMAGE, self.delete_image, methods=["DELETE"]),
            Route(IMAGE + "/download", self.download, methods=["GET"]),
            post(IMAGE + "/publish", self.publish),
            post(IMAGE + "/unpublish", self.unpublish),
            post(IMAGE + "/remove-background", self.remove_background),
            post(IMAGE + "/{op}", self.transform),
            Route(PUBLIC, self.public, methods=["GET"]),
            Route(USAGE, self.usage, methods=["GET"]),
        ]

    def api(self) -> Api:
        return imgproc_api.describe(self.name, IMAGES, IMAGE, PUBLIC, USAGE, NOT_OFFERED)

    def render_error(self, error: ApiError, request_id: str) -> Response:
        status = error.status
        message = " ".join(error.messages)
        if isinstance(error, Unauthorized):
            message = "x-api-key: invalid or missing API key"
        body: dict[str, object] = {
            "type": f"{ERROR_DOCS}#{error.name.replace('_', '-')}",
            "error": HTTPStatus(status).phrase,
            "status": status,
            "message": message,
        }
        if isinstance(error, Unprocessable):
            body["errors"] = error.problems
            body["message"] = "The request has invalid fields: " + "; ".join(error.problems)
        return JSONResponse(body, status_code=status, headers=error.headers)

    # --- creating images ------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        """`POST /v1/images/upload`: multipart `image` and `name`."""
        owner, key = await self._enter(request)
        services = services_of(request)
        form = await read_form(request)
        name = form.text("name")
        part = form.get("image")
        problems = []
        if part is None:
            problems.append("image: is required: a jpeg, png or webp file")
        elif not part.data:
            problems.append("image: is empty: the part holds no bytes")
        checked = name_field(name, required=True, problems=problems)
        if problems:
            raise Unprocessable(problems)
        assert part is not None and checked is not None
        data = bytes(part.data)
        return await self._create(request, services, key, owner, checked, data, usage=1)

    async def create_from_url(self, request: Request) -> Response:
        """`POST /v1/images` {"name", "url"}: fetched through the outbound guard,
        from the hosts MATTE_FETCH_ALLOWED_HOSTS lists and no others."""
        owner, key = await self._enter(request)
        services = services_of(request)
        body = await _common.read_json_object(request)
        problems: list[str] = []
        name = name_field(body.get("name"), required=True, problems=problems)
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            problems.append("url: is required: the http(s) URL of a jpeg, png or webp image")
        if problems:
            raise Unprocessable(problems)
        assert isinstance(url, str) and name is not None
        try:
            reply = await services.outbound.get(
                url.strip(), hosts=services.settings.fetch_allowed_hosts
            )
        except OutboundError as error:
            raise Unprocessable([f"url: {error.reason}"], field="url") from None
        if not reply.ok:
            raise Unprocessable([f"url: the URL answered HTTP {reply.status}"], field="url")
        return await self._create(request, services, key, owner, name, reply.content, usage=1)

    async def remove_background(self, request: Request) -> Response:
        """`POST /v1/images/{id}/remove-background` {"name"?}: a PNG cut-out; counts 2."""
        owner, key = await self._enter(request)
        services = services_of(request)
        pipeline = services.ready_pipeline()
        with pipeline.admission.ticket() as ticket:
            body = await _common.read_json_object(request)
            name = name_field(body.get("name"), required=False)
            source = await self._find(services, request, owner)
            data = await in_storage(services, lambda storage: storage.image_data(source))
            cutout = await _common.cut_out(
                request, pipeline, ticket, data, CutoutOptions(), "image"
            )
        # The pipeline's own PNG: its size is in its header, no need to decode it again.
        with Image.open(io.BytesIO(cutout.data)) as written:
            size = written.size
        return await self._store(
            request, services, key, owner, name or source.name, cutout.data, "png", size, usage=2
        )

    async def transform(self, request: Request) -> Response:
        """`POST /v1/images/{id}/<op>`: convert, resize, crop, rotate, mirror, blur,
        modulate, watermark; each a new image."""
        owner, key = await self._enter(request)
        op = request.path_params["op"]
        if op not in transforms.OPS:
            raise NotFound()
        services = services_of(request)
        body = await _common.read_json_object(request)
        problems: list[str] = []
        name = name_field(body.get("name"), required=False, problems=problems)
        try:
            transform = transforms.parse(op, body)
        except Unprocessable as invalid:
            raise Unprocessable(problems + invalid.problems) from None
        if problems:
            raise Unprocessable(problems)
        source = await self._find(services, request, owner)
        marks: dict[str, bytes] = {}
        for index, mark_id in enumerate(transform.watermark_ids()):
            mark = await self._lookup(services, mark_id, owner)
            if mark is None:
                raise Unprocessable([f"watermarks[{index}].id: {not_found(mark_id)}"])
            marks[mark_id] = await in_storage(services, reader(mark))
        data = await in_storage(services, lambda storage: storage.image_data(source))
        encoded = await run_in_threadpool(
            transform.apply, data, source.format, marks, _limits(services)
        )
        return await self._store(
            request,
            services,
            key,
            owner,
            name or source.name,
            encoded.data,
            encoded.format,
            (encoded.width, encoded.height),
            usage=1,
        )

    async def _create(
        self,
        request: Request,
        services: Services,
        key: str,
        owner: str,
        name: str,
        data: bytes,
        usage: int,
    ) -> Response:
        fmt, size = await run_in_threadpool(probe, data, _limits(services))
        return await self._store(request, services, key, owner, name, data, fmt, size, usage)

    async def _store(
        self,
        request: Request,
        services: Services,
        key: str,
        owner: str,
        name: str,
        data: bytes,
        fmt: ImageFormat,
        size: tuple[int, int],
        usage: int,
    ) -> Response:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        max_age = services.settings.test_image_max_age_s
        expires_at = None
        if max_age > 0 and key.startswith(TEST_KEY_PREFIX):
            expires_at = now + dt.timedelta(seconds=max_age)
        new = NewImage(new_id(), owner, name, fmt, size[0], size[1], data, expires_at)
        stored = await in_storage(services, lambda storage: storage.add_image(new))
        await in_storage(services, lambda storage: storage.count_usage(owner, now.date(), usage))
        return JSONResponse(
            image_object(stored, _common.base_url(request, services.settings)),
            status_code=201,
            headers={USAGE_HEADER: str(usage)},
        )


def _limits(services: Services) -> Limits:
    settings = services.settings
    return Limits(settings.min_side, settings.min_pixels, settings.max_pixels)
