"""The OctoAI `POST /background-removal` contract over HTTP, on the fake engine.

Clients are OctoAI's SDKs calling `infer(url, inputs)`: exactly 200 on success, FastAPI's
error shapes (a 422 `detail` list for bad bodies, a `detail` string otherwise), and the
header quirks of octoai 1.11 (no Authorization) and @octoai/client (empty headers).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.routing import Route
from starlette.testclient import TestClient

from server.app import create_app
from server.dialects.octoai import DEFAULTS, PATH, OctoAIDialect
from server.errors import (
    ApiError,
    BadRequest,
    InternalError,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from server.options import CutoutOptions
from server.settings import Settings
from tests.conftest import KEY, jpeg, png, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, ManualClock
from tests.server.dialects.conftest import assert_detail

AUTH = {"authorization": f"Bearer {KEY}"}
PHOTO = jpeg(320, 240)
PHOTO_B64 = base64.b64encode(PHOTO).decode()


def infer(
    client: TestClient, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    response: httpx.Response = client.post(PATH, json=body, headers={**AUTH, **(headers or {})})
    return response


def cutout(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"image_b64", "removed_for_safety"}
    assert body["removed_for_safety"] is False
    image = Image.open(io.BytesIO(base64.b64decode(body["image_b64"], validate=True)))
    image.load()
    return image


def pixels(response: httpx.Response) -> np.ndarray:
    return np.asarray(cutout(response))


def assert_422(response: httpx.Response, loc: list[str], msg: str, kind: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


# --- success -------------------------------------------------------------------------------


def test_a_cutout_is_a_base64_png_of_the_inputs_size(client: TestClient) -> None:
    response = infer(client, {"init_image": PHOTO_B64})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    image = cutout(response)
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (320, 240)
    values = np.asarray(image)
    # The fake engine keeps the bright disc and cuts the dark corners.
    assert values[120, 160, 3] == 255
    assert ((values[120, 160, :3] >= 222) & (values[120, 160, :3] <= 238)).all()
    assert values[2, 2, 3] == 0


def test_a_data_url_works_as_well_as_bare_base64(client: TestClient) -> None:
    bare = pixels(infer(client, {"init_image": PHOTO_B64}))
    url = pixels(infer(client, {"init_image": f"data:image/jpeg;base64,{PHOTO_B64}"}))
    assert np.array_equal(bare, url)


def test_post_process_mask_defaults_to_true(client: TestClient) -> None:
    default = pixels(infer(client, {"init_image": PHOTO_B64}))
    on = pixels(infer(client, {"init_image": PHOTO_B64, "post_process_mask": True}))
    off = pixels(infer(client, {"init_image": PHOTO_B64, "post_process_mask": False}))
    assert np.array_equal(default, on)
    assert not np.array_equal(default, off)
    assert CutoutOptions(post_process_mask=True) == DEFAULTS


def test_only_mask_is_a_greyscale_mask(client: TestClient) -> None:
    image = cutout(infer(client, {"init_image": PHOTO_B64, "only_mask": True}))
    assert image.mode == "L" and image.size == (320, 240)
    values = np.asarray(image)
    assert values[120, 160] == 255 and values[2, 2] == 0


def test_bgcolor_fills_the_background(client: TestClient) -> None:
    values = pixels(infer(client, {"init_image": PHOTO_B64, "bgcolor": [0, 0, 255]}))
    assert (values[:, :, 3] == 255).all()
    assert tuple(values[2, 2]) == (0, 0, 255, 255)


def test_bgcolor_with_alpha(client: TestClient) -> None:
    values = pixels(infer(client, {"init_image": PHOTO_B64, "bgcolor": [0, 255, 0, 128]}))
    assert tuple(values[2, 2]) == (0, 255, 0, 128)


def test_alpha_matting_and_its_settings_are_used(client: TestClient) -> None:
    plain = pixels(infer(client, {"init_image": PHOTO_B64, "post_process_mask": False}))
    matted_body = {
        "init_image": PHOTO_B64,
        "post_process_mask": False,
        "alpha_matting": True,
        "alpha_matting_foreground_threshold": 240,
        "alpha_matting_background_threshold": 10,
        "alpha_matting_erode_size": 10,
    }
    matted = pixels(infer(client, matted_body))
    assert matted.shape == plain.shape == (240, 320, 4)
    wider = pixels(infer(client, {**matted_body, "alpha_matting_erode_size": 30}))
    # A wider unknown band solves more pixels: the three answers differ.
    assert not np.array_equal(matted, plain)
    assert not np.array_equal(wider, matted)


@pytest.mark.parametrize(("text", "value"), [("true", True), ("True", True), ("FALSE", False)])
def test_string_booleans_mean_the_same_as_json_ones(
    client: TestClient, text: str, value: bool
) -> None:
    as_text = pixels(infer(client, {"init_image": PHOTO_B64, "only_mask": text}))
    as_json = pixels(infer(client, {"init_image": PHOTO_B64, "only_mask": value}))
    assert np.array_equal(as_text, as_json)
    assert as_text.ndim == (2 if value else 3)


def test_nulls_mean_not_sent_and_unknown_fields_are_ignored(client: TestClient) -> None:
    default = pixels(infer(client, {"init_image": PHOTO_B64}))
    body = {
        "init_image": PHOTO_B64,
        "only_mask": None,
        "post_process_mask": None,
        "bgcolor": None,
        "alpha_matting": None,
        "prompt": "a cat",
        "seed": 4,
    }
    assert np.array_equal(pixels(infer(client, body)), default)


# --- authorization and the header quirks ---------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer "},
        {"authorization": "Bearer sk-wrong"},
        {"authorization": KEY + "x"},
    ],
    ids=["none", "empty", "bearer-empty", "wrong", "wrong-bare"],
)
def test_a_missing_or_wrong_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(PATH, json={"init_image": PHOTO_B64}, headers=headers)
    assert_detail(response, 401, "authorization: invalid or missing header value")


@pytest.mark.parametrize("authorization", [f"Bearer {KEY}", f"bearer {KEY}", KEY])
def test_the_configured_key_is_accepted(client: TestClient, authorization: str) -> None:
    response = client.post(
        PATH, json={"init_image": PHOTO_B64}, headers={"authorization": authorization}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": ""}, {"authorization": "Bearer"}, {"authorization": "Bearer anything"}],
    ids=["none", "empty", "bearer-only", "any-key"],
)
def test_with_no_keys_configured_no_header_is_needed(
    open_client: TestClient, headers: dict[str, str]
) -> None:
    # octoai 1.11's infer() sends no Authorization header; @octoai/client an empty one.
    response = open_client.post(PATH, json={"init_image": PHOTO_B64}, headers=headers)
    assert cutout(response).size == (320, 240)


def test_octoai_client_js_empty_headers(open_client: TestClient) -> None:
    # What @octoai/client sends without a token: empty Accept, X-OctoAI-Async, Authorization.
    del open_client.headers["accept"]
    response = open_client.post(
        PATH,
        content=json.dumps({"init_image": PHOTO_B64}).encode(),
        headers={
            "accept": "",
            "x-octoai-async": "",
            "authorization": "",
            "content-type": "application/json",
        },
    )
    assert response.headers["content-type"] == "application/json"
    assert cutout(response).size == (320, 240)


@pytest.mark.parametrize("accept", ["", "*/*", "application/json", "image/png", "text/html"])
def test_the_reply_is_json_whatever_accept_says(client: TestClient, accept: str) -> None:
    response = infer(client, {"init_image": PHOTO_B64}, {"accept": accept})
    assert response.headers["content-type"] == "application/json"
    assert cutout(response).format == "PNG"


def test_async_header_is_ignored(client: TestClient) -> None:
    response = infer(client, {"init_image": PHOTO_B64}, {"x-octoai-async": "1"})
    assert response.status_code == 200


def test_the_content_type_is_not_checked(client: TestClient) -> None:
    # curl -d sends application/x-www-form-urlencoded unless told otherwise.
    response = client.post(
        PATH,
        content=json.dumps({"init_image": PHOTO_B64}).encode(),
        headers={**AUTH, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("accept_encoding", [None, "identity", "gzip, deflate"])
def test_replies_are_not_compressed(client: TestClient, accept_encoding: str | None) -> None:
    # Nothing in Matte compresses responses (the base64 PNG is compressed already).
    headers = {} if accept_encoding is None else {"accept-encoding": accept_encoding}
    if accept_encoding is None:
        del client.headers["accept-encoding"]
    response = infer(client, {"init_image": PHOTO_B64}, headers)
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)


# --- bad bodies: 422 in FastAPI's shape ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc", "msg", "kind"),
    [
        ({}, ["body", "init_image"], "init_image: is required", "missing"),
        ({"init_image": None}, ["body", "init_image"], "init_image: is required", "missing"),
        ({"image": PHOTO_B64}, ["body", "init_image"], "init_image: is required", "missing"),
        ({"init_image": 5}, ["body", "init_image"], "init_image: must be a string", "type_error"),
        (
            {"init_image": ""},
            ["body", "init_image"],
            "init_image: must not be empty",
            "value_error",
        ),
        (
            {"init_image": "not base64!"},
            ["body", "init_image"],
            "init_image: is not valid base64",
            "value_error",
        ),
        (
            {"init_image": f"data:image/gif;base64,{PHOTO_B64}"},
            ["body", "init_image"],
            "init_image: the data URL must be an image/png, image/jpeg or image/webp image",
            "value_error",
        ),
        (
            {"init_image": "https://example.com/cat.jpg"},
            ["body", "init_image"],
            "init_image: must be base64 or a data: URL; this server takes inline images only",
            "value_error",
        ),
        (
            {"init_image": PHOTO_B64, "only_mask": "yes"},
            ["body", "only_mask"],
            "only_mask: must be true or false",
            "type_error",
        ),
        (
            {"init_image": PHOTO_B64, "post_process_mask": 1},
            ["body", "post_process_mask"],
            "post_process_mask: must be true or false",
            "type_error",
        ),
        (
            {"init_image": PHOTO_B64, "alpha_matting": "on"},
            ["body", "alpha_matting"],
            "alpha_matting: must be true or false",
            "type_error",
        ),
        (
            {"init_image": PHOTO_B64, "bgcolor": [0, 0]},
            ["body", "bgcolor"],
            "bgcolor: must be a list of 3 or 4 integers from 0 to 255, like [255, 0, 0]",
            "type_error",
        ),
        (
            {"init_image": PHOTO_B64, "bgcolor": [0, 0, 300]},
            ["body", "bgcolor"],
            "bgcolor: must be a list of 3 or 4 integers from 0 to 255, like [255, 0, 0]",
            "value_error",
        ),
        (
            {"init_image": PHOTO_B64, "alpha_matting_foreground_threshold": 256},
            ["body", "alpha_matting_foreground_threshold"],
            "alpha_matting_foreground_threshold: must be an integer from 0 to 255",
            "value_error",
        ),
        (
            {"init_image": PHOTO_B64, "alpha_matting_background_threshold": "ten"},
            ["body", "alpha_matting_background_threshold"],
            "alpha_matting_background_threshold: must be an integer from 0 to 255",
            "type_error",
        ),
        (
            {"init_image": PHOTO_B64, "alpha_matting_erode_size": -1},
            ["body", "alpha_matting_erode_size"],
            "alpha_matting_erode_size: must be an integer from 0 to 100",
            "value_error",
        ),
        (
            {"init_image": PHOTO_B64, "alpha_matting_background_threshold": 240},
            ["body", "alpha_matting_foreground_threshold"],
            "alpha_matting_foreground_threshold: must be greater than "
            "alpha_matting_background_threshold",
            "value_error",
        ),
        # Decoded, but not an image the pipeline takes: its errors name the image field.
        (
            {"init_image": base64.b64encode(b"GIF8 not really").decode()},
            ["body", "init_image"],
            "image: must be a jpeg, png or webp image",
            "value_error",
        ),
        (
            {"init_image": base64.b64encode(png(32, 32)).decode()},
            ["body", "init_image"],
            "image: width and height must be at least 64 pixels",
            "value_error",
        ),
        ([], ["body"], "body: must be a JSON object", "type_error"),
        ("init_image", ["body"], "body: must be a JSON object", "type_error"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    client: TestClient, body: object, loc: list[str], msg: str, kind: str
) -> None:
    assert_422(infer(client, body), loc, msg, kind)


@pytest.mark.parametrize(
    ("content", "msg", "kind"),
    [
        (b"", "body: is required: a JSON object", "missing"),
        (b"{not json", "body: is not valid JSON", "json_invalid"),
        (b"[" * 50_000, "body: is not valid JSON", "json_invalid"),
    ],
)
def test_bodies_that_are_not_json_are_422(
    client: TestClient, content: bytes, msg: str, kind: str
) -> None:
    response = client.post(PATH, content=content, headers=AUTH)
    assert_422(response, ["body"], msg, kind)


def test_a_body_over_10_mib_is_413(client: TestClient) -> None:
    # About 7.5 MB of image as base64 is 10 MiB of JSON.
    body = json.dumps({"init_image": "A" * (10 * 1024 * 1024)}).encode()
    response = client.post(PATH, content=body, headers=AUTH)
    assert_detail(response, 413, "body: payloads cannot be larger than 10MiB in size")


def test_a_body_just_under_10_mib_is_read(client: TestClient) -> None:
    padding = 10 * 1024 * 1024 - len(json.dumps({"init_image": PHOTO_B64, "pad": ""}))
    body = json.dumps({"init_image": PHOTO_B64, "pad": "x" * padding}).encode()
    assert len(body) == 10 * 1024 * 1024
    assert infer_raw(client, body).status_code == 200


def infer_raw(client: TestClient, content: bytes) -> httpx.Response:
    response: httpx.Response = client.post(PATH, content=content, headers=AUTH)
    return response


# --- other errors: a `detail` string -------------------------------------------------------


def test_rate_limit_is_429_with_retry_after(client: TestClient, clock: ManualClock) -> None:
    for _ in range(150):
        assert infer(client, {}).status_code == 422
    response = infer(client, {})
    assert_detail(
        response,
        429,
        "You have exceeded the rate limit of 150 requests within a 10 second period,"
        " and have been timed out for 60 seconds.",
    )
    assert response.headers["retry-after"] == "60"


def test_keyless_callers_are_limited_by_address(open_client: TestClient) -> None:
    for _ in range(150):
        assert open_client.post(PATH, json={}).status_code == 422
    assert open_client.post(PATH, json={}).status_code == 429
    # With no keys configured any key is accepted: sending one does not escape the
    # address's budget.
    assert open_client.post(PATH, json={}, headers={"authorization": "k"}).status_code == 429


def test_overload_is_503_with_retry_after(tmp_path: Path, engine: BrightnessEngine) -> None:
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), max_uploads=2)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        wait_ready(client)
        admission = app.state.services.pipeline.admission
        with admission.ticket(), admission.ticket():
            response = infer(client, {"init_image": PHOTO_B64})
        assert_detail(response, 503, "server: too many requests in progress, please retry shortly")
        assert response.headers["retry-after"] == "1"


def test_unexpected_errors_are_a_plain_500(tmp_path: Path) -> None:
    app = create_app(Settings(cache_dir=tmp_path, api_keys=frozenset({KEY})), engine=BrokenEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = infer(client, {"init_image": PHOTO_B64})
    assert_detail(response, 500, "An unexpected server error has occurred, please try again later.")
    assert "deadbeef" not in response.text


def test_requests_are_counted_under_the_route(client: TestClient) -> None:
    infer(client, {"init_image": PHOTO_B64})
    infer(client, {})
    text = client.get("/metrics").text
    assert f'matte_requests_total{{route="{PATH}",status="200"}} 1.0' in text
    assert f'matte_requests_total{{route="{PATH}",status="422"}} 1.0' in text


# --- the dialect's parts -------------------------------------------------------------------


def test_the_dialect_serves_one_post_route() -> None:
    dialect = OctoAIDialect()
    assert dialect.name == "octoai"
    (route,) = dialect.routes()
    assert isinstance(route, Route)
    assert route.path == PATH == "/background-removal"
    assert route.methods == {"POST"}


def rendered(error: ApiError) -> tuple[int, object, dict[str, str]]:
    response = OctoAIDialect().render_error(error, "a" * 32)
    assert response.headers["content-type"] == "application/json"
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


def test_a_bad_requests_headers_are_kept() -> None:
    # A 422 may carry headers of its own (a Retry-After, say): the body changes shape, not them.
    _, _, headers = rendered(BadRequest("a: one", field="a", headers={"retry-after": "3"}))
    assert headers["retry-after"] == "3"


def test_every_bad_request_is_a_422_list() -> None:
    status, body, _ = rendered(BadRequest("a: one", "a: two", field="a", problem="missing"))
    assert status == 422
    assert body == {
        "detail": [
            {"loc": ["body", "a"], "msg": "a: one", "type": "missing"},
            {"loc": ["body", "a"], "msg": "a: two", "type": "missing"},
        ]
    }
    # Without a field, or about the body as a whole, the location is the body.
    assert rendered(BadRequest("x"))[1] == {
        "detail": [{"loc": ["body"], "msg": "x", "type": "value_error"}]
    }
    assert rendered(BadRequest("body: y", field="body"))[1] == {
        "detail": [{"loc": ["body"], "msg": "body: y", "type": "value_error"}]
    }


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    [
        (Unauthorized(), 401, {}),
        (PayloadTooLarge(10 * 1024 * 1024), 413, {}),
        (RateLimited(150, 10, 60, 42), 429, {"retry-after": "42"}),
        (InternalError(), 500, {}),
        (Unavailable("server: busy", 7), 503, {"retry-after": "7"}),
    ],
)
def test_other_errors_are_a_detail_string_with_their_headers(
    error: ApiError, status: int, headers: dict[str, str]
) -> None:
    got_status, body, got_headers = rendered(error)
    assert got_status == status
    assert body == {"detail": error.messages[0]}
    for name, value in headers.items():
        assert got_headers[name] == value
    if not headers:
        assert "retry-after" not in got_headers


def test_several_messages_join_into_one_detail() -> None:
    assert rendered(ApiError("one.", "two."))[1] == {"detail": "one. two."}


def test_cors_preflight_lets_the_js_clients_headers_through(
    tmp_path: Path, engine: BrightnessEngine
) -> None:
    settings = Settings(cache_dir=tmp_path, cors_origins=("https://app.example",))
    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.options(
            PATH,
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, x-octoai-async, "
                "x-stainless-retry-count, content-type",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    allowed = response.headers["access-control-allow-headers"].lower()
    for name in ("x-octoai-async", "x-stainless-retry-count", "x-stainless-os"):
        assert name in allowed
