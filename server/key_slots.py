"""Per-key concurrency (the keys file's `concurrency=<n>`): requests in progress
at once, counted in this process.

`Services.authorize` takes a slot and notes it in the request's scope; the
`SlotRelease` middleware gives back whatever the request took when it ends, on
every path out (a response, an error, a disconnect, a cancellation).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ConcurrencyLimited

# The scope["state"] entry that lists the identities a request holds slots of.
HELD = "matte.key_slots"


class KeySlots:
    def __init__(self) -> None:
        self._in_use: dict[str, int] = {}

    def in_use(self, identity: str) -> int:
        return self._in_use.get(identity, 0)

    def hold(self, request: Request, identity: str, cap: int) -> None:
        """Take one of `identity`'s `cap` slots for `request`, or raise ConcurrencyLimited."""
        held = request.scope.get("state", {}).get(HELD)
        if held is None:
            raise RuntimeError("per-key concurrency needs the SlotRelease middleware")
        if identity in held:
            return  # one request holds one slot, however often it is authorized
        if self.in_use(identity) >= cap:
            raise ConcurrencyLimited(cap)
        self._in_use[identity] = self.in_use(identity) + 1
        held.append(identity)

    def release(self, identity: str) -> None:
        left = self.in_use(identity) - 1
        if left > 0:
            self._in_use[identity] = left
        else:
            # Nothing stays behind for a key that is idle.
            self._in_use.pop(identity, None)


class SlotRelease:
    """Gives back the slots a request took, once it has been answered."""

    def __init__(self, app: ASGIApp, slots: KeySlots) -> None:
        self.app = app
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[str] = []
        scope.setdefault("state", {})[HELD] = held
        try:
            await self.app(scope, receive, send)
        finally:
            for identity in held:
                self.slots.release(identity)
