"""What the model scripts share: their error, atomic writes and the cache-dir argument.

models/fetch.py and models/quantize.py are scripts, not a package: run as
scripts, models/ is first on sys.path and they import this file as `common`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path

Log = Callable[[str], None]


class FetchError(Exception):
    """A failure with a message meant for the user and the exit code to use."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-write must never leave a truncated file under the final name.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    configured = environ.get("MATTE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "matte"


def cache_parser(
    description: str, force_help: str, environ: Mapping[str, str]
) -> argparse.ArgumentParser:
    """The arguments every model script takes: where the cache is, and --force."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(environ),
        help="where prepared models live (default: $MATTE_CACHE_DIR or ~/.cache/matte)",
    )
    parser.add_argument("--force", action="store_true", help=force_help)
    return parser
