"""Fixtures the dialects' contract tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.conftest import ID, wait_ready
from tests.fakes import BrightnessEngine


@pytest.fixture
def open_client(tmp_path: Path, engine: BrightnessEngine) -> Iterator[TestClient]:
    """The app with no keys configured: the open keyring (any non-empty key, or none
    where the dialect has no key)."""
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        wait_ready(client)
        yield client


def assert_detail(response: httpx.Response, status: int, detail: str) -> None:
    """A FastAPI-style `{"detail": "..."}` error (OctoAI's and rembg's servers)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": detail}
    assert ID.fullmatch(response.headers["x-request-id"])
