"""The shared resources a request reaches through `request.app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import Request

from .errors import RateLimited, Unauthorized, Unavailable
from .keyring import Keyring
from .metrics import Metrics
from .pipeline import Pipeline
from .ratelimit import RateLimiter
from .settings import Settings


@dataclass
class Readiness:
    state: Literal["loading", "ready", "failed", "stopping"] = "loading"
    provider: str | None = None
    model_file: str | None = None
    warm_up_s: float | None = None


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    keyring: Keyring
    limiter: RateLimiter
    readiness: Readiness = field(default_factory=Readiness)
    pipeline: Pipeline | None = None

    def admit(self, request: Request, presented_key: str | None) -> Pipeline:
        """The checks every model route makes before it reads the body.

        Every request counts against the rate limit, refused ones included:
        the limit protects the server. A caller without a valid key is counted
        by address, so guessing keys cannot lock out a real one.
        """
        valid = self.keyring.accepts(presented_key)
        if valid and presented_key:
            identity = Keyring.identity(presented_key)
        else:
            identity = "ip:" + (request.client.host if request.client else "unknown")
        try:
            self.limiter.check(identity)
        except RateLimited:
            self.metrics.rejected.labels("rate_limited").inc()
            raise
        if not valid:
            self.metrics.rejected.labels("unauthorized").inc()
            raise Unauthorized()
        if self.readiness.state != "ready" or self.pipeline is None:
            raise Unavailable("server: the model is not loaded yet, please retry shortly", 5)
        return self.pipeline


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
