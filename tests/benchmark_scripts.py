"""The harness's scripts for the tests that check them: benchmarks/ is a folder of
scripts (not a package) whose modules import each other by bare name."""

from __future__ import annotations

import contextlib
import importlib
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
