"""Command line: `python -m server serve` runs the server; `warm-up` compiles pymatting."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from .settings import Settings, SettingsError

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="matte", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (settings come from MATTE_* variables)")
    commands.add_parser("warm-up", help="compile and cache pymatting's numba code")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"matte: {exc}", file=sys.stderr)
        return 2
    # numba reads its cache location from the environment when it is first
    # imported, so it is set here, before anything imports pymatting.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(settings.numba_cache_dir))
    if args.command == "warm-up":
        return _warm_up()
    return _serve(settings)


def _serve(settings: Settings) -> int:
    from .allocator import keep_big_blocks_on_mmap
    from .app import create_app
    from .shutdown import DrainingServer

    # First, before the model and the first photos are allocated.
    keep_big_blocks_on_mmap()

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    config = uvicorn_config(settings, app)
    DrainingServer(config, app.state.services, settings.shutdown_timeout_s).run()
    return 0


def uvicorn_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """How the app is served: Matte's connection rules on uvicorn's h11 protocol."""
    import uvicorn

    from .connection import connection_class

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Pinned: the rules in connection.py are written on h11's parser, and
        # httptools (uvicorn's "auto" pick when installed) would skip them.
        http=connection_class(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        # Pillow, numpy and ONNX Runtime release the GIL; the default asyncio
        # loop is enough, and keeps the dependency list short.
        loop="asyncio",
    )


def _warm_up() -> int:
    from . import matting

    started = time.perf_counter()
    matting.warm_up()
    print(
        f"pymatting ready in {time.perf_counter() - started:.1f}s "
        f"(numba cache: {os.environ['NUMBA_CACHE_DIR']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
