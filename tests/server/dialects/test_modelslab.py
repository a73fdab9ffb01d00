"""The ModelsLab `removebg_mask` contract over HTTP, on the fake engine: every path, the
result URL and its expiry, fetch, base64 output, every option, the key in the body,
webhooks to a local receiver, image URLs through the outbound guard (and the SSRF
attempts it refuses), and every error in ModelsLab's shape."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.dialects.modelslab import (
    DEFAULTS,
    FETCH_PATHS,
    PATHS,
    RESULTS_PATH,
    ModelsLabDialect,
)
from server.errors import BadRequest, NotFound, RateLimited, Unauthorized, Unavailable
from server.options import CutoutOptions
from server.outbound import Outbound
from server.pipeline import Cutout
from server.services import Services
from server.settings import Settings
from tests.conftest import ID, KEY, PATH, jpeg, png, wait_ready
from tests.fakes import BrightnessEngine, ManualClock
from tests.local_http import Answer, LocalServer, Received, answer
from tests.server.test_outbound import REFUSED_ADDRESS, Resolver

V6 = "/api/v6/image_editing/removebg_mask"
PHOTO = jpeg(320, 240)
PHOTO_B64 = base64.b64encode(PHOTO).decode()
OTHER_KEY = "sk-other-key"
TOKEN_URL = re.compile(r"http://testserver/results/[A-Za-z0-9_-]{32}\.png")
OFF = "URLs are turned off on this server; send the data instead"
KEY_MESSAGE = "key: invalid or missing API key"
GONE = "no such result; results are kept for 3600 seconds"
DEFAULT_META = {
    "image": None,
    "alpha_matting": False,
    "alpha_matting_foreground_threshold": 240,
    "alpha_matting_background_threshold": 20,
    "alpha_matting_erode_size": 5,
    "post_process_mask": False,
    "only_mask": False,
    "inverse_mask": False,
    "seed": None,
    "base64": False,
    "webhook": None,
    "track_id": None,
}


def remove(
    client: TestClient, path: str = V6, body: object | None = None, **fields: object
) -> httpx.Response:
    """A request as modelslab-py sends it: JSON with the key in the body."""
    payload = body if body is not None else {"key": KEY, "image": PHOTO_B64, **fields}
    response: httpx.Response = client.post(path, json=payload)
    return response


def success(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"status", "generationTime", "id", "output", "proxy_links", "meta"}
    assert body["status"] == "success"
    assert isinstance(body["id"], int) and 1 <= body["id"] < 2**53
    assert isinstance(body["generationTime"], float) and 0 <= body["generationTime"] < 30
    [url] = body["proxy_links"]
    assert TOKEN_URL.fullmatch(url), url
    return body


def assert_error(
    response: httpx.Response, status: int, message: str, retry_after: int | None = None
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    expected: dict[str, object] = {"status": "error", "message": message}
    if retry_after is not None:
        expected["retry_after"] = retry_after
        assert response.headers["retry-after"] == str(retry_after)
    assert response.json() == expected
    assert ID.fullmatch(response.headers["x-request-id"])


def fetched(client: TestClient, url: str) -> httpx.Response:
    response: httpx.Response = client.get(url.removeprefix("http://testserver"))
    return response


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def result_image(client: TestClient, body: dict[str, Any]) -> Image.Image:
    response = fetched(client, body["proxy_links"][0])
    assert response.status_code == 200
    return image_of(response.content)


class Recorder:
    """Wraps the pipeline's cutout to see the options each request reached it with."""

    def __init__(self, client: TestClient) -> None:
        services: Services = client.app.state.services  # type: ignore[attr-defined]
        assert services.pipeline is not None
        pipeline = services.pipeline
        original = pipeline.cutout
        self.options: list[CutoutOptions] = []

        async def cutout(ticket: Any, data: bytes, options: CutoutOptions, receive: Any) -> Cutout:
            self.options.append(options)
            return await original(ticket, data, options, receive)

        pipeline.cutout = cutout  # type: ignore[method-assign]


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def app_with(tmp_path: Path, clock: ManualClock | None = None, **changes: Any) -> Starlette:
    outbound = changes.pop("outbound", None)
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY, OTHER_KEY}), **changes)
    return create_app(settings, engine=BrightnessEngine(), clock=clock, outbound=outbound)


