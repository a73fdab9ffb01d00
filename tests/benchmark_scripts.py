"""The harness's scripts for the tests that check them: benchmarks/ is a folder of
scripts (not a package) whose modules import each other by bare name."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

from tests.conftest import ROOT


@contextlib.contextmanager
def benchmark_scripts(*names: str) -> Iterator[tuple[ModuleType, ...]]:
    """benchmarks/`name`.py for each name, importable by bare name inside the block."""
    folder = str(ROOT / "benchmarks")
    sys.path.insert(0, folder)
    try:
        yield tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(folder)


def script_env() -> dict[str, str]:
    """This process's environment for a harness script run as a command: no MATTE_*
    setting leaks into the servers it starts, but the model cache is kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTE_")}
    if "MATTE_CACHE_DIR" in os.environ:
        env["MATTE_CACHE_DIR"] = os.environ["MATTE_CACHE_DIR"]
    return env
