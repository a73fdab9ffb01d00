"""The load generator: async HTTP with pre-built bodies, plus the server's memory and CPU.

The client shares the machine's cores with the server under test, so it stays
light: one event loop, the multipart body encoded once per image, and only
a status check and a PNG signature check on each reply.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The longest a rejected request waits before it tries again, whatever
# Retry-After says, so a run cannot stall on a server's generous hint.
MAX_RETRY_WAIT_S = 2.0
MAX_ATTEMPTS = 1_000


@dataclass(frozen=True)
class Endpoint:
    """One prepared request: the multipart body is encoded once, then sent as bytes."""

    url: str
    body: bytes
    headers: dict[str, str]
    signature: bytes = PNG_SIGNATURE  # what a 200's body must start with to count


def multipart_endpoint(
    url: str,
    files: dict[str, tuple[str, bytes, str]],
    data: dict[str, str],
    headers: dict[str, str],
    signature: bytes = PNG_SIGNATURE,
) -> Endpoint:
    request = httpx.Request("POST", url, files=files, data=data, headers=headers)
    body = request.read()
    # Content-Length and Host are the client's to set per connection; keep the rest.
    kept = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
    return Endpoint(url, body, kept, signature)


@dataclass
class Sample:
    """One logical request: every attempt until a final answer (503s are retried)."""

    started: float
    finished: float
    status: int  # final status; 0 when the connection failed
    rejected: int  # 503 answers before the final one
    rss_kib: int  # the server's RSS when it finished (for the soak's curve)

    @property
    def latency(self) -> float:
        return self.finished - self.started


@dataclass
class LoadResult:
    concurrency: int
    samples: list[Sample]
    elapsed_s: float
    peak_rss_kib: int  # highest VmRSS sampled during the run
    server_cpu_s: float  # CPU seconds the server used during the run
    other_cores: float  # CPU used by neither server nor client, in cores (noise)
    rss_curve: list[tuple[float, int]] = field(default_factory=list)
    killed: bool = False  # the server passed the harness's memory limit and was stopped

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.status == 200]

    @property
    def failed(self) -> int:
        return len(self.samples) - len(self.ok)

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.samples)

    @property
    def images_per_s(self) -> float:
        return len(self.ok) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_per_image(self) -> float:
        """Server CPU seconds per success: what each image costs, however busy the machine."""
        return self.server_cpu_s / len(self.ok) if self.ok else math.nan

    def latency(self, percent: float) -> float:
        return percentile([s.latency for s in self.ok], percent)


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile: an observed value, no interpolation between two."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


class RssSampler:
    """Polls /proc/<pid>/status for VmRSS on a thread: a busy event loop cannot skew it.

    Past `limit_kib` it kills the server (a child of the harness): the machine is
    shared and has no swap, so a server that grows without bound must not push
    the kernel into killing someone else's process.
    """

    def __init__(self, pid: int, limit_kib: int = 0, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.limit_kib = limit_kib
        self.interval_s = interval_s
        self.curve: list[tuple[float, int]] = []
        self.latest = 0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.latest = read_status_kib(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((kib for _, kib in self.curve), default=self.latest)

    def _poll(self) -> None:
        while not self._stop.is_set():
            kib = read_status_kib(self.pid, "VmRSS")
            if kib:
                self.latest = kib
                self.curve.append((time.perf_counter(), kib))
            if self.limit_kib and kib > self.limit_kib and not self.killed:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True
            self._stop.wait(self.interval_s)


def read_status_kib(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# Indexes into stat_fields(): minor faults, user and kernel time (proc(5)'s fields
# 10, 14 and 15, counted after the command name).
MINFLT, UTIME, STIME = 7, 11, 12


def stat_fields(path: Path) -> list[str]:
    """A /proc/<pid>/stat (or task/<tid>/stat) line's fields after the command name,
    which may hold spaces; OSError once the process or thread is gone."""
    return path.read_text().rsplit(")", 1)[1].split()


def machine_busy_s() -> float:
    """CPU seconds all processes have used since boot (steal included: a neighbour's too)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def busy_cores(seconds: float) -> float:
    """Cores in use across the machine, on average over the next `seconds`."""
    before, started = machine_busy_s(), time.perf_counter()
    time.sleep(seconds)
    return (machine_busy_s() - before) / (time.perf_counter() - started)


class CpuMeter:
    """CPU used by the server, this client and everything else over an interval.

    Other sessions may share this machine; their share ("other cores") says how
    far a run's figures can be trusted.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")
        self._start = self._snapshot()

    def stop(self) -> tuple[float, float]:
        """(server CPU seconds, other cores on average) since construction."""
        wall0, busy0, server0, client0 = self._start
        wall1, busy1, server1, client1 = self._snapshot()
        elapsed = max(wall1 - wall0, 1e-9)
        server = server1 - server0
        other = (busy1 - busy0) - server - (client1 - client0)
        return server, max(0.0, other) / elapsed

    def _snapshot(self) -> tuple[float, float, float, float]:
        times = os.times()
        # Measuring this very process (the model limit): it is the "server", no client.
        client = 0.0 if self.pid == os.getpid() else times.user + times.system
        return (time.perf_counter(), machine_busy_s(), self._process_s(), client)

    def _process_s(self) -> float:
        try:
            fields = stat_fields(Path(f"/proc/{self.pid}/stat"))
        except OSError:
            return 0.0
        return (int(fields[UTIME]) + int(fields[STIME])) / self._tick


async def _attempts(client: httpx.AsyncClient, endpoint: Endpoint) -> tuple[int, int]:
    """Send until the answer is not a 503; a 503 is retried after its Retry-After, as clients do."""
    rejected = 0
    for _ in range(MAX_ATTEMPTS):
        try:
            response = await client.post(
                endpoint.url, content=endpoint.body, headers=endpoint.headers
            )
        except httpx.HTTPError:
            return 0, rejected
        if response.status_code != 503:
            if response.status_code == 200 and not response.content.startswith(
                endpoint.signature
            ):
                return -1, rejected  # a 200 that is not the format asked for is no success
            return response.status_code, rejected
        rejected += 1
        await asyncio.sleep(_retry_wait(response.headers.get("retry-after")))
    return 503, rejected


def _retry_wait(header: str | None) -> float:
    try:
        return min(MAX_RETRY_WAIT_S, max(0.05, float(header or 1)))
    except ValueError:
        return 1.0


async def _drive(
    endpoint: Endpoint, concurrency: int, requests: int, rss: RssSampler,
    deadline: float | None = None,
) -> list[Sample]:
    samples: list[Sample] = []
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(connect=10.0, read=900.0, write=60.0, pool=900.0)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        # The loop is single-threaded: check and increment are atomic. Past the
        # deadline no new request starts; those in flight finish.
        while issued < requests and (deadline is None or time.perf_counter() < deadline):
            issued += 1
            started = time.perf_counter()
            status, rejected = await _attempts(client, endpoint)
            samples.append(Sample(started, time.perf_counter(), status, rejected, rss.latest))

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return samples


def run_load(
    endpoint: Endpoint, pid: int, concurrency: int, requests: int, rss_limit_kib: int = 0,
    deadline_s: float | None = None,
) -> LoadResult:
    """`requests` requests from `concurrency` workers; throughput counts successes only.

    `deadline_s`: no request starts after that many seconds (the GPU check's time budget).
    """
    with RssSampler(pid, rss_limit_kib) as rss:
        cpu = CpuMeter(pid)
        started = time.perf_counter()
        deadline = None if deadline_s is None else started + deadline_s
        samples = asyncio.run(_drive(endpoint, concurrency, requests, rss, deadline))
        elapsed = max((s.finished for s in samples), default=started) - started
        server_cpu, other = cpu.stop()
    return LoadResult(
        concurrency, samples, elapsed, rss.peak, server_cpu, other, rss.curve, rss.killed
    )