@pytest.fixture
def keyed(tmp_path: Path, clock: ManualClock) -> Iterator[TestClient]:
    with TestClient(app_with(tmp_path, clock), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


# --- success on every path ----------------------------------------------------------------


def test_the_paths() -> None:
    assert PATHS == (
        "/api/v5/removebg_mask",
        "/api/v6/image_editing/removebg_mask",
        "/api/v1/image_editing/removebg_mask",
        "/api/v1/enterprise/image_editing/removebg_mask",
    )
    assert FETCH_PATHS == (
        "/api/v6/fetch/{id}",
        "/api/v5/fetch/{id}",
        "/api/v6/image_editing/fetch/{id}",
        "/api/v1/image_editing/fetch/{id}",
        "/api/v1/enterprise/image_editing/fetch/{id}",
    )


@pytest.mark.parametrize("path", PATHS)
def test_every_path_answers_a_url_to_the_cutout(client: TestClient, path: str) -> None:
    body = success(remove(client, path))
    assert body["output"] == body["proxy_links"]
    assert body["meta"] == DEFAULT_META
    image = result_image(client, body)
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (320, 240)
    values = np.asarray(image)
    # The fake engine keeps the bright disc and cuts the dark corners.
    assert values[120, 160, 3] == 255
    assert ((values[120, 160, :3] >= 222) & (values[120, 160, :3] <= 238)).all()
    assert values[2, 2, 3] == 0


def test_the_cutout_equals_the_stability_endpoints(client: TestClient) -> None:
    stability = client.post(PATH, headers={"authorization": KEY}, files={"image": ("a.jpg", PHOTO)})
    assert stability.status_code == 200
    ours = result_image(client, success(remove(client)))
    assert np.array_equal(np.asarray(ours), np.asarray(image_of(stability.content)))


def test_the_result_url_needs_no_key_and_is_not_cached(client: TestClient) -> None:
    body = success(remove(client))
    assert "authorization" not in client.headers
    response = fetched(client, body["output"][0])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    assert image_of(response.content).size == (320, 240)


def test_each_result_has_its_own_url_and_id(client: TestClient) -> None:
    first, second = success(remove(client)), success(remove(client))
    assert first["id"] != second["id"]
    assert first["output"] != second["output"]


def test_base64_puts_the_png_in_output(client: TestClient) -> None:
    body = success(remove(client, base64=True))
    [inline] = body["output"]
    data = base64.b64decode(inline, validate=True)
    assert fetched(client, body["proxy_links"][0]).content == data
    assert image_of(data).format == "PNG"
    assert body["meta"] == {**DEFAULT_META, "base64": True}
    assert success(remove(client, base64="TRUE"))["meta"]["base64"] is True
    assert TOKEN_URL.fullmatch(success(remove(client, base64="false"))["output"][0])


def test_a_data_url_works_as_well_as_bare_base64(client: TestClient) -> None:
    bare = result_image(client, success(remove(client)))
    url = result_image(client, success(remove(client, image=f"data:image/jpeg;base64,{PHOTO_B64}")))
    assert np.array_equal(np.asarray(bare), np.asarray(url))


def test_the_body_modelslab_py_sends(client: TestClient) -> None:
    # BackgroundRemoverSchema(...).dict() plus the client's "key": every field, nulls
    # included, and its own `api_key` (ignored).
    body = {
        "key": KEY,
        "api_key": KEY,
        "webhook": None,
        "track_id": None,
        "image": PHOTO_B64,
        "alpha_matting": False,
        "post_process_mask": False,
        "only_mask": False,
        "inverse_mask": False,
        "seed": None,
        "base64": False,
        "alpha_matting_foreground_threshold": 240,
        "alpha_matting_background_threshold": 20,
        "alpha_matting_erode_size": 5,
    }
    assert success(remove(client, body=body))["meta"] == DEFAULT_META


def test_unknown_fields_are_ignored_and_bgcolor_is_not_a_modelslab_field(
    client: TestClient,
) -> None:
    body = success(remove(client, prompt="a cat", bgcolor=[255, 0, 0], samples=4))
    assert np.asarray(result_image(client, body))[2, 2, 3] == 0


def test_any_content_type_and_an_empty_accept(client: TestClient) -> None:
    payload = json.dumps({"key": KEY, "image": PHOTO_B64})
    for headers in (
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded", "accept": ""},
    ):
        success(client.post(V6, content=payload, headers=headers))


def test_requests_are_counted_by_path(client: TestClient) -> None:
    success(remove(client, "/api/v5/removebg_mask"))
    registry = services_of(client).metrics.registry
    labels = {"route": "/api/v5/removebg_mask", "status": "200"}
    assert registry.get_sample_value("matte_requests_total", labels) == 1


def test_result_and_fetch_routes_are_counted_by_their_templates(keyed: TestClient) -> None:
    # Their paths carry ids; each route is one label all the same, not "other".
    body = success(remove(keyed))
    assert fetched(keyed, body["output"][0]).status_code == 200
    assert keyed.post(f"/api/v6/fetch/{body['id']}", json={"key": KEY}).status_code == 200
    assert keyed.post("/api/v6/fetch/999", json={"key": KEY}).status_code == 404
    registry = services_of(keyed).metrics.registry

    def count(route: str, status: str) -> float | None:
        return registry.get_sample_value("matte_requests_total", {"route": route, "status": status})

    assert count(RESULTS_PATH, "200") == 1
    assert count("/api/v6/fetch/{id}", "200") == 1
    assert count("/api/v6/fetch/{id}", "404") == 1
    assert count("other", "200") is None


def test_public_base_url_names_the_server(tmp_path: Path) -> None:
    app = app_with(tmp_path, public_base_url="https://matte.example.com/edge")
    with TestClient(app) as client:
        wait_ready(client)
        response = remove(client)
        assert response.status_code == 200
        [url] = response.json()["output"]
        assert re.fullmatch(r"https://matte\.example\.com/edge/results/[\w-]{32}\.png", url)
        token_path = url.removeprefix("https://matte.example.com/edge")
        assert client.get(token_path).status_code == 200


# --- options ------------------------------------------------------------------------------


def test_modelslab_defaults_reach_the_pipeline(client: TestClient) -> None:
    recorder = Recorder(client)
    success(remove(client))
    assert recorder.options == [
        CutoutOptions(
            output_format="png",
            only_mask=False,
            post_process_mask=False,
            alpha_matting=False,
            alpha_matting_foreground_threshold=240,
            alpha_matting_background_threshold=20,
            alpha_matting_erode_size=5,
            bgcolor=None,
        )
    ]
    assert recorder.options[0] == DEFAULTS


def test_every_option_reaches_the_pipeline_and_meta(client: TestClient) -> None:
    recorder = Recorder(client)
    fields = {
        "alpha_matting": True,
        "post_process_mask": "true",
        "only_mask": "True",
        "alpha_matting_foreground_threshold": 200,
        "alpha_matting_background_threshold": "30",
        "alpha_matting_erode_size": 7,
        "seed": 12345,
        "track_id": "job-9",
    }
    body = success(remove(client, body={"key": KEY, "image": PHOTO_B64, **fields}))
    assert recorder.options == [
        CutoutOptions(
            only_mask=True,
            post_process_mask=True,
            alpha_matting=True,
            alpha_matting_foreground_threshold=200,
            alpha_matting_background_threshold=30,
            alpha_matting_erode_size=7,
        )
    ]
    assert body["meta"] == {
        **DEFAULT_META,
        "alpha_matting": True,
        "post_process_mask": True,
        "only_mask": True,
        "alpha_matting_foreground_threshold": 200,
        "alpha_matting_background_threshold": 30,
        "alpha_matting_erode_size": 7,
        "seed": 12345,
        "track_id": "job-9",
    }
    assert result_image(client, body).mode == "L"


@pytest.mark.parametrize("name", ["alpha_matting", "post_process_mask", "only_mask"])
def test_each_boolean_alone(client: TestClient, name: str) -> None:
    recorder = Recorder(client)
    body = success(remove(client, body={"key": KEY, "image": PHOTO_B64, name: True}))
    assert getattr(recorder.options[0], name) is True
    assert body["meta"] == {**DEFAULT_META, name: True}


def test_only_mask_is_a_greyscale_mask(client: TestClient) -> None:
    image = result_image(client, success(remove(client, only_mask=True)))
    assert image.mode == "L" and image.size == (320, 240)
    values = np.asarray(image)
    assert values[120, 160] == 255 and values[2, 2] == 0


def test_inverse_mask_is_the_mask_with_black_and_white_swapped(client: TestClient) -> None:
    mask = np.asarray(result_image(client, success(remove(client, only_mask=True))))
    recorder = Recorder(client)
    body = success(remove(client, inverse_mask=True))
    inverse = result_image(client, body)
    assert inverse.mode == "L" and inverse.size == (320, 240)
    assert np.array_equal(np.asarray(inverse), 255 - mask)
    # White background, black subject.
    assert np.asarray(inverse)[2, 2] == 255 and np.asarray(inverse)[120, 160] == 0
    assert recorder.options[0].only_mask is True
    assert body["meta"] == {**DEFAULT_META, "inverse_mask": True, "only_mask": True}
    # With base64 the inline PNG is the inverted one too.
    inline = success(remove(client, inverse_mask="true", base64=True))["output"][0]
    assert np.array_equal(np.asarray(image_of(base64.b64decode(inline))), 255 - mask)


def test_post_process_mask_and_alpha_matting_change_the_result(client: TestClient) -> None:
    plain = np.asarray(result_image(client, success(remove(client))))
    smoothed = np.asarray(result_image(client, success(remove(client, post_process_mask=True))))
    assert smoothed.shape == plain.shape and not np.array_equal(smoothed, plain)
    matted = result_image(client, success(remove(client, alpha_matting=True)))
    assert matted.mode == "RGBA" and matted.size == (320, 240)


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0), (-5, -5), (2**40, 2**40), ("42", 42), (7.0, 7), (None, None)]
)
def test_seed_is_echoed(client: TestClient, value: object, expected: int | None) -> None:
    assert success(remove(client, seed=value))["meta"]["seed"] == expected


