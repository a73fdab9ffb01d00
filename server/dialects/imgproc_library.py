"""The IMG Processing API's stored-image library: listing, reading, deleting and
publishing the images a key owns, its usage, and the access checks every keyed
route shares (server/dialects/imgproc.py adds the routes that create images).

Images belong to the key that created it: any other key gets the same 404 as for
an id that never existed. Storage calls run in a thread, and a storage failure is
a 503 whose cause goes to the log only.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import NotFound, NotImplementedRoute, Unavailable
from ..services import Services, services_of
from ..storage import Storage, StorageError, StoredImage
from . import _common
from .imgproc_fields import (
    ID_PATTERN,
    IMAGES,
    image_object,
    not_found,
    query_value,
    take_field,
)

log = logging.getLogger("matte")

T = TypeVar("T")


class ImageLibrary:
    """The routes over images already stored, and the helpers of every keyed route."""

    async def list_images(self, request: Request) -> Response:
        """`GET /v1/images?take=&from=`: newest first, with full URLs to the pages beside."""
        owner, _ = await self._enter(request)
        services = services_of(request)
        take = take_field(query_value(request.query_params.get("take")))
        start = query_value(request.query_params.get("from"))
        if start is not None and not ID_PATTERN.fullmatch(start):
            raise NotFound(not_found(start))
        page = await in_storage(services, lambda storage: storage.page(owner, take, start))
        if page is None:
            raise NotFound(not_found(start or ""))
        base = _common.base_url(request, services.settings)

        def link(image_id: str | None) -> str | None:
            if image_id is None:
                return None
            return f"{base}{IMAGES}?{urlencode({'take': take, 'from': image_id})}"

        return JSONResponse(
            {
                "data": [image_object(image, base) for image in page.images],
                "links": {"previous": link(page.previous_id), "next": link(page.next_id)},
            }
        )

    async def get_image(self, request: Request) -> Response:
        owner, _ = await self._enter(request)
        services = services_of(request)
        image = await self._find(services, request, owner)
        return JSONResponse(image_object(image, _common.base_url(request, services.settings)))

    async def download(self, request: Request) -> Response:
        owner, _ = await self._enter(request)
        services = services_of(request)
        image = await self._find(services, request, owner)
        data = await in_storage(services, lambda storage: storage.image_data(image))
        return Response(data, media_type=f"image/{image.format}")

    async def delete_image(self, request: Request) -> Response:
        """No body: 204. The bytes go once no image refers to them; a published
        copy stops answering with the row."""
        owner, _ = await self._enter(request)
        services = services_of(request)
        image_id = request.path_params["id"]
        deleted = ID_PATTERN.fullmatch(image_id) is not None and await in_storage(
            services, lambda storage: storage.delete_image(image_id, owner)
        )
        if not deleted:
            raise NotFound(not_found(image_id))
        return Response(status_code=204)

    async def publish(self, request: Request) -> Response:
        return await self._set_public(request, publish=True)

    async def unpublish(self, request: Request) -> Response:
        return await self._set_public(request, publish=False)

    async def _set_public(self, request: Request, publish: bool) -> Response:
        owner, _ = await self._enter(request)
        services = services_of(request)
        image = await self._find(services, request, owner)
        # Publishing twice keeps the first URL: links already handed out keep working.
        token = (image.public_token or secrets.token_urlsafe(24)) if publish else None
        updated = await in_storage(
            services, lambda storage: storage.set_public_token(image.id, owner, token)
        )
        if updated is None:  # deleted in between
            raise NotFound(not_found(image.id))
        base = _common.base_url(request, services.settings)
        return JSONResponse(image_object(updated, base))

    async def public(self, request: Request) -> Response:
        """A published image, without a key; 404 once unpublished or deleted."""
        request.state.dialect = self
        services = services_of(request)
        token, _, extension = request.path_params["name"].rpartition(".")
        image = None
        if token:
            image = await in_storage(services, lambda storage: storage.published(token))
        if image is None or extension != image.format:
            raise NotFound("route: no published image at this URL")
        data = await in_storage(services, reader(image))
        # Unpublishing must take effect at once: no cache may keep a copy.
        return Response(
            data, media_type=f"image/{image.format}", headers={"cache-control": "no-cache"}
        )

    async def usage(self, request: Request) -> Response:
        """Matte's own addition: images counted for this key, per day (UTC)."""
        owner, _ = await self._enter(request)
        services = services_of(request)
        days = await in_storage(services, lambda storage: storage.usage(owner))
        return JSONResponse(
            {"data": [{"date": day.isoformat(), "images": count} for day, count in days.items()]}
        )

    async def not_offered(self, request: Request) -> Response:
        await self._enter(request)
        raise NotImplementedRoute(
            "route: image generation, classification and text extraction are not offered "
            "by this server; it removes backgrounds and transforms images"
        )

    # --- helpers --------------------------------------------------------------------------

    async def _enter(self, request: Request) -> tuple[str, str]:
        """Every keyed route: this dialect renders its errors; the key is checked and
        counted. The caller's storage owner and key."""
        request.state.dialect = self
        key = request.headers.get("x-api-key") or None
        owner = await services_of(request).authorize(request, key)
        assert key is not None  # authorize refuses a missing key
        return owner, key

    async def _find(self, services: Services, request: Request, owner: str) -> StoredImage:
        image_id = request.path_params["id"]
        image = await self._lookup(services, image_id, owner)
        if image is None:
            raise NotFound(not_found(image_id))
        return image

    async def _lookup(self, services: Services, image_id: str, owner: str) -> StoredImage | None:
        if not ID_PATTERN.fullmatch(image_id):
            return None
        return await in_storage(services, lambda storage: storage.image(image_id, owner))


def reader(image: StoredImage) -> Callable[[Storage], bytes]:
    return lambda storage: storage.image_data(image)


async def in_storage(services: Services, call: Callable[[Storage], T]) -> T:
    """`call(storage)` in a thread; a storage failure is a 503 whose cause goes to
    the log only."""
    storage, _ = services.stored()
    try:
        return await run_in_threadpool(call, storage)
    except StorageError:
        log.exception("storage failed")
        raise Unavailable("storage: temporarily unavailable, please retry shortly", 5) from None
