"""The soak: steady concurrency on real photos for a while, watching memory and latency.

Each client sends the fixture photos (resized to about 1 MP) in turn and waits for
each answer; a 503 or any other failure counts as an error (the load stays within
the server's bounds, so there should be none). The server's RSS is read after a
warm-up and at the end, when it is idle both times; latency is compared between the
first and the second half of the run (p90 for drift, p99 for the tail).
tests/end_to_end/test_soak.py runs a short one in CI; by hand, for longer:

    .venv/bin/python benchmarks/soak.py --minutes 5
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from load import (
    PNG_SIGNATURE,
    Endpoint,
    RssSampler,
    multipart_endpoint,
    percentile,
    read_status_kib,
)
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "rembg"
PATH = "/v2beta/stable-image/edit/remove-background"
# The soak's verdict: RSS at the end within this of its value after the warm-up; the
# second half's p90 at most P90_RATIO times the first half's (a drift or build-up moves
# it), and its p99 at most P99_RATIO times (the tail does not grow). A short run's half
# holds few replies (75 in CI), whose p99 is its slowest one: a single scheduling
# hiccup on a 2-core machine moved it 1.6x, so the p99 bound is the looser one.
RSS_GROWTH = 0.10
P90_RATIO = 1.5
P99_RATIO = 2.0


@dataclass(frozen=True)
class Reply:
    started: float  # seconds since the soak (after its warm-up) began
    latency: float
    status: int  # 0: the connection failed; -1: a 200 that was not a PNG


@dataclass(frozen=True)
class SoakResult:
    concurrency: int
    replies: list[Reply]
    elapsed_s: float
    rss_start_kib: int  # after the warm-up, the server idle
    rss_end_kib: int  # after the last reply, the server idle
    rss_peak_kib: int

    @property
    def errors(self) -> int:
        return sum(reply.status != 200 for reply in self.replies)

    @property
    def rss_growth(self) -> float:
        return self.rss_end_kib / self.rss_start_kib - 1 if self.rss_start_kib else math.inf

    def latency(self, percent: float, half: int | None = None) -> float:
        """Over every reply, or over the first (half=0) or second (half=1) half by start."""
        replies = sorted(self.replies, key=lambda reply: reply.started)
        if half is not None:
            middle = len(replies) // 2
            replies = replies[:middle] if half == 0 else replies[middle:]
        return percentile([reply.latency for reply in replies], percent)

    def ratio(self, percent: float) -> float:
        """The second half's latency at `percent` over the first half's."""
        return self.latency(percent, 1) / self.latency(percent, 0)

    @property
    def p90_ratio(self) -> float:
        return self.ratio(90)

    @property
    def p99_ratio(self) -> float:
        return self.ratio(99)

    @property
    def met(self) -> bool:
        return (
            len(self.replies) > 0
            and self.errors == 0
            and abs(self.rss_growth) <= RSS_GROWTH
            and self.p90_ratio <= P90_RATIO
            and self.p99_ratio <= P99_RATIO
        )

    def summary(self) -> str:
        return (
            f"{len(self.replies)} requests at concurrency {self.concurrency} in "
            f"{self.elapsed_s:.0f} s, {self.errors} errors; server RSS {_mib(self.rss_start_kib)} "
            f"after warm-up, {_mib(self.rss_end_kib)} at the end ({self.rss_growth:+.1%}), "
            f"peak {_mib(self.rss_peak_kib)}; latency p50 {self.latency(50):.2f} s, "
            f"p99 {self.latency(99):.2f} s (first half {self.latency(99, 0):.2f} s, "
            f"second {self.latency(99, 1):.2f} s: x{self.p99_ratio:.2f}; p90 "
            f"x{self.p90_ratio:.2f})"
        )


def photo_jpeg(photo: Path, megapixels: float = 1.0) -> bytes:
    """`photo` resized to about `megapixels`, its aspect ratio kept, as a quality-90 JPEG."""
    with Image.open(photo) as image:
        rgb = image.convert("RGB")
    scale = math.sqrt(megapixels * 1e6 / (rgb.width * rgb.height))
    size = (round(rgb.width * scale), round(rgb.height * scale))
    buffer = io.BytesIO()
    rgb.resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def endpoints(base_url: str, key: str, photos: list[bytes]) -> list[Endpoint]:
    return [
        multipart_endpoint(
            base_url + PATH,
            files={"image": ("photo.jpg", photo, "image/jpeg")},
            data={},
            headers={"authorization": f"Bearer {key}", "accept": "image/*"},
        )
        for photo in photos
    ]


def soak(
    targets: list[Endpoint],
    pid: int,
    concurrency: int,
    requests: int,
    duration_s: float,
    warm_up: int = 0,
) -> SoakResult:
    """Up to `requests` requests, and no new one after `duration_s`, from `concurrency`
    clients, after `warm_up` requests that are not counted."""
    return asyncio.run(_soak(targets, pid, concurrency, requests, duration_s, warm_up))


async def _soak(
    targets: list[Endpoint],
    pid: int,
    concurrency: int,
    requests: int,
    duration_s: float,
    warm_up: int,
) -> SoakResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(connect=10.0, read=300.0, write=60.0, pool=300.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        await _drive(client, targets, concurrency, warm_up, math.inf, [])
        rss_start = read_status_kib(pid, "VmRSS")
        replies: list[Reply] = []
        with RssSampler(pid, interval_s=0.25) as rss:
            started = time.perf_counter()
            await _drive(client, targets, concurrency, requests, duration_s, replies)
            elapsed = time.perf_counter() - started
        rss_end = read_status_kib(pid, "VmRSS")
    return SoakResult(concurrency, replies, elapsed, rss_start, rss_end, max(rss.peak, rss_end))


async def _drive(
    client: httpx.AsyncClient,
    targets: list[Endpoint],
    concurrency: int,
    requests: int,
    duration_s: float,
    replies: list[Reply],
) -> None:
    started = time.perf_counter()
    issued = 0

    async def worker() -> None:
        nonlocal issued
        # One event loop: the check and the increment cannot interleave.
        while issued < requests and time.perf_counter() - started < duration_s:
            target = targets[issued % len(targets)]
            issued += 1
            sent = time.perf_counter()
            status = await _once(client, target)
            replies.append(Reply(sent - started, time.perf_counter() - sent, status))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _once(client: httpx.AsyncClient, target: Endpoint) -> int:
    try:
        response = await client.post(target.url, content=target.body, headers=target.headers)
    except httpx.HTTPError:
        return 0
    if response.status_code == 200 and not response.content.startswith(PNG_SIGNATURE):
        return -1
    return response.status_code


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    from servers import BENCH_KEY, Server, free_port, matte_spec

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100_000, help="at most this many")
    parser.add_argument("--warm-up", type=int, default=6, help="requests not counted")
    parser.add_argument("--megapixels", type=float, default=1.0)
    args = parser.parse_args(argv)
    photos = [photo_jpeg(path, args.megapixels) for path in sorted(FIXTURES.glob("*.jpg"))]
    spec = matte_spec(free_port(), os.environ)
    with Server(
        spec,
        Path(os.environ.get("MATTE_CACHE_DIR") or Path.home() / ".cache" / "matte").expanduser()
        / "bench"
        / "soak-server.log",
    ) as server:
        result = soak(
            endpoints(spec.base_url, BENCH_KEY, photos),
            server.pid,
            args.concurrency,
            args.requests,
            args.minutes * 60,
            args.warm_up,
        )
    print(result.summary())
    bounds = f"RSS within {RSS_GROWTH:.0%}, p90 x{P90_RATIO}, p99 x{P99_RATIO}"
    print("met" if result.met else "NOT met", f"({bounds})")
    return 0 if result.met else 1


if __name__ == "__main__":
    sys.exit(main())