@pytest.mark.parametrize("value", ["job-1", "", 17, 0, None])
def test_track_id_is_echoed(client: TestClient, value: object) -> None:
    assert success(remove(client, track_id=value))["meta"]["track_id"] == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("FALSE", False), (None, False)],
)
def test_boolean_forms(client: TestClient, value: object, expected: bool) -> None:
    recorder = Recorder(client)
    success(remove(client, post_process_mask=value))
    assert recorder.options[0].post_process_mask is expected


# --- fetch and expiry ---------------------------------------------------------------------


def test_a_result_stored_by_one_replica_is_served_by_another(
    tmp_path: Path, postgres_url: str
) -> None:
    # Two apps on one PostgreSQL database, as two replicas behind a balancer.
    first = app_with(tmp_path / "a", database_url=postgres_url)
    second = app_with(tmp_path / "b", database_url=postgres_url)
    with TestClient(first) as one, TestClient(second) as other:
        wait_ready(one)
        body = success(remove(one, track_id="r1"))
        image = fetched(other, body["output"][0])
        assert image.status_code == 200 and image.content == fetched(one, body["output"][0]).content
        again = other.post(f"/api/v6/fetch/{body['id']}", json={"key": KEY})
        assert again.status_code == 200 and again.json() == body
        wait_ready(other)


