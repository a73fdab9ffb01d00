"""Whole requests with and without alpha matting: time and the server's peak RSS.

Each case gets a fresh server, so its first request is the first matting request after
a fresh start and its VmHWM is that case's peak memory.

    .venv/bin/python benchmarks/matting_requests.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "fixtures" / "rembg" / "cloth-1.jpg"
PATH = "/v2beta/stable-image/edit/remove-background"
SIZES = {"1 MP": 1000, "4 MP": 2048}


def jpeg(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((side, side)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(body: bytes, matting: bool, repeats: int) -> tuple[float, float, float]:
    """(first request s, median of the rest s, peak RSS MiB) on a fresh server."""
    port = free_port()
    env = {**os.environ, "MATTE_PORT": str(port), "MATTE_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        times = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            response = httpx.post(
                f"{url}{PATH}",
                headers={"authorization": "bench"},
                files={"image": ("photo.jpg", body)},
                data={"alpha_matting": "true"} if matting else None,
                timeout=300,
            )
            times.append(time.perf_counter() - started)
            response.raise_for_status()
        return times[0], statistics.median(times[1:]), peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"| size | alpha matting | first request s | median s (next {args.repeats}) "
        "| peak RSS MiB |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for label, side in SIZES.items():
        body = jpeg(side)
        for matting in (False, True):
            first, median, rss = run_case(body, matting, args.repeats)
            print(f"| {label} | {'yes' if matting else 'no'} | {first:.2f} | {median:.2f} "
                  f"| {rss:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
