"""Graceful shutdown: on SIGTERM or SIGINT, drain, then exit 0.

The moment the signal arrives readiness turns "draining" (/readyz answers 503, so
a load balancer stops sending), and uvicorn stops accepting connections and asks
the open ones to close once their response is out. Requests in flight have
`deadline_s` to finish; then those still waiting for a slot, or for the model, get
503, and a moment later uvicorn cancels whatever is left (slow uploads).

A second SIGINT forces the exit at once, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
from types import FrameType

import uvicorn

from .services import Services

log = logging.getLogger("matte")

# After the deadline: time for the 503s to be written before uvicorn cancels the rest.
GRACE_S = 5.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, services: Services, deadline_s: float) -> None:
        super().__init__(config)
        self.services = services
        self.deadline_s = deadline_s
        # uvicorn's own deadline cancels the requests' tasks: it comes last.
        config.timeout_graceful_shutdown = math.ceil(deadline_s + GRACE_S)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: it raises the signal again once shut down, so the process
        # would end killed by SIGTERM instead of exiting 0. Only flags are set here
        # (a signal handler must not take locks, logging's included).
        self.services.readiness.state = "draining"
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        log.warning(
            "draining: no new connections; requests in flight have %g s to finish",
            self.deadline_s,
        )
        deadline = asyncio.create_task(self._deadline())
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()

    async def _deadline(self) -> None:
        await asyncio.sleep(self.deadline_s)
        pipeline = self.services.pipeline
        if pipeline is None:
            return
        log.warning("draining: the deadline passed; requests still waiting get 503")
        pipeline.admission.close()
        await pipeline.scheduler.stop()
