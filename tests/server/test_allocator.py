"""The allocator setting: big blocks go back to the system when freed."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

# A child process, so this test's own heap does not matter. After the first
# free has raised glibc's threshold, 20 MB blocks are allocated between small
# ones that live on (as a request's buffers sit between longer-lived objects),
# then freed: does RSS come back down?
PROBE = """
import sys
import numpy as np
from server.allocator import keep_big_blocks_on_mmap

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

if sys.argv[1] == "tuned":
    assert keep_big_blocks_on_mmap()
warm = np.ones(20_000_000, np.uint8); del warm  # the free that moves the threshold
base = rss_kib()
blocks, kept = [], []
for _ in range(10):
    blocks.append(np.ones(20_000_000, np.uint8))
    kept.append(bytearray(200_000))  # a small block that outlives its neighbour
del blocks
print(rss_kib() - base)
"""


def grown_kib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


def test_freed_big_blocks_are_returned() -> None:
    # Untuned, glibc keeps ~200 MB of freed blocks in its heap; tuned, none.
    assert grown_kib("default") > 100_000
    assert grown_kib("tuned") < 20_000
