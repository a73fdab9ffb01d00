"""The overload probe: one burst past the server's bounds, each request tried once.

Matte admits `max_pending` images into its pipeline and lets `max_queue` more
wait in line; a request past both must be refused at once (503 with
Retry-After, before its body is read) rather than queue without bound. The
probe sends more than both at the same moment and looks at how the surplus
was answered: that it was refused, quickly, in the API's own error shape.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from load import PNG_SIGNATURE, Endpoint, percentile

# A refusal "at once": far below a model run, far above a loopback round trip.
AT_ONCE_S = 1.0
ERROR_KEYS = {"id", "name", "errors"}  # the Stability API's error body
ERROR_NAME = "service_unavailable"


@dataclass(frozen=True)
class Answer:
    status: int  # 0 when the connection failed
    latency: float
    retry_after: bool  # a Retry-After header with a number of seconds
    well_formed: bool  # a PNG for a 200, the Stability error body for a 503


@dataclass(frozen=True)
class OverloadResult:
    megapixels: int
    max_pending: int
    max_queue: int
    answers: list[Answer]

    @property
    def burst(self) -> int:
        return len(self.answers)

    @property
    def ok(self) -> int:
        return sum(a.status == 200 for a in self.answers)

    @property
    def refused(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 503]

    @property
    def other(self) -> int:
        return self.burst - self.ok - len(self.refused)

    @property
    def expected_refused(self) -> int:
        """Requests beyond the slots and the line: at least these must be refused."""
        return max(0, self.burst - self.max_pending - self.max_queue)

    @property
    def all_well_formed(self) -> bool:
        return all(a.retry_after and a.well_formed for a in self.refused)

    @property
    def refused_at_once(self) -> list[Answer]:
        return [a for a in self.refused if a.latency < AT_ONCE_S]

    @property
    def timed_out(self) -> int:
        """503s that came late: admitted to the line, then past MATTE_QUEUE_TIMEOUT_S.

        On a slow machine the last requests in line may wait out the timeout; that
        is the line's bound working, not a failure to refuse the surplus at once.
        """
        return len(self.refused) - len(self.refused_at_once)

    def refused_latency(self, percent: float) -> float:
        return percentile([a.latency for a in self.refused_at_once], percent)

    @property
    def met(self) -> bool:
        return (self.expected_refused > 0 and self.all_well_formed
                and len(self.refused_at_once) >= self.expected_refused)


def probe(endpoint: Endpoint, burst: int, megapixels: int, max_pending: int,
          max_queue: int) -> OverloadResult:
    answers = asyncio.run(_burst(endpoint, burst))
    return OverloadResult(megapixels, max_pending, max_queue, answers)


async def _burst(endpoint: Endpoint, burst: int) -> list[Answer]:
    # One connection per request, all opened at once: the burst must reach the
    # server together, not trickle through a smaller pool.
    limits = httpx.Limits(max_connections=burst, max_keepalive_connections=burst)
    timeout = httpx.Timeout(connect=10.0, read=900.0, write=60.0, pool=900.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        return list(await asyncio.gather(*(_once(client, endpoint) for _ in range(burst))))


async def _once(client: httpx.AsyncClient, endpoint: Endpoint) -> Answer:
    """A single attempt: a 503 is recorded, not retried."""
    started = time.perf_counter()
    try:
        response = await client.post(endpoint.url, content=endpoint.body, headers=endpoint.headers)
    except httpx.HTTPError:
        return Answer(0, time.perf_counter() - started, False, False)
    latency = time.perf_counter() - started
    if response.status_code == 200:
        return Answer(200, latency, False, response.content.startswith(PNG_SIGNATURE))
    return Answer(response.status_code, latency, _has_retry_after(response),
                  _is_error_body(response))


def _has_retry_after(response: httpx.Response) -> bool:
    value = response.headers.get("retry-after", "")
    return bool(value.strip().isdigit())


def _is_error_body(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return (isinstance(body, dict) and body.keys() >= ERROR_KEYS
            and body["name"] == ERROR_NAME and isinstance(body["errors"], list)
            and bool(body["errors"]))
