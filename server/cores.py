"""Splitting one image's work across the machine's cores.

A lone request leaves all but one core idle outside the model run; under load every core
is busy anyway and a split costs only a hand-off. Pillow and libwebp release the GIL
while they work, so threads are enough.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


@functools.cache
def cores() -> int:
    """The cores this process may run on (its affinity, as a container sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def pool() -> ThreadPoolExecutor:
    # Made on first use (no work at import time) and kept: idle threads cost
    # nothing, and starting them per image would cost more than a split saves.
    return ThreadPoolExecutor(max_workers=cores(), thread_name_prefix="matte-split")


def both(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """`first()` and `second()`, the second on another core when there is one."""
    if cores() < 2:
        return first(), second()
    later = pool().submit(second)
    return first(), later.result()
