"""The application factory: routes, middleware, error handlers and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import PurePath

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import openapi, page, reference
from .dialects import Dialect
from .dialects.imgproc import ImgProcessingDialect
from .dialects.modelslab import ModelsLabDialect
from .dialects.octoai import OctoAIDialect
from .dialects.omixa import OmixaDialect
from .dialects.photoroom import PhotoroomDialect
from .dialects.rembg import RembgDialect
from .dialects.removebg import RESULT_HEADERS, RemoveBgDialect
from .dialects.stability import StabilityDialect
from .engine import Engine, load_engine
from .errors import ApiError, InternalError, MethodNotAllowed, NotFound
from .key_slots import SlotRelease
from .keyring import Keyring
from .loader import EngineFactory, load_pipeline
from .metrics import CONTENT_TYPE, Metrics
from .middleware import BodyLimit, RequestContext
from .outbound import Outbound
from .presence import ClientGone
from .ratelimit import MemoryStore, RateLimiter, RateLimitStore
from .ratelimit_redis import RedisStore
from .results import ResultStore
from .services import Readiness, Services
from .settings import Settings
from .storage import Storage, StorageError, open_storage
from .webhooks import Webhooks

log = logging.getLogger("matte")

SWEEP_INTERVAL_S = 60.0

# Headers the JSON dialects' browser clients send, so a CORS preflight lets them
# through: @octoai/client's X-OctoAI-Async, the openai package's X-Stainless-*.
CLIENT_HEADERS = (
    "x-octoai-async",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    store: RateLimitStore | None = None,
    clock: Callable[[], float] | None = None,
    outbound: Outbound | None = None,
    storage: Storage | None = None,
) -> Starlette:
    """Build the app. By default the lifespan loads the ONNX model that `settings`
    names and opens the storage they name; tests hand in a small fake `engine`,
    a `clock` for the limiter and the result store, an `outbound` guard that may
    reach their own local servers, and a `storage` they own (left open)."""
    metrics = Metrics()
    if store is None:
        # Redis when replicas must share the limit; it connects on the first check.
        store = (
            RedisStore.from_url(settings.redis_url)
            if settings.redis_url
            else MemoryStore(clock or time.monotonic)
        )
    limiter = RateLimiter(
        store,
        limit=settings.rate_limit_requests,
        window_s=settings.rate_limit_window_s,
        timeout_s=settings.rate_limit_timeout_s,
    )
    guard = outbound
    if guard is None:
        guard = Outbound(settings.outbound_enabled, timeout_s=settings.outbound_timeout_s)
    services = Services(
        settings,
        metrics,
        Keyring(settings.api_keys, settings.key_limits),
        limiter,
        outbound=guard,
        webhooks=Webhooks(guard),
    )
    dialects: list[Dialect] = [
        StabilityDialect(),
        OmixaDialect(),
        OctoAIDialect(),
        ModelsLabDialect(),
        ImgProcessingDialect(),
        PhotoroomDialect(),
        RembgDialect(),
        RemoveBgDialect(),
    ]
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    for dialect in dialects:
        dialect_routes = dialect.routes()
        # For the log line's `dialect` and matte_route_info (per-dialect dashboards).
        metrics.name_routes(dialect.name, dialect_routes)
        routes.extend(dialect_routes)
    # The web page at `/` (server/page.py): no key needed to load it.
    routes.extend(page.routes())
    # /openapi.json, built from these routes and the dialects' own descriptions, and
    # the /docs page rendered from it: no key needed to read either.
    routes.extend([*openapi.routes(), *reference.routes()])
    middleware = [Middleware(RequestContext, metrics=metrics)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=[
                    "authorization",
                    "accept",
                    "content-type",
                    "x-api-key",
                    *CLIENT_HEADERS,
                ],
                expose_headers=[
                    "finish-reason",
                    "seed",
                    "x-request-id",
                    "retry-after",
                    "x-should-retry",
                    "x-image-processing-usage",
                    *RESULT_HEADERS,
                ],
                max_age=600,
            )
        )
    middleware.append(
        Middleware(
            BodyLimit,
            max_bytes=settings.max_body_bytes,
            idle_timeout_s=settings.body_idle_timeout_s,
            timeout_s=settings.body_timeout_s,
            min_rate=settings.body_min_rate,
        )
    )
    # Innermost: its `finally` runs once the response is out, on every path.
    middleware.append(Middleware(SlotRelease, slots=services.slots))

    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: handle_http_exception,
            ClientDisconnect: handle_disconnect,
            Exception: handle_unexpected,
        },
        lifespan=_lifespan(services, engine, storage, clock or time.time),
    )
    app.state.services = services
    app.state.default_dialect = dialects[0]
    app.state.dialects = dialects  # what /openapi.json describes
    return app


def _lifespan(
    services: Services, engine: Engine | None, storage: Storage | None, clock: Callable[[], float]
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings = services.settings
        factory: EngineFactory = load_engine if engine is None else (lambda _: engine)
        # Storage opens before the server listens: a database that cannot be
        # reached is a start-up failure the operator sees at once, not 503s later.
        opened = storage if storage is not None else await asyncio.to_thread(open_storage, settings)
        services.storage = opened
        services.results = ResultStore(
            opened, settings.results_ttl_s, settings.results_max_bytes, clock
        )
        # Loading (seconds) happens in the background so /healthz answers at once
        # and /readyz says 503 until the model is warm.
        loader = asyncio.create_task(_load(services, factory))
        sweeper = asyncio.create_task(_sweep(services.results, clock))
        try:
            yield
        finally:
            services.readiness.state = "stopping"
            for task in (loader, sweeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Deliveries still retrying are dropped: shutdown must not wait out back-off.
            await services.webhooks.close()
            await services.limiter.store.close()
            if services.pipeline is not None:
                await services.pipeline.scheduler.stop()
            if storage is None:
                await asyncio.to_thread(opened.close)

    return lifespan


async def _sweep(results: ResultStore, clock: Callable[[], float]) -> None:
    """Drop expired results and images now and then, so their space goes back
    without waiting for a lookup (lookups never serve an expired result anyway)."""
    while True:
        await asyncio.sleep(min(results.ttl_s, SWEEP_INTERVAL_S))
        try:
            await asyncio.to_thread(results.purge)
            now = dt.datetime.fromtimestamp(clock(), dt.UTC)
            await asyncio.to_thread(results.storage.purge_images, now)
        except StorageError:
            log.exception("the storage sweep failed; it runs again in a while")


async def _load(services: Services, factory: EngineFactory) -> None:
    try:
        # pymatting's numba code loads from its cache here, not on a user's first request.
        started = await load_pipeline(services.settings, services.metrics, factory)
    except asyncio.CancelledError:
        raise
    except Exception:
        services.readiness.state = "failed"
        log.exception("the model failed to load; model routes will answer 503")
        return
    services.pipeline = started.pipeline
    loaded, layout, warm_s = started.engine, started.layout, started.warm_up_s
    # The file's name only: its path says how the host is laid out, to anyone.
    file_name = PurePath(loaded.model_file).name
    draining = services.readiness.state == "draining"
    services.readiness = Readiness(
        "ready", loaded.provider, file_name, round(warm_s, 3), loaded.engine, loaded.precision
    )
    if draining:  # a SIGTERM came during the load: stay out of rotation
        services.readiness.state = "draining"
    services.metrics.model.info(
        {
            "provider": loaded.provider,
            "engine": loaded.engine,
            "precision": loaded.precision,
            "model_file": file_name,
        }
    )
    log.info(
        "model ready: engine=%s precision=%s provider=%s file=%s workers=%d "
        "threads/worker=%d batch=%d pending=%d queue=%d warm-up=%.2fs",
        loaded.engine,
        loaded.precision,
        loaded.provider,
        loaded.model_file,
        layout.workers,
        layout.threads,
        layout.batch_size,
        layout.max_pending,
        layout.max_queue,
        warm_s,
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    readiness: Readiness = request.app.state.services.readiness
    body = {
        "status": readiness.state,
        "provider": readiness.provider,
        "engine": readiness.engine,
        "precision": readiness.precision,
        "model_file": readiness.model_file,
        "warm_up_s": readiness.warm_up_s,
    }
    return JSONResponse(body, status_code=200 if readiness.state == "ready" else 503)


async def metrics_endpoint(request: Request) -> Response:
    return Response(request.app.state.services.metrics.render(), media_type=CONTENT_TYPE)


def _dialect(request: Request) -> Dialect:
    dialect: Dialect = getattr(request.state, "dialect", None) or request.app.state.default_dialect
    return dialect


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _dialect(request).render_error(exc, _request_id(request))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        error = MethodNotAllowed(headers=dict(exc.headers or {}))
    else:
        error = ApiError(str(exc.detail))
        error.status = exc.status_code
    return _dialect(request).render_error(error, _request_id(request))


# nginx's "client closed request": no client reads it, the metrics and log do.
DISCONNECTED = 499


async def handle_disconnect(request: Request, exc: Exception) -> Response:
    """A client that went away mid-upload is neither a server error nor worth a
    traceback: one line, and the request counted as 499. So is one that went away
    while its image waited or was being cut out (its work was dropped)."""
    when = exc.where if isinstance(exc, ClientGone) else "before sending all of it"
    log.info("request %s: the client disconnected %s", _request_id(request), when)
    return Response(status_code=DISCONNECTED)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = _request_id(request)
    # The cause goes to the log under the id the client sees, never into the response.
    log.error("request %s failed", request_id, exc_info=exc)
    response = _dialect(request).render_error(InternalError(), request_id)
    # This handler runs outside RequestContext (in Starlette's outermost
    # middleware), so its headers are added here.
    response.headers["x-request-id"] = request_id
    response.headers["x-content-type-options"] = "nosniff"
    return response