def test_results_survive_a_restart(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path)) as client:
        wait_ready(client)
        body = success(remove(client))
        data = fetched(client, body["output"][0]).content
    with TestClient(app_with(tmp_path)) as client:
        assert fetched(client, body["output"][0]).content == data


@pytest.mark.parametrize("path", FETCH_PATHS)
def test_fetch_answers_the_same_body(keyed: TestClient, path: str) -> None:
    body = success(remove(keyed, base64=True, track_id=3))
    response = keyed.post(path.replace("{id}", str(body["id"])), json={"key": KEY})
    assert response.status_code == 200
    assert response.json() == body


def test_fetch_is_only_for_the_key_that_made_it(keyed: TestClient) -> None:
    body = success(remove(keyed))
    response = keyed.post(f"/api/v6/fetch/{body['id']}", json={"key": OTHER_KEY})
    assert_error(response, 404, f"id: {GONE}")
    assert keyed.post(f"/api/v6/fetch/{body['id']}", json={"key": KEY}).status_code == 200


def test_fetch_needs_a_key(keyed: TestClient) -> None:
    body = success(remove(keyed))
    for payload in ({}, {"key": "wrong"}, {"key": 7}):
        response = keyed.post(f"/api/v5/fetch/{body['id']}", json=payload)
        assert_error(response, 401, KEY_MESSAGE)


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "١٢", "12345678901234567"])
def test_fetch_of_a_bad_id(keyed: TestClient, raw: str) -> None:
    response = keyed.post(f"/api/v6/fetch/{raw}", json={"key": KEY})
    assert_error(response, 400, "id: must be the id of a result, a number")


def test_fetch_of_an_unknown_id(keyed: TestClient) -> None:
    response = keyed.post("/api/v6/fetch/1234567890123456", json={"key": KEY})
    assert_error(response, 404, f"id: {GONE}")


def test_results_expire(keyed: TestClient, clock: ManualClock) -> None:
    body = success(remove(keyed))
    url = body["output"][0]
    clock.advance(3599.5)
    assert fetched(keyed, url).status_code == 200
    assert keyed.post(f"/api/v6/fetch/{body['id']}", json={"key": KEY}).json() == body
    clock.advance(0.5)
    assert_error(fetched(keyed, url), 404, f"result: {GONE}")
    response = keyed.post(f"/api/v6/fetch/{body['id']}", json={"key": KEY})
    assert_error(response, 404, f"id: {GONE}")


