from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.fakes import BrightnessEngine, ManualClock

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "rembg"
KEY = "sk-test-key"
PATH = "/v2beta/stable-image/edit/remove-background"


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
    settings = Settings.from_env()
    # Full precision whatever the environment says: the fidelity bounds are for it.
    settings = dataclasses.replace(settings, api_keys=frozenset({KEY}), precision="full")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client, timeout_s=300)
        yield client
