"""The allocator's settings: a request's big buffers are reused from the heap, not
faulted in afresh, and the heaps stay one per core."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

# A child process, so this test's own heap does not matter. Eight threads (as the
# server's stage threads) each allocate and free a 12 MB buffer (a 4 MP photo's RGB)
# twenty times, a small block between that outlives it; then glibc lists its heaps.
PROBE = """
import ctypes, sys, threading
import numpy as np
from server import allocator

libc = ctypes.CDLL(None)
if sys.argv[1] == "tuned":
    assert allocator.tune(cores=2)
elif sys.argv[1] == "mmap":  # what this module did before: big blocks on mmap
    libc.mallopt(-3, 1024 * 1024)

def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])

kept = []
def work():
    for _ in range(20):
        big = np.ones(12_000_000, np.uint8)
        kept.append(bytearray(100_000))
        del big

before = faults()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(faults() - before)
sys.stdout.flush()
stdout = ctypes.c_void_p.in_dll(libc, "stdout")
libc.malloc_info(0, stdout)
libc.fflush(stdout)
"""

BLOCKS = 8 * 20
PAGES = 12_000_000 // 4096


def probe(mode: str) -> tuple[float, int]:
    """(page faults per buffer, heaps glibc holds) in a child run in `mode`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    first, report = done.stdout.split("\n", 1)
    return int(first) / BLOCKS, report.count("<heap nr=")


def test_big_buffers_are_reused_not_faulted_in_afresh() -> None:
    # On mmap every buffer is new memory: hundreds of faults each even with numpy's
    # huge pages (thousands without); from the heap, a few.
    tuned, _ = probe("tuned")
    on_mmap, _ = probe("mmap")
    print(f"faults per 12 MB buffer: tuned {tuned:.0f}, on mmap {on_mmap:.0f} of {PAGES} pages")
    assert tuned * 4 < on_mmap


def test_one_heap_per_core() -> None:
    # Each heap keeps its own high-water mark; glibc's default is eight per core.
    _, heaps = probe("tuned")
    _, default = probe("default")
    assert heaps <= 2 < default