def test_retention_follows_the_setting(tmp_path: Path, clock: ManualClock) -> None:
    with TestClient(app_with(tmp_path, clock, results_ttl_s=90.5)) as client:
        wait_ready(client)
        body = success(remove(client))
        clock.advance(90.4)
        assert fetched(client, body["output"][0]).status_code == 200
        clock.advance(0.1)
        response = fetched(client, body["output"][0])
        assert_error(response, 404, "result: no such result; results are kept for 90.5 seconds")


@pytest.mark.parametrize(
    "suffix",
    ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.png", "x.png", ".png", "a", "{token}.webp", "{token}"],
)
def test_unknown_result_urls_are_404(client: TestClient, suffix: str) -> None:
    token = success(remove(client))["output"][0].rsplit("/", 1)[1].removesuffix(".png")
    response = client.get("/results/" + suffix.replace("{token}", token))
    assert_error(response, 404, f"result: {GONE}")


# --- the key -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong", 123, ["sk-test-key"], True], ids=repr)
def test_a_missing_or_wrong_key_is_401(keyed: TestClient, key: object) -> None:
    payload: dict[str, object] = {"image": PHOTO_B64}
    if key is not None:
        payload["key"] = key
    response = keyed.post(V6, json=payload, headers={"authorization": f"Bearer {KEY}"})
    assert_error(response, 401, KEY_MESSAGE)


@pytest.mark.parametrize("key", [123, True, ["sk-any"], {"k": 1}, ""], ids=repr)
def test_with_no_keys_configured_a_key_must_still_be_a_string(tmp_path: Path, key: object) -> None:
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=BrightnessEngine())) as client:
        wait_ready(client)
        assert_error(client.post(V6, json={"key": key, "image": PHOTO_B64}), 401, KEY_MESSAGE)
        success(client.post(V6, json={"key": "anything", "image": PHOTO_B64}))


def test_the_key_is_checked_before_the_fields(keyed: TestClient) -> None:
    response = keyed.post(V6, json={"key": "wrong", "image": 5, "only_mask": "maybe"})
    assert_error(response, 401, KEY_MESSAGE)


def test_the_key_is_never_echoed(keyed: TestClient) -> None:
    response = remove(keyed, base64=False)
    assert KEY not in response.text


def test_rate_limit_counts_by_key(tmp_path: Path, clock: ManualClock) -> None:
    app = app_with(tmp_path, clock, rate_limit_requests=2)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        success(remove(client))
        success(remove(client))
        response = remove(client)
        message = (
            "You have exceeded the rate limit of 2 requests within a 10 second period, "
            "and have been timed out for 60 seconds."
        )
        assert_error(response, 429, message, retry_after=60)
        # Another key is its own count.
        success(client.post(V6, json={"key": OTHER_KEY, "image": PHOTO_B64}))


class FailingEngine(BrightnessEngine):
    def run(self, batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("warm-up failed")


def test_not_loaded_is_503_with_retry_after(tmp_path: Path) -> None:
    app = create_app(Settings(cache_dir=tmp_path), engine=FailingEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(500):
            if client.get("/readyz").json()["status"] != "loading":
                break
            time.sleep(0.01)
        response = remove(client)
        assert_error(response, 503, "server: the model is not loaded yet, please retry shortly", 5)


# --- bad bodies ---------------------------------------------------------------------------


def raw_post(client: TestClient, content: bytes) -> httpx.Response:
    response: httpx.Response = client.post(V6, content=content)
    return response


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "body: is required: a JSON object"),
        (b"   ", "body: is required: a JSON object"),
        (b"{not json", "body: is not valid JSON"),
        (b"[1, 2]", "body: must be a JSON object"),
        (b'"key"', "body: must be a JSON object"),
    ],
)
def test_bodies_that_are_not_a_json_object(
    client: TestClient, content: bytes, message: str
) -> None:
    assert_error(raw_post(client, content), 400, message)


