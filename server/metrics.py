"""Prometheus metrics, in a registry owned by one app (tests build as many apps as they like)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute, Route

from . import request_log

# Stage latencies span ~5 ms (a small decode) to tens of seconds (4 MP matting on a CPU).
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "matte_requests",
            "Requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "matte_request_seconds",
            "Request latency by route.",
            ["route"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "matte_stage_seconds",
            "Pipeline latency by stage (decode, predict, matte, encode).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "matte_images_in_flight", "Images admitted into the pipeline.", registry=self.registry
        )
        self.waiting = Gauge(
            "matte_requests_waiting",
            "Requests admitted but not yet in the pipeline (uploading or queued for a slot).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "matte_rejected",
            "Requests refused before the pipeline, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limit_store_errors = Counter(
            "matte_rate_limit_store_errors",
            "Requests the rate limit's store (Redis) could not check; "
            "MATTE_RATE_LIMIT_FAILURE decided them.",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "matte_batch_size",
            "Images per model run.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_timeouts = Counter(
            "matte_model_timeouts",
            "Model runs abandoned past MATTE_MODEL_TIMEOUT_S (their requests got 503).",
            registry=self.registry,
        )
        self.model = Info("matte_model", "The loaded model.", registry=self.registry)
        self.model_run_seconds = Histogram(
            "matte_model_run_seconds",
            "Time of one model run (one batch), without the wait for it.",
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        # Which dialect owns each route, as an info metric rather than a label on
        # matte_requests_total: `* on (route) group_left (dialect) matte_route_info`
        # gives per-dialect figures while the counters keep their series.
        self.route = Info(
            "matte_route", "The dialect that owns each route.", ["route"], registry=self.registry
        )
        self._dialects: dict[str, str] = {}

    def name_routes(self, dialect: str, routes: Iterable[BaseRoute]) -> None:
        """Record `dialect` as the owner of `routes` (each path has one owner, or
        the join above would match many-to-many and fail)."""
        for route in routes:
            if not isinstance(route, Route):
                continue
            owner = self._dialects.setdefault(route.path, dialect)
            if owner != dialect:
                raise ValueError(f"{route.path} is served by both {owner} and {dialect}")
            self.route.labels(route.path).info({"dialect": dialect})

    def dialect_of(self, route: str) -> str | None:
        """The dialect that owns `route` (a path template), None for Matte's own routes."""
        return self._dialects.get(route)

    def observe_stage(self, name: str, seconds: float) -> None:
        """One stage's time: into matte_stage_seconds and the request's log line."""
        self.stage_seconds.labels(name).observe(seconds)
        request_log.note_stage(name, seconds)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(name, time.perf_counter() - started)

    def render(self) -> bytes:
        return generate_latest(self.registry)
