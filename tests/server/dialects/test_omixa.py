"""The Omixa `POST /api/v1/images/generations` contract over HTTP, on the fake engine.

Requests are what the OpenAI SDK sends for `images.generate(model=..., prompt="",
output_format=..., extra_body={"input_images": [...]})`; errors are OpenAI's
`{"error": {...}}` with the statuses and retry headers its SDK acts on.
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
from server.dialects import omixa
from server.dialects.omixa import MODEL, PATH, OmixaDialect, error_type
from server.errors import (
    ApiError,
    BadRequest,
    InternalError,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from server.settings import Settings
from tests.conftest import ID, KEY, jpeg, png, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, ManualClock

AUTH = {"authorization": f"Bearer {KEY}"}
PHOTO = jpeg(320, 240)
PHOTO_URL = "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode()
NOW = 1_767_225_600.75  # 2026-01-01T00:00:00.75Z


def request_body(url: str = PHOTO_URL, **fields: object) -> dict[str, object]:
    """What the OpenAI SDK posts, extra_body merged in."""
    return {
        "model": MODEL,
        "prompt": "",
        "input_images": [{"type": "image_url", "image_url": {"url": url}}],
        **fields,
    }


def generate(
    client: TestClient, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    response: httpx.Response = client.post(PATH, json=body, headers={**AUTH, **(headers or {})})
    return response


def image_of(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    b64 = response.json()["data"][0]["b64_json"]
    image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    image.load()
    return image


def assert_error(
    response: httpx.Response,
    status: int,
    message: str,
    kind: str,
    code: str,
    param: str | None = None,
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {"message": message, "type": kind, "param": param, "code": code}
    }
    assert ID.fullmatch(response.headers["x-request-id"])


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OmixaDialect, "clock", staticmethod(lambda: NOW))


# --- success -------------------------------------------------------------------------------


def test_the_openai_shaped_reply(client: TestClient) -> None:
    response = generate(client, request_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"created", "data", "usage"}
    assert body["created"] == 1_767_225_600  # unix seconds, an integer
    assert body["usage"] == {"billed_amount": "0.000000"}
    assert len(body["data"]) == 1
    assert set(body["data"][0]) == {"b64_json", "url"}
    assert body["data"][0]["url"] is None
    # Bare base64, not a data URL.
    assert body["data"][0]["b64_json"].startswith("iVBORw0KGgo")
    image = image_of(response)
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (320, 240)
    values = np.asarray(image)
    assert values[120, 160, 3] == 255 and values[2, 2, 3] == 0


def test_created_is_the_wall_clock_now() -> None:
    assert OmixaDialect.clock() == NOW


def test_created_uses_the_real_clock_by_default(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()
    import time

    before = int(time.time())
    created = generate(client, request_body()).json()["created"]
    assert before <= created <= int(time.time())


@pytest.mark.parametrize(
    ("output_format", "pillow"),
    [(None, "PNG"), ("png", "PNG"), ("webp", "WEBP"), ("WEBP", "WEBP"), ("Png", "PNG")],
)
def test_output_format(client: TestClient, output_format: str | None, pillow: str) -> None:
    response = generate(client, request_body(output_format=output_format))
    image = image_of(response)
    assert image.format == pillow and image.mode == "RGBA"


@pytest.mark.parametrize(
    "url",
    [
        PHOTO_URL,
        "data:image/png;base64," + base64.b64encode(png(80, 80)).decode(),
        "data:image/webp;base64," + base64.b64encode(png(80, 80)).decode(),
        base64.b64encode(PHOTO).decode(),  # bare base64 is forgiven
    ],
    ids=["jpeg", "png", "webp-label", "bare"],
)
def test_inline_images(client: TestClient, url: str) -> None:
    assert image_of(generate(client, request_body(url))).mode == "RGBA"


def test_prompt_and_unknown_fields_are_ignored(client: TestClient) -> None:
    plain = np.asarray(image_of(generate(client, request_body())))
    extra = request_body(
        prompt="remove the background please",
        n=1,
        size="1024x1024",
        response_format="b64_json",
        only_mask=True,  # not an Omixa field: ignored, not applied
        user="someone",
    )
    assert np.array_equal(np.asarray(image_of(generate(client, extra))), plain)


def test_the_reply_is_json_whatever_accept_says(client: TestClient) -> None:
    del client.headers["accept"]
    for accept in ("", "application/json", "*/*", "image/png"):
        response = generate(client, request_body(), {"accept": accept})
        assert response.headers["content-type"] == "application/json"
        assert image_of(response).format == "PNG"
    assert image_of(generate(client, request_body())).format == "PNG"  # no Accept at all


@pytest.mark.parametrize("accept_encoding", [None, "identity", "gzip, deflate, br"])
def test_replies_are_not_compressed(client: TestClient, accept_encoding: str | None) -> None:
    headers = {} if accept_encoding is None else {"accept-encoding": accept_encoding}
    if accept_encoding is None:
        del client.headers["accept-encoding"]
    response = generate(client, request_body(), headers)
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)


# --- authorization -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": ""}, {"authorization": "Bearer "}, {"authorization": "Bearer nope"}],
    ids=["none", "empty", "bearer-empty", "wrong"],
)
def test_a_missing_or_wrong_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(PATH, json=request_body(), headers=headers)
    assert_error(
        response,
        401,
        "authorization: invalid or missing header value",
        "authentication_error",
        "unauthorized",
    )


def test_with_no_keys_configured_a_key_is_still_needed(
    tmp_path: Path, engine: BrightnessEngine
) -> None:
    # The open keyring takes any key, but the OpenAI SDK always sends one: no exception here.
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        wait_ready(client)
        assert client.post(PATH, json=request_body()).status_code == 401
        response = client.post(PATH, json=request_body(), headers={"authorization": "Bearer x"})
        assert response.status_code == 200


# --- bad bodies: 400 -----------------------------------------------------------------------

URL_FIELD = "input_images[0].image_url.url"


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (
            {"prompt": "", "input_images": []},
            f"model: must be {MODEL}, the only model this server runs",
            "model",
        ),
        (
            request_body(model="dall-e-3"),
            f"model: must be {MODEL}, the only model this server runs",
            "model",
        ),
        (
            request_body(model=MODEL.upper()),
            f"model: must be {MODEL}, the only model this server runs",
            "model",
        ),
        (
            request_body(model=["stability-remove-background"]),
            f"model: must be {MODEL}, the only model this server runs",
            "model",
        ),
        ({"model": MODEL, "prompt": ""}, "input_images: is required", "input_images"),
        (request_body(input_images=None), "input_images: is required", "input_images"),
        (request_body(input_images=PHOTO_URL), "input_images: must be a list", "input_images"),
        (
            request_body(input_images=[]),
            "input_images: must hold exactly one image",
            "input_images",
        ),
        (
            request_body(
                input_images=[
                    {"type": "image_url", "image_url": {"url": PHOTO_URL}},
                    {"type": "image_url", "image_url": {"url": PHOTO_URL}},
                ]
            ),
            "input_images: must hold exactly one image",
            "input_images",
        ),
        (
            request_body(input_images=[PHOTO_URL]),
            "input_images[0]: must be an object",
            "input_images[0]",
        ),
        (
            request_body(input_images=[{"image_url": {"url": PHOTO_URL}}]),
            'input_images[0].type: must be "image_url"',
            "input_images[0].type",
        ),
        (
            request_body(input_images=[{"type": "input_image", "image_url": {"url": PHOTO_URL}}]),
            'input_images[0].type: must be "image_url"',
            "input_images[0].type",
        ),
        (
            request_body(input_images=[{"type": "image_url"}]),
            "input_images[0].image_url: is required",
            "input_images[0].image_url",
        ),
        (
            request_body(input_images=[{"type": "image_url", "image_url": PHOTO_URL}]),
            "input_images[0].image_url: must be an object",
            "input_images[0].image_url",
        ),
        (
            request_body(input_images=[{"type": "image_url", "image_url": {}}]),
            f"{URL_FIELD}: is required",
            URL_FIELD,
        ),
        (
            request_body(input_images=[{"type": "image_url", "image_url": {"url": 7}}]),
            f"{URL_FIELD}: must be a string",
            URL_FIELD,
        ),
        (
            request_body("https://example.com/cat.png"),
            f"{URL_FIELD}: must be base64 or a data: URL; this server takes inline images only",
            URL_FIELD,
        ),
        (
            request_body("http://127.0.0.1/cat.png"),
            f"{URL_FIELD}: must be base64 or a data: URL; this server takes inline images only",
            URL_FIELD,
        ),
        (
            request_body("data:image/png;base64,???"),
            f"{URL_FIELD}: is not valid base64",
            URL_FIELD,
        ),
        (
            request_body("data:image/gif;base64,R0lGODlh"),
            f"{URL_FIELD}: the data URL must be an image/png, image/jpeg or image/webp image",
            URL_FIELD,
        ),
        (
            request_body("data:image/png;base64," + base64.b64encode(b"not an image").decode()),
            "image: must be a jpeg, png or webp image",
            URL_FIELD,
        ),
        (
            request_body(output_format="jpeg"),
            "output_format: must be one of png, webp",
            "output_format",
        ),
        (
            request_body(output_format=1),
            "output_format: must be a string",
            "output_format",
        ),
        ([request_body()], "body: must be a JSON object", "body"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    client: TestClient, body: object, message: str, param: str
) -> None:
    assert_error(
        generate(client, body), 400, message, "invalid_request_error", "bad_request", param
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "body: is required: a JSON object"), (b'{"model": ', "body: is not valid JSON")],
)
def test_bodies_that_are_not_json_are_400(client: TestClient, content: bytes, message: str) -> None:
    response = client.post(PATH, content=content, headers=AUTH)
    assert_error(response, 400, message, "invalid_request_error", "bad_request", "body")


def test_the_model_is_checked_before_the_image(client: TestClient) -> None:
    response = generate(client, {"model": "gpt-image-1", "input_images": "junk"})
    assert response.json()["error"]["param"] == "model"


def test_a_body_over_10_mib_is_413(client: TestClient) -> None:
    body = request_body("data:image/png;base64," + "A" * (10 * 1024 * 1024))
    response = generate(client, body)
    assert_error(
        response,
        413,
        "body: payloads cannot be larger than 10MiB in size",
        "invalid_request_error",
        "payload_too_large",
    )


# --- rate limits, overload, failures -------------------------------------------------------


def limited_app(tmp_path: Path, clock: ManualClock, timeout_s: float) -> TestClient:
    settings = Settings(
        cache_dir=tmp_path,
        api_keys=frozenset({KEY}),
        rate_limit_requests=2,
        rate_limit_timeout_s=timeout_s,
    )
    return TestClient(create_app(settings, engine=BrightnessEngine(), clock=clock))


def test_a_lock_out_the_sdk_sleeps_through_has_no_should_retry(
    tmp_path: Path, clock: ManualClock
) -> None:
    with limited_app(tmp_path, clock, 60) as client:
        wait_ready(client)
        for _ in range(2):
            generate(client, {})
        response = generate(client, {})
        assert_error(
            response,
            429,
            "You have exceeded the rate limit of 2 requests within a 10 second period,"
            " and have been timed out for 60 seconds.",
            "rate_limit_error",
            "rate_limit_exceeded",
        )
        assert response.headers["retry-after"] == "60"
        assert "x-should-retry" not in response.headers


def test_a_longer_lock_out_says_do_not_retry(tmp_path: Path, clock: ManualClock) -> None:
    with limited_app(tmp_path, clock, 61) as client:
        wait_ready(client)
        for _ in range(2):
            generate(client, {})
        response = generate(client, {})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "61"
        assert response.headers["x-should-retry"] == "false"
        clock.advance(1)
        # 60 s left: the SDK's own sleep covers it, so it may retry.
        later = generate(client, {})
        assert later.status_code == 429 and later.headers["retry-after"] == "60"
        assert "x-should-retry" not in later.headers


def test_overload_is_503_with_retry_after(tmp_path: Path, engine: BrightnessEngine) -> None:
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), max_uploads=2)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        wait_ready(client)
        admission = app.state.services.pipeline.admission
        with admission.ticket(), admission.ticket():
            response = generate(client, request_body())
        assert_error(
            response,
            503,
            "server: too many requests in progress, please retry shortly",
            "server_error",
            "service_unavailable",
        )
        assert response.headers["retry-after"] == "1"
        assert "x-should-retry" not in response.headers


def test_unexpected_errors_are_a_plain_500(tmp_path: Path) -> None:
    app = create_app(Settings(cache_dir=tmp_path, api_keys=frozenset({KEY})), engine=BrokenEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = generate(client, request_body())
    assert_error(
        response,
        500,
        "An unexpected server error has occurred, please try again later.",
        "server_error",
        "internal_error",
    )
    assert "deadbeef" not in response.text


def test_requests_are_counted_under_the_route(client: TestClient) -> None:
    generate(client, request_body())
    generate(client, {})
    text = client.get("/metrics").text
    assert f'matte_requests_total{{route="{PATH}",status="200"}} 1.0' in text
    assert f'matte_requests_total{{route="{PATH}",status="400"}} 1.0' in text


# --- the dialect's parts -------------------------------------------------------------------


def test_the_dialect_serves_one_post_route() -> None:
    dialect = OmixaDialect()
    assert dialect.name == "omixa"
    (route,) = dialect.routes()
    assert isinstance(route, Route)
    assert route.path == PATH == "/api/v1/images/generations"
    assert route.methods == {"POST"}
    assert MODEL == "stability-remove-background"
    assert omixa.SDK_MAX_RETRY_AFTER_S == 60


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "invalid_request_error"),
        (413, "invalid_request_error"),
        (429, "rate_limit_error"),
        (499, "invalid_request_error"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_error_type(status: int, kind: str) -> None:
    assert error_type(status) == kind


@pytest.mark.parametrize(
    ("error", "param", "headers"),
    [
        (BadRequest("a: b", field="a"), "a", {}),
        (BadRequest("x"), None, {}),
        (Unauthorized(), None, {}),
        (PayloadTooLarge(1024), None, {}),
        (RateLimited(1, 1, 600, 600), None, {"retry-after": "600", "x-should-retry": "false"}),
        (RateLimited(1, 1, 60, 60), None, {"retry-after": "60"}),
        (InternalError(), None, {}),
        (Unavailable("server: busy", 9), None, {"retry-after": "9"}),
    ],
)
def test_render_error(error: ApiError, param: str | None, headers: dict[str, str]) -> None:
    response = OmixaDialect().render_error(error, "a" * 32)
    assert response.status_code == error.status
    assert json.loads(bytes(response.body)) == {
        "error": {
            "message": error.messages[0],
            "type": error_type(error.status),
            "param": param,
            "code": error.name,
        }
    }
    for name, value in headers.items():
        assert response.headers[name] == value
    if "x-should-retry" not in headers:
        assert "x-should-retry" not in response.headers
    if not headers:
        assert "retry-after" not in response.headers


def test_render_error_joins_messages_and_leaves_the_errors_headers_alone() -> None:
    error = RateLimited(1, 1, 600, 600)
    response = OmixaDialect().render_error(error, "a" * 32)
    assert response.headers["x-should-retry"] == "false"
    assert error.headers == {"retry-after": "600"}
    joined = OmixaDialect().render_error(ApiError("one.", "two."), "a" * 32)
    assert json.loads(bytes(joined.body))["error"]["message"] == "one. two."
