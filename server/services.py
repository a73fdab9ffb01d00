"""The shared resources a request reaches through `request.app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import Request

from .errors import ConcurrencyLimited, RateLimited, Unauthorized, Unavailable
from .key_limits import Rate
from .key_slots import KeySlots
from .keyring import Keyring
from .metrics import Metrics
from .outbound import Outbound
from .pipeline import Pipeline
from .ratelimit import Budget, RateLimiter, StoreUnavailable
from .results import ResultStore
from .settings import Settings
from .storage import Storage
from .webhooks import Webhooks


@dataclass
class Readiness:
    state: Literal["loading", "ready", "failed", "draining", "stopping"] = "loading"
    provider: str | None = None
    model_file: str | None = None  # the file's name, never its path
    warm_up_s: float | None = None
    engine: str | None = None
    precision: str | None = None


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    keyring: Keyring
    limiter: RateLimiter
    readiness: Readiness = field(default_factory=Readiness)
    pipeline: Pipeline | None = None
    # Requests to other hosts and webhook deliveries. create_app builds them
    # from the settings; these defaults (the guard off) serve tests that build
    # Services by hand.
    outbound: Outbound = field(default_factory=lambda: Outbound(False))
    webhooks: Webhooks = field(default_factory=lambda: Webhooks(Outbound(False)))
    # Durable storage and the results kept in it: opened by the app's lifespan.
    storage: Storage | None = None
    results: ResultStore | None = None
    # Keys-file `concurrency`: requests in progress per key in this process
    # (given back by key_slots.SlotRelease, which create_app installs).
    slots: KeySlots = field(default_factory=KeySlots)

    async def admit(
        self, request: Request, presented_key: str | None, *, keyless_when_open: bool = False
    ) -> Pipeline:
        """The checks every model route makes before it reads the body: `authorize`,
        then the pipeline (503 while the model is not loaded)."""
        await self.authorize(request, presented_key, keyless_when_open=keyless_when_open)
        return self.ready_pipeline()

    async def authorize(
        self, request: Request, presented_key: str | None, *, keyless_when_open: bool = False
    ) -> str:
        """The caller's identity (what the limiter counts and storage owners are),
        once its key is accepted and it is within the rate limit.

        Every request counts against the rate limit, refused ones included:
        the limit protects the server. A caller without a valid key is counted
        by address, so guessing keys cannot lock out a real one. With no keys
        configured (any key accepted) a caller counts under its key and its
        address both.

        `keyless_when_open`: with no keys configured, a request without a key
        is let in too (counted by address), for clients that cannot send one
        (octoai 1.11's `infer()` sends no Authorization header).

        A key the keys file gives limits has its own `rate` instead of the
        default, and at most `concurrency` requests in progress at once (429).
        """
        valid = self.keyring.accepts(presented_key) or (keyless_when_open and self.keyring.open)
        address = "ip:" + (request.client.host if request.client else "unknown")
        counted: list[tuple[str, Rate | None]] = [(address, None)]
        identity = address
        if valid and presented_key:
            identity = Keyring.identity(presented_key)
            rate = self.keyring.limits(identity).rate
            # An open keyring takes any key, so a caller could send a fresh one
            # each time: its address has a budget of its own too.
            counted = [(identity, rate)]
            if self.keyring.open:
                counted.append((address, None))
        await self._count(counted)
        if not valid:
            self.metrics.rejected.labels("unauthorized").inc()
            raise Unauthorized()
        cap = self.keyring.limits(identity).concurrency
        if cap is not None:
            try:
                self.slots.hold(request, identity, cap)
            except ConcurrencyLimited:
                self.metrics.rejected.labels("concurrency").inc()
                raise
        return identity

    async def _count(self, counted: list[tuple[str, Rate | None]]) -> None:
        """One hit for each name; a store that cannot answer is MATTE_RATE_LIMIT_FAILURE's
        to decide: "open" lets the request through (counted in
        matte_rate_limit_store_errors_total; the store logs the outage once), "closed"
        answers 503."""
        try:
            for name, rate in counted:
                await self.limiter.check(name, rate)
        except RateLimited:
            self.metrics.rejected.labels("rate_limited").inc()
            raise
        except StoreUnavailable:
            self.metrics.rate_limit_store_errors.inc()
            if self.settings.rate_limit_failure == "closed":
                self.metrics.rejected.labels("rate_limit_unavailable").inc()
                raise Unavailable(
                    "server: the rate limit cannot be checked right now, please retry shortly", 1
                ) from None

    async def budget(self, identity: str) -> Budget | None:
        """What `identity` (from `authorize`) has left of its rate limit, for replies
        that report it; None when the store cannot say (nothing to report then)."""
        try:
            return await self.limiter.budget(identity, self.keyring.limits(identity).rate)
        except StoreUnavailable:
            return None

    def ready_pipeline(self) -> Pipeline:
        """The pipeline, or 503 while the model is not loaded. On its own for routes
        whose key is in the body (ModelsLab): they take their ticket before the body,
        so before `admit`."""
        if self.readiness.state != "ready" or self.pipeline is None:
            raise Unavailable("server: the model is not loaded yet, please retry shortly", 5)
        return self.pipeline

    def stored(self) -> tuple[Storage, ResultStore]:
        """The storage and result store, or 503 before the lifespan opened them."""
        if self.storage is None or self.results is None:
            raise Unavailable("server: storage is not open yet, please retry shortly", 5)
        return self.storage, self.results


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