SMALL = base64.b64encode(png(32, 32)).decode()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image": None}, "image: is required"),
        ({"image": 5}, "image: must be a string"),
        ({"image": ["a"]}, "image: must be a string"),
        ({"image": ""}, "image: must not be empty"),
        ({"image": "not base64!"}, "image: is not valid base64"),
        (
            {"image": f"data:text/plain;base64,{PHOTO_B64}"},
            "image: the data URL must be an image/png, image/jpeg or image/webp image",
        ),
        (
            {"image": f"data:image/png,{PHOTO_B64}"},
            "image: must be a base64 data URL, like data:image/png;base64,...",
        ),
        (
            {"image": base64.b64encode(b"hello there").decode()},
            "image: must be a jpeg, png or webp image",
        ),
        ({"image": SMALL}, "image: width and height must be at least 64 pixels"),
        ({"only_mask": "yes"}, "only_mask: must be true or false"),
        ({"inverse_mask": 1}, "inverse_mask: must be true or false"),
        ({"alpha_matting": "on"}, "alpha_matting: must be true or false"),
        ({"post_process_mask": 0}, "post_process_mask: must be true or false"),
        ({"base64": "1"}, "base64: must be true or false"),
        (
            {"alpha_matting_foreground_threshold": 256},
            "alpha_matting_foreground_threshold: must be an integer from 0 to 255",
        ),
        (
            {"alpha_matting_background_threshold": -1},
            "alpha_matting_background_threshold: must be an integer from 0 to 255",
        ),
        (
            {"alpha_matting_foreground_threshold": "high"},
            "alpha_matting_foreground_threshold: must be an integer from 0 to 255",
        ),
        (
            {"alpha_matting_erode_size": 101},
            "alpha_matting_erode_size: must be an integer from 0 to 100",
        ),
        (
            {"alpha_matting_foreground_threshold": 20},
            "alpha_matting_foreground_threshold: must be greater than "
            "alpha_matting_background_threshold",
        ),
        ({"seed": "abc"}, "seed: must be an integer"),
        ({"seed": True}, "seed: must be an integer"),
        ({"seed": 1.5}, "seed: must be an integer"),
        ({"track_id": [1]}, "track_id: must be a string, an integer or null"),
        ({"track_id": True}, "track_id: must be a string, an integer or null"),
        ({"track_id": 1.5}, "track_id: must be a string, an integer or null"),
        ({"webhook": 5}, "webhook: must be a string"),
        ({"webhook": "https://hooks.example/x"}, f"webhook: {OFF}"),
        ({"image": "https://images.example/cat.png"}, f"image: {OFF}"),
        ({"image": "HTTP://images.example/cat.png"}, f"image: {OFF}"),
    ],
)
def test_bad_fields_name_the_field(
    client: TestClient, fields: dict[str, object], message: str
) -> None:
    body = {"key": KEY, "image": PHOTO_B64, **fields}
    assert_error(remove(client, body=body), 400, message)


def test_erode_size_edges(client: TestClient) -> None:
    for size in (0, 100):
        assert (
            success(remove(client, alpha_matting_erode_size=size))["meta"][
                "alpha_matting_erode_size"
            ]
            == size
        )


def test_an_oversized_body_is_413(client: TestClient) -> None:
    big = b'{"key": "' + KEY.encode() + b'", "image": "' + b"A" * (10 * 1024 * 1024) + b'"}'
    message = "body: payloads cannot be larger than 10MiB in size"
    assert_error(raw_post(client, big), 413, message)

    def chunks() -> Iterator[bytes]:
        yield big[: 1024 * 1024]
        for start in range(1024 * 1024, len(big), 1024 * 1024):
            yield big[start : start + 1024 * 1024]

    response = client.post(V6, content=chunks())
    assert_error(response, 413, message)


def test_render_error_by_class() -> None:
    dialect = ModelsLabDialect()

    def rendered(error: Exception) -> tuple[int, dict[str, object], str | None]:
        assert isinstance(error, (BadRequest, NotFound, Unauthorized, RateLimited, Unavailable))
        response = dialect.render_error(error, "0" * 32)
        return (
            response.status_code,
            json.loads(bytes(response.body)),
            response.headers.get("retry-after"),
        )

    assert rendered(BadRequest("a: b", "c: d")) == (
        400,
        {"status": "error", "message": "a: b; c: d"},
        None,
    )
    assert rendered(Unauthorized()) == (401, {"status": "error", "message": KEY_MESSAGE}, None)
    assert rendered(RateLimited(5, 10, 60, 42)) == (
        429,
        {
            "status": "error",
            "message": "You have exceeded the rate limit of 5 requests within a 10 second "
            "period, and have been timed out for 60 seconds.",
            "retry_after": 42,
        },
        "42",
    )
    assert rendered(Unavailable("server: busy", 3)) == (
        503,
        {"status": "error", "message": "server: busy", "retry_after": 3},
        "3",
    )


# --- webhooks -----------------------------------------------------------------------------


