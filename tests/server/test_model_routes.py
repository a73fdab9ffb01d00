"""Every route that runs the model is behind the same guards: the rate limiter, the
body limit and the admission line (issue 13). Each dialect's own tests check its error
shapes; this checks that no model route was left out of any guard."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.dialects import modelslab, octoai, omixa, photoroom, rembg
from server.settings import Settings
from tests.conftest import AUTH, KEY, PATH, jpeg, wait_ready
from tests.fakes import BrightnessEngine

Send = Callable[[TestClient, bytes], httpx.Response]
STORED = "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa/remove-background"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def stability(client: TestClient, data: bytes) -> httpx.Response:
    response: httpx.Response = client.post(
        PATH, headers=AUTH, files={"image": ("photo.jpg", data, "image/jpeg")}
    )
    return response


def omixa_route(client: TestClient, data: bytes) -> httpx.Response:
    image = {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(data)}}
    body = {"model": omixa.MODEL, "prompt": "", "input_images": [image]}
    response: httpx.Response = client.post(omixa.PATH, headers=AUTH, json=body)
    return response


def octoai_route(client: TestClient, data: bytes) -> httpx.Response:
    response: httpx.Response = client.post(
        octoai.PATH, headers=AUTH, json={"init_image": b64(data)}
    )
    return response


def modelslab_route(path: str) -> Send:
    def send(client: TestClient, data: bytes) -> httpx.Response:
        response: httpx.Response = client.post(
            path, json={"key": KEY, "image": b64(data), "base64": True}
        )
        return response

    return send


def imgproc_route(client: TestClient, data: bytes) -> httpx.Response:
    # The model runs on a stored image; the body (a name) is read before the id is looked up.
    response: httpx.Response = client.post(
        STORED, headers={"x-api-key": KEY}, json={"name": "x" * (len(data) // 2)}
    )
    return response


def photoroom_route(client: TestClient, data: bytes) -> httpx.Response:
    response: httpx.Response = client.post(
        photoroom.PATH, headers={"x-api-key": KEY}, files={"image_file": ("a.jpg", data)}
    )
    return response


def rembg_route(client: TestClient, data: bytes) -> httpx.Response:
    response: httpx.Response = client.post(
        rembg.PATH, headers=AUTH, files={"file": ("a.jpg", data)}
    )
    return response


ROUTES: dict[str, Send] = {
    "stability": stability,
    "omixa": omixa_route,
    "octoai": octoai_route,
    **{f"modelslab {path}": modelslab_route(path) for path in modelslab.PATHS},
    "imgproc remove-background": imgproc_route,
    "photoroom": photoroom_route,
    "rembg": rembg_route,
}


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**changes: object) -> TestClient:
        settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), **changes)  # type: ignore[arg-type]
        client = TestClient(create_app(settings, engine=BrightnessEngine())).__enter__()
        clients.append(client)
        wait_ready(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def app_of(client: TestClient) -> Starlette:
    app = client.app
    assert isinstance(app, Starlette)
    return app


@pytest.mark.parametrize("route", ROUTES)
def test_the_rate_limit_applies(make_app: Callable[..., TestClient], route: str) -> None:
    client = make_app(rate_limit_requests=3)
    for _ in range(3):
        assert ROUTES[route](client, jpeg()).status_code != 429
    refused = ROUTES[route](client, jpeg())
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize("route", ROUTES)
def test_the_body_limit_applies(make_app: Callable[..., TestClient], route: str) -> None:
    client = make_app(max_body_bytes=4_096)
    refused = ROUTES[route](client, jpeg(640, 480))
    assert refused.status_code == 413, refused.text


@pytest.mark.parametrize("route", ROUTES)
def test_the_admission_line_applies(make_app: Callable[..., TestClient], route: str) -> None:
    client = make_app(max_uploads=1)
    admission = app_of(client).state.services.pipeline.admission
    with admission.ticket():  # the one upload place is taken
        refused = ROUTES[route](client, jpeg())
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
