from __future__ import annotations

import dataclasses
import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.fakes import BrightnessEngine, ManualClock
from tests.postgres_server import postgres_server, postgres_url
from tests.redis_server import redis_server, redis_url

# Fixtures for every test folder: a real PostgreSQL and a real Redis (each started
# once per session on first use), a fresh database on it / an emptied Redis per test.
__all__ = ["postgres_server", "postgres_url", "redis_server", "redis_url"]

ROOT = Path(__file__).resolve().parents[1]


def _fixtures() -> Path:
    # shared/ sits beside the checkout; look upwards so the suite also finds it
    # from a copy of the tree one level down (mutmut runs it from ./mutants).
    for parent in ROOT.parents:
        candidate = parent / "shared" / "fixtures" / "rembg"
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "fixtures" / "rembg"


FIXTURES = _fixtures()
KEY = "sk-test-key"
PATH = "/v2beta/stable-image/edit/remove-background"
# The only settings the suite takes from the caller's environment: where
# `make model` put the weights (and numba its compiled code).
INHERITED = ("MATTE_CACHE_DIR", "NUMBA_CACHE_DIR")


def pytest_configure(config: pytest.Config) -> None:
    """Drop every other MATTE_* variable, so a developer's MATTE_PROVIDER or
    MATTE_API_KEYS cannot change what a test sees (or pass a test by accident)."""
    for name in list(os.environ):
        if name.startswith("MATTE_") and name not in INHERITED:
            del os.environ[name]


# Real-model tests load the model or start a server first, and give those their
# own deadlines of up to 300 s (a busy 2-core machine); the fast tests keep the
# 120 s of pyproject.toml, so a deadlock there still fails quickly.
MODEL_TEST_TIMEOUT_S = 420


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("model") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(MODEL_TEST_TIMEOUT_S))


def model_settings(**changes: object) -> Settings:
    """Settings for the real prepared model: defaults, the caller's cache dir, `changes`."""
    cache = {name: os.environ[name] for name in INHERITED[:1] if name in os.environ}
    return dataclasses.replace(Settings.from_env(cache), **changes)  # type: ignore[arg-type]


def wait_ready(client: TestClient, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        assert response.json()["status"] == "loading", response.text
        time.sleep(0.02)
    raise AssertionError("the app did not become ready")


def jpeg(width: int = 320, height: int = 240, **save: object) -> bytes:
    """A photo-like JPEG: a bright disc (the 'subject') on a dark background."""
    yy, xx = np.mgrid[0:height, 0:width]
    disc = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2
    pixels = np.where(disc[..., None], 230, 20).astype(np.uint8).repeat(3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **save)
    return buffer.getvalue()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine() -> BrightnessEngine:
    return BrightnessEngine()


@pytest.fixture
def app(settings: Settings, engine: BrightnessEngine, clock: ManualClock) -> Starlette:
    return create_app(settings, engine=engine, clock=clock)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


def soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Soft IoU of two alpha masks: sum(min) / sum(max) over [0, 1] values."""
    fa = a.astype(np.float64) / 255
    fb = b.astype(np.float64) / 255
    union = np.maximum(fa, fb).sum()
    return float(np.minimum(fa, fb).sum() / union) if union else 1.0


def fixture_photos() -> list[Path]:
    photos = sorted(FIXTURES.glob("*.jpg"))
    assert len(photos) == 4, f"expected the 4 rembg fixtures in {FIXTURES}"
    return photos


def reference_alpha(photo: Path) -> np.ndarray:
    reference = Image.open(photo.with_name(photo.stem + ".isnet-general-use.png"))
    return np.asarray(reference.convert("RGBA"))[:, :, 3]


@pytest.fixture(scope="session")
def model_client() -> Iterator[TestClient]:
    """The app on the real prepared IS-Net model (from MATTE_CACHE_DIR; `make model` makes it)."""
    settings = model_settings(api_keys=frozenset({KEY}))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client, timeout_s=300)
        yield client


# --- the Stability endpoint over HTTP (shared by the contract tests) ---------------------

AUTH = {"authorization": f"Bearer {KEY}"}
ID = re.compile(r"[0-9a-f]{32}")


def post(
    client: TestClient,
    image: bytes | None = None,
    headers: dict[str, str] | None = None,
    filename: str | None = "photo.jpg",
    **fields: str,
) -> httpx.Response:
    files = {"image": (filename, image, "application/octet-stream")} if image is not None else None
    response: httpx.Response = client.post(
        PATH, headers={**AUTH, **(headers or {})}, files=files, data=fields or None
    )
    return response


def assert_error(response: httpx.Response, status: int, name: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"id", "name", "errors"}
    assert ID.fullmatch(body["id"])
    assert body["name"] == name
    assert body["errors"] == [message]
    assert response.headers["x-request-id"] == body["id"]


def png(width: int, height: int, mode: str = "RGB", **save: object) -> bytes:
    image = Image.new(mode, (width, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