def wait_delivered(client: TestClient, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while services_of(client).webhooks.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert services_of(client).webhooks.pending == 0


@pytest.fixture
def receiver() -> Iterator[LocalServer]:
    with LocalServer(answer(200)) as running:
        yield running


def guarded_app(tmp_path: Path, *servers: LocalServer, **changes: Any) -> Starlette:
    resolver = Resolver({"hooks.example": ["127.0.0.1"], "images.example": ["127.0.0.1"]})
    outbound = Outbound(
        True, resolver=resolver, allow_for_tests={("127.0.0.1", s.port) for s in servers}
    )
    return app_with(tmp_path, outbound=outbound, **changes)


def test_a_webhook_gets_the_same_json_plus_track_id(tmp_path: Path, receiver: LocalServer) -> None:
    with TestClient(guarded_app(tmp_path, receiver)) as client:
        wait_ready(client)
        hook = f"http://hooks.example:{receiver.port}/done?sig=1"
        body = success(remove(client, webhook=hook, track_id="order-7"))
        assert body["meta"] == {**DEFAULT_META, "webhook": hook, "track_id": "order-7"}
        [received] = receiver.wait_for(1)
        wait_delivered(client)
    assert received.method == "POST" and received.path == "/done?sig=1"
    assert received.headers["host"] == f"hooks.example:{receiver.port}"
    assert received.headers["content-type"] == "application/json"
    assert json.loads(received.body) == {**body, "track_id": "order-7"}


def test_a_webhook_never_delays_the_response(tmp_path: Path) -> None:
    slow = LocalServer(lambda _: Answer(200, {}, b"", delay_s=1.5))
    with slow, TestClient(guarded_app(tmp_path, slow)) as client:
        wait_ready(client)
        started = time.monotonic()
        body = success(remove(client, webhook=f"{slow.url}/hook", track_id=1))
        assert time.monotonic() - started < 1.0
        [received] = slow.wait_for(1)
        assert json.loads(received.body) == {**body, "track_id": 1}


def test_a_failing_webhook_is_retried(tmp_path: Path) -> None:
    count = 0

    def script(_: Received) -> Answer:
        nonlocal count
        count += 1
        return Answer(500 if count == 1 else 200, {}, b"")

    with LocalServer(script) as flaky, TestClient(guarded_app(tmp_path, flaky)) as client:
        wait_ready(client)
        body = success(remove(client, webhook=f"{flaky.url}/hook"))
        received = flaky.wait_for(2)
        wait_delivered(client)
    assert len(received) == 2
    assert [json.loads(item.body) for item in received] == [{**body, "track_id": None}] * 2


def test_an_empty_webhook_means_none(tmp_path: Path, receiver: LocalServer) -> None:
    with TestClient(guarded_app(tmp_path, receiver)) as client:
        wait_ready(client)
        assert success(remove(client, webhook=""))["meta"]["webhook"] is None
        assert services_of(client).webhooks.pending == 0


@pytest.mark.parametrize(
    ("hook", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", REFUSED_ADDRESS),
        ("http://10.0.0.1/hook", REFUSED_ADDRESS),
        ("http://169.254.169.254/latest/meta-data/", REFUSED_ADDRESS),
        ("http://[::1]:{port}/", REFUSED_ADDRESS),
        ("ftp://hooks.example/", "must be an http or https URL"),
    ],
)
def test_webhooks_to_forbidden_addresses_are_refused_up_front(
    tmp_path: Path, receiver: LocalServer, hook: str, reason: str
) -> None:
    with TestClient(guarded_app(tmp_path)) as client:
        wait_ready(client)
        response = remove(client, webhook=hook.replace("{port}", str(receiver.port)))
        assert_error(response, 400, f"webhook: {reason}")
    assert receiver.received == []


def test_a_webhook_name_that_resolves_to_loopback_is_never_called(
    tmp_path: Path, receiver: LocalServer
) -> None:
    # Known only once resolved, at delivery: the request succeeds, the delivery is refused.
    with TestClient(guarded_app(tmp_path)) as client:
        wait_ready(client)
        success(remove(client, webhook=f"http://hooks.example:{receiver.port}/hook"))
        wait_delivered(client)
    assert receiver.received == []


# --- image URLs through the guard ---------------------------------------------------------


def photo_server() -> LocalServer:
    def script(received: Received) -> Answer:
        if received.path == "/cat.jpg":
            return Answer(200, {"content-type": "image/jpeg"}, PHOTO)
        if received.path == "/empty":
            return Answer(200, {}, b"")
        if received.path == "/moved":
            return Answer(302, {"location": "/cat.jpg"})
        return Answer(404, {}, b"missing")

    return LocalServer(script)


def test_an_image_url_is_fetched_through_the_guard(tmp_path: Path, client: TestClient) -> None:
    with photo_server() as photos:
        with TestClient(guarded_app(tmp_path, photos)) as guarded:
            wait_ready(guarded)
            url = f"http://images.example:{photos.port}/cat.jpg"
            body = success(remove(guarded, image=url))
            assert body["meta"] == {**DEFAULT_META, "image": url}
            fetched_image = result_image(guarded, body)
            redirected = success(
                remove(guarded, image=f"http://images.example:{photos.port}/moved")
            )
            assert np.array_equal(
                np.asarray(result_image(guarded, redirected)), np.asarray(fetched_image)
            )
        [first, *_] = photos.received
        assert first.headers["host"] == f"images.example:{photos.port}"
    inline = result_image(client, success(remove(client)))
    assert np.array_equal(np.asarray(fetched_image), np.asarray(inline))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/nothing.jpg", "image: the URL answered HTTP 404"),
        ("/empty", "image: the URL answered with an empty body"),
    ],
)
def test_image_urls_that_give_no_image(tmp_path: Path, path: str, message: str) -> None:
    with photo_server() as photos, TestClient(guarded_app(tmp_path, photos)) as client:
        wait_ready(client)
        response = remove(client, image=f"http://images.example:{photos.port}{path}")
        assert_error(response, 400, message)


