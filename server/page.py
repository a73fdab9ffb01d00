"""The web page at `/`: an HTML file with its own scripts and styles, served as they
are (no build step, nothing from another origin, so it works offline), and the one
fact the page needs before it calls the Stability endpoint: whether the server wants
an API key.

None of these routes needs a key: the page is what asks for one, and only when the
server has keys configured (with none, any key is accepted, so the page sends a key
of its own and never asks).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .dialects.stability import PATH
from .services import services_of

STATIC = Path(__file__).parent / "static" / "page"
STATIC_URL = "/static/page"
CONFIG_PATH = "/page/config"


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Route(CONFIG_PATH, config, methods=["GET"]),
        Mount(STATIC_URL, StaticFiles(directory=STATIC), name="page"),
    ]


async def index(request: Request) -> Response:
    # Revalidated on every visit (the ETag makes that cheap), so a new release's
    # page is seen at once; the CSP comes from RequestContext, as for any HTML.
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"cache-control": "no-cache"},
    )


async def config(request: Request) -> Response:
    """What the page asks on load. `needs_key` is false when the server takes any
    key (none configured): then the page never shows its key prompt."""
    services = services_of(request)
    return JSONResponse(
        {"needs_key": not services.keyring.open, "endpoint": PATH},
        headers={"cache-control": "no-store"},
    )
