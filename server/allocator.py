"""The C allocator's settings for a long-running server process.

A request's big buffers (a decoded photo, the model's float input, an RGBA
cut-out, its PNG: 3-20 MB each at 4 MP, about 240 MB in all) come and go with
every image. Served by mmap, each is fresh memory the kernel faults in page by
page and zeroes, then unmaps: 61,000 faults and 110 ms of kernel time per 4 MP
image, a sixth of its CPU. Served from the heap, they reuse what the last image
freed. So the settings are fixed, not left to glibc's sliding threshold:

- blocks up to 32 MB come from the heap (glibc's own ceiling for its threshold),
  bigger ones (a 50 MP photo's) from mmap, returned when freed;
- the heap's free top is returned past 64 MB, not past 128 KB, so an image's
  buffers are not handed back and faulted in again for the next one;
- at most one heap (arena) per core, not glibc's eight per core: each heap keeps its
  high-water mark, and the admission bound is what keeps that mark low.

Measured with `benchmarks/load.py`'s load at 4 MP on 2 cores (a Xeon with AMX;
benchmarks/PIPELINE.md): concurrency 4, 2.88 -> 3.24 images/s and kernel time
107 -> 17 ms an image (`benchmarks/server_cpu.py`); concurrency 16, peak RSS
979 -> 1,036 MiB, flat over 200 requests.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("matte.allocator")

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


def tune(cores: int) -> bool:
    """Apply the settings above (before the first threads allocate); False where the
    C library is not glibc or refuses one."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): their allocators do not behave this way
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_ARENA_MAX, max(1, cores)),
    )
    done = all([mallopt(option, value) == 1 for option, value in settings])
    if not done:
        log.warning("could not set the allocator's thresholds; images may cost more CPU")
    return done