def test_an_image_url_over_the_cap(tmp_path: Path) -> None:
    with photo_server() as photos:
        outbound = Outbound(True, max_bytes=1000, allow_for_tests={("127.0.0.1", photos.port)})
        with TestClient(app_with(tmp_path, outbound=outbound)) as client:
            wait_ready(client)
            response = remove(client, image=f"{photos.url}/cat.jpg")
            assert_error(response, 400, "image: is larger than 1000 bytes")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/cat.jpg",
        "http://10.0.0.1/cat.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/cat.jpg",
        "http://images.example:{port}/cat.jpg",  # resolves to loopback
    ],
)
def test_ssrf_attempts_are_refused(tmp_path: Path, url: str) -> None:
    with photo_server() as photos:
        # The guard is on but allows nothing local.
        with TestClient(guarded_app(tmp_path)) as client:
            wait_ready(client)
            response = remove(client, image=url.replace("{port}", str(photos.port)))
            assert_error(response, 400, f"image: {REFUSED_ADDRESS}")
        assert photos.received == []


def test_a_redirect_to_loopback_is_refused(tmp_path: Path) -> None:
    with photo_server() as internal:
        with (
            LocalServer(
                lambda _: Answer(302, {"location": f"http://127.0.0.1:{internal.port}/cat.jpg"})
            ) as public,
            TestClient(guarded_app(tmp_path, public)) as client,
        ):
            wait_ready(client)
            response = remove(client, image=f"{public.url}/start")
            message = f"image: redirects to a refused URL: {REFUSED_ADDRESS}"
            assert_error(response, 400, message)
        assert internal.received == []


def test_shutdown_cancels_webhooks_still_retrying(tmp_path: Path) -> None:
    with LocalServer(answer(500)) as failing:
        app = guarded_app(tmp_path, failing)
        services: Services = app.state.services

        async def run() -> None:
            async with app.router.lifespan_context(app):
                for _ in range(1000):  # bounded: until the model is "loaded"
                    if services.readiness.state == "ready":
                        break
                    await asyncio.sleep(0.01)
                task = services.webhooks.send(f"{failing.url}/hook", {"a": 1})
                assert task is not None
                for _ in range(500):  # bounded: until the first attempt has failed
                    if failing.received:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                # The next attempt waits out its 1 s back-off.
                assert services.webhooks.pending == 1
            # The lifespan is over while the loop still runs: nothing is left retrying.
            assert task.cancelled() and services.webhooks.pending == 0

        asyncio.run(asyncio.wait_for(run(), 30))
        assert len(failing.received) == 1


def test_expired_results_are_swept_without_a_lookup(tmp_path: Path, clock: ManualClock) -> None:
    with TestClient(app_with(tmp_path, clock, results_ttl_s=1)) as client:
        wait_ready(client)
        success(remove(client))
        storage, _ = services_of(client).stored()
        assert storage.result_bytes() > 0
        clock.advance(1)
        deadline = time.monotonic() + 5
        while storage.result_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert storage.result_bytes() == 0
