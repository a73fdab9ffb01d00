"""Command line: `matte serve` runs the server, `matte remove` cuts out files on this
machine, `matte warm-up` compiles pymatting. (`python -m server ...` is the same.)"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING

from .cli_remove import Terminal, add_arguments, remove
from .engine import load_engine
from .setting_flags import add_setting_flags, environment_with, setting_flags
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from .loader import EngineFactory

SETTINGS_NOTE = (
    "Each flag replaces its MATTE_* variable (README.md's Settings table says what each does); "
    "a variable without its flag keeps its value."
)


def main(
    argv: list[str] | None = None,
    *,
    terminal: Terminal | None = None,
    engine: EngineFactory = load_engine,
) -> int:
    """`terminal` and `engine`: the streams and the engine for `remove` (tests hand in
    their own; by default the process's and the model the settings name)."""
    flags = setting_flags()
    parser = argparse.ArgumentParser(prog="matte", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser(
        "serve", help="serve the API", description="Serve the API.", epilog=SETTINGS_NOTE
    )
    add_setting_flags(serve.add_argument_group("settings"), flags)
    cut = commands.add_parser(
        "remove",
        help="cut out image files and folders on this machine",
        description="Cut out image files and folders on this machine, with the model "
        "in this process. Exit status: 0 when every image was done or skipped, 1 when "
        "any failed, 2 for a usage error.",
        epilog=SETTINGS_NOTE,
    )
    add_arguments(cut, flags)
    commands.add_parser("warm-up", help="compile and cache pymatting's numba code")
    args = parser.parse_args(argv)
    terminal = terminal or Terminal.system()
    try:
        settings = Settings.from_env(environment_with(args, flags, os.environ))
    except SettingsError as exc:
        print(f"matte: {exc}", file=terminal.stderr)
        return 2
    # numba reads its cache location from the environment when it is first
    # imported, so it is set here, before anything imports pymatting.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(settings.numba_cache_dir))
    if args.command == "warm-up":
        return _warm_up()
    if args.command == "remove":
        return remove(args, settings, terminal, engine)
    return _serve(settings)


def _serve(settings: Settings) -> int:
    from . import allocator
    from .app import create_app
    from .logs import configure_logging
    from .shutdown import DrainingServer

    # First, before the model and the first photos are allocated.
    allocator.tune(settings.cores)

    configure_logging(settings)
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
        # Logging is Matte's (server/logs.py): uvicorn's errors go through its
        # formatter, and each request's line is server/request_log.py's, so
        # uvicorn writes no access line of its own.
        log_config=None,
        access_log=False,
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
