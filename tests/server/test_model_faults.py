"""A model run that raises or hangs, through the engine seam, on every dialect: the
request fails in its API's own shape, nothing of the cause leaks, and the next
request is served."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.engine import Engine
from server.settings import Settings, SettingsError
from tests.conftest import AUTH, ID, KEY, PATH, jpeg, wait_ready
from tests.fakes import FailingOnceEngine, HangingEngine

PHOTO = jpeg()
PHOTO_B64 = base64.b64encode(PHOTO).decode()
GENERIC = "An unexpected server error has occurred, please try again later."
TIMED_OUT = "server: the model did not answer in time, please retry shortly"
MODEL_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Dialect:
    name: str
    send: Callable[[TestClient], httpx.Response]
    message: Callable[[httpx.Response], str]  # the error's message, once its shape is checked
    ok: int = 200


def stability(client: TestClient) -> httpx.Response:
    files = {"image": ("photo.jpg", PHOTO, "image/jpeg")}
    response: httpx.Response = client.post(PATH, headers=AUTH, files=files)
    return response


def stability_message(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"id", "name", "errors"} and body["id"] == response.headers["x-request-id"]
    expected = {500: "internal_error", 503: "service_unavailable"}[response.status_code]
    assert body["name"] == expected and len(body["errors"]) == 1
    return str(body["errors"][0])


def omixa(client: TestClient) -> httpx.Response:
    url = "data:image/jpeg;base64," + PHOTO_B64
    body = {
        "model": "stability-remove-background",
        "prompt": "",
        "input_images": [{"type": "image_url", "image_url": {"url": url}}],
    }
    response: httpx.Response = client.post("/api/v1/images/generations", headers=AUTH, json=body)
    return response


def omixa_message(response: httpx.Response) -> str:
    error = response.json()["error"]
    expected = {500: "internal_error", 503: "service_unavailable"}[response.status_code]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == ("server_error", expected, None)
    return str(error["message"])


def octoai(client: TestClient) -> httpx.Response:
    body = {"init_image": PHOTO_B64}
    response: httpx.Response = client.post("/background-removal", headers=AUTH, json=body)
    return response


def octoai_message(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"detail"}
    return str(body["detail"])


def modelslab(client: TestClient) -> httpx.Response:
    body = {"key": KEY, "image": PHOTO_B64}
    response: httpx.Response = client.post("/api/v6/image_editing/removebg_mask", json=body)
    return response


def modelslab_message(response: httpx.Response) -> str:
    body = response.json()
    assert body["status"] == "error"
    if response.status_code == 503:
        assert body["retry_after"] == int(response.headers["retry-after"])
    return str(body["message"])


def imgproc(client: TestClient) -> httpx.Response:
    headers = {"x-api-key": KEY}
    files = {"image": ("photo.jpg", PHOTO, "image/jpeg")}
    uploaded = client.post("/v1/images/upload", headers=headers, files=files, data={"name": "p"})
    assert uploaded.status_code == 201, uploaded.text
    image_id = uploaded.json()["id"]
    path = f"/v1/images/{image_id}/remove-background"
    response: httpx.Response = client.post(path, headers=headers, json={})
    return response


def imgproc_message(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"type", "error", "status", "message"}
    assert body["status"] == response.status_code
    return str(body["message"])


DIALECTS = [
    Dialect("stability", stability, stability_message),
    Dialect("omixa", omixa, omixa_message),
    Dialect("octoai", octoai, octoai_message),
    Dialect("modelslab", modelslab, modelslab_message),
    Dialect("imgproc", imgproc, imgproc_message, ok=201),
]


def serve(tmp_path: Path, engine: Engine, **changes: float) -> TestClient:
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), **changes)  # type: ignore[arg-type]
    return TestClient(create_app(settings, engine=engine), raise_server_exceptions=False)


def count(client: TestClient, name: str) -> float:
    value = client.app.state.services.metrics.registry.get_sample_value(name)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_model_run_that_raises_is_a_plain_500_and_the_next_request_succeeds(
    tmp_path: Path, dialect: Dialect, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(tmp_path, FailingOnceEngine()) as client:
        wait_ready(client)
        failed = dialect.send(client)
        assert failed.status_code == 500, failed.text
        assert dialect.message(failed) == GENERIC
        request_id = failed.headers["x-request-id"]
        assert ID.fullmatch(request_id)
        assert "feedface" not in failed.text and "arena" not in failed.text
        # The cause is in the log, under the id the client was given.
        assert any(
            request_id in record.getMessage() and record.exc_info is not None
            for record in caplog.records
        )
        assert dialect.send(client).status_code == dialect.ok


@pytest.fixture
def hanging() -> Iterator[HangingEngine]:
    engine = HangingEngine()
    try:
        yield engine
    finally:
        engine.release.set()  # the abandoned thread ends with the test


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_model_run_that_hangs_is_a_503_and_the_server_recovers(
    tmp_path: Path, dialect: Dialect, hanging: HangingEngine
) -> None:
    with serve(tmp_path, hanging, model_timeout_s=MODEL_TIMEOUT_S) as client:
        wait_ready(client)
        started = time.monotonic()
        stuck = dialect.send(client)
        elapsed = time.monotonic() - started
        assert hanging.hung.is_set() and not hanging.release.is_set()
        assert stuck.status_code == 503, stuck.text
        assert stuck.headers["retry-after"] == "1"
        assert dialect.message(stuck) == TIMED_OUT
        assert MODEL_TIMEOUT_S <= elapsed < MODEL_TIMEOUT_S + 5
        assert count(client, "matte_model_timeouts_total") == 1
        # The stuck thread still blocks (it cannot be killed); the next request gets a
        # fresh one and is served, without waiting for the stuck one.
        started = time.monotonic()
        assert dialect.send(client).status_code == dialect.ok
        assert time.monotonic() - started < 5
        assert not hanging.release.is_set()
        assert count(client, "matte_model_timeouts_total") == 1


def test_the_model_timeout_setting() -> None:
    assert Settings.from_env({}).model_timeout_s == 120
    assert Settings.from_env({"MATTE_MODEL_TIMEOUT_S": "2.5"}).model_timeout_s == 2.5
    with pytest.raises(SettingsError, match="MATTE_MODEL_TIMEOUT_S"):
        Settings.from_env({"MATTE_MODEL_TIMEOUT_S": "0"})
