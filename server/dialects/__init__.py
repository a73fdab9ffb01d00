"""API dialects: each speaks one existing API's routes, fields and error shape
over the shared pipeline."""

from __future__ import annotations

from typing import Protocol

from starlette.responses import Response
from starlette.routing import BaseRoute

from ..errors import ApiError


class Dialect(Protocol):
    name: str

    def routes(self) -> list[BaseRoute]: ...

    def render_error(self, error: ApiError, request_id: str) -> Response:
        """The error in this API's own error body."""
        ...
