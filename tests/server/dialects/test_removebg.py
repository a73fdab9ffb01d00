"""The remove.bg v1.0 contract over HTTP, on the fake engine: the three body encodings,
the image or JSON reply, the header set, auth (403), the rate-limit headers, credits
and /v1.0/account, image URLs through the outbound guard, and every error in
remove.bg's `{"errors": [{"title", "code", "detail"}]}` shape."""

from __future__ import annotations

import base64
import io
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
from server.dialects.removebg import ACCOUNT_PATH, PATH, RemoveBgDialect, reply_kind
from server.framing import FOREGROUND_MIN_ALPHA
from server.outbound import Outbound
from server.ratelimit import MemoryStore, StoreUnavailable
from server.services import Services
from server.settings import Settings
from tests.conftest import KEY, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, ManualClock
from tests.hostile.cases import IMAGE_CASES, ImageCase
from tests.local_http import LocalServer, answer
from tests.server.test_outbound import REFUSED_ADDRESS, Resolver

AUTH = {"x-api-key": KEY}
OTHER_KEY = "sk-other-key"
NOW = 1_800_000_000.0  # the dialect's wall clock in these tests
SUBJECT = (60, 40, 140, 120)  # left, top, right, bottom of the bright block in photo()
# The headers of every 200, beside Starlette's and the middleware's own.
RESULT_HEADERS = {
    "x-width",
    "x-height",
    "x-credits-charged",
    "x-type",
    "x-foreground-top",
    "x-foreground-left",
    "x-foreground-width",
    "x-foreground-height",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
}


@pytest.fixture(autouse=True)
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RemoveBgDialect, "clock", staticmethod(lambda: NOW))


def photo(
    width: int = 200, height: int = 160, subject: tuple[int, int, int, int] | None = SUBJECT
) -> bytes:
    """A dark PNG with a bright block: the fake engine's foreground is the block."""
    pixels = np.full((height, width, 3), 20, dtype=np.uint8)
    if subject is not None:
        left, top, right, bottom = subject
        pixels[top:bottom, left:right] = 230
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def alpha_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the pixels that count as subject."""
    rows = np.flatnonzero((alpha >= FOREGROUND_MIN_ALPHA).any(axis=1))
    cols = np.flatnonzero((alpha >= FOREGROUND_MIN_ALPHA).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def header_box(response: httpx.Response) -> tuple[int, int, int, int]:
    names = ("left", "top", "width", "height")
    return tuple(int(response.headers[f"x-foreground-{name}"]) for name in names)  # type: ignore[return-value]


def multipart(*parts: tuple[str, str | None, str | None, bytes]) -> tuple[bytes, str]:
    """A multipart body written out by hand: (name, filename, content type, data) per
    part, a None filename or content type leaving that out (as Python requests and
    form-data do for some parts)."""
    boundary = "matte-removebg-test"
    body = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n"
        body += head.encode() + b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def remove(
    client: TestClient,
    image: bytes | None = None,
    headers: dict[str, str] | None = None,
    /,
    **fields: str,
) -> httpx.Response:
    """A multipart call, as remove.bg's curl sample makes it."""
    files = {"image_file": ("photo.png", image, "image/png")} if image is not None else None
    response: httpx.Response = client.post(
        PATH, headers={**AUTH, **(headers or {})}, files=files, data=fields or None
    )
    return response


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error of a remove.bg error body, once its shape and status are checked."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1
    error: dict[str, Any] = body["errors"][0]
    assert set(error) == {"title", "code", "detail"}
    assert error["code"] == code
    assert error["title"] and error["detail"]
    return error


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def app_with(tmp_path: Path, engine: BrightnessEngine | None = None, **changes: Any) -> Starlette:
    outbound = changes.pop("outbound", None)
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY, OTHER_KEY}), **changes)
    return create_app(
        settings, engine=engine or BrightnessEngine(), clock=ManualClock(), outbound=outbound
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app_with(tmp_path), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


# --- the image reply and its headers -----------------------------------------------------


def test_a_multipart_upload_answers_the_cutout_with_every_header(running: TestClient) -> None:
    response = remove(running, photo(), size="auto", format="png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    cutout = decoded(response.content)
    assert cutout.mode == "RGBA" and cutout.size == (200, 160)
    alpha = np.asarray(cutout)[:, :, 3]
    assert alpha[80, 100] == 255 and alpha[5, 5] == 0
    extra = {name for name in response.headers if name.startswith("x-")}
    assert extra - {"x-request-id", "x-content-type-options"} == RESULT_HEADERS
    assert "retry-after" not in response.headers
    assert (response.headers["x-width"], response.headers["x-height"]) == ("200", "160")
    assert response.headers["x-credits-charged"] == "1"
    assert response.headers["x-type"] == "other"  # type=auto: Matte does not classify
    assert header_box(response) == alpha_box(alpha)
    # The bright block, give or take the mask's soft edge.
    left, top, width, height = header_box(response)
    assert abs(left - 60) <= 2 and abs(top - 40) <= 2
    assert abs(width - 80) <= 4 and abs(height - 80) <= 4
    # Limit 150 (the default) for this key, the first request counted; the window
    # (10 s) frees a place once this request leaves it.
    assert response.headers["x-ratelimit-limit"] == "150"
    assert response.headers["x-ratelimit-remaining"] == "149"
    assert response.headers["x-ratelimit-reset"] == str(int(NOW) + 10)


def test_remaining_counts_down_and_reset_follows_the_oldest_request(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}))
    app = create_app(settings, engine=BrightnessEngine(), clock=clock)
    with TestClient(app) as client:
        wait_ready(client)
        first = remove(client, photo())
        clock.advance(4)
        second = remove(client, photo())
    assert first.headers["x-ratelimit-remaining"] == "149"
    assert second.headers["x-ratelimit-remaining"] == "148"
    # The first request leaves the window 6 s after the second one.
    assert second.headers["x-ratelimit-reset"] == str(int(NOW) + 6)


def test_a_keys_file_rate_is_the_limit_reported(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY} rate=40/1m\n")
    settings = Settings.from_env(
        {
            "MATTE_CACHE_DIR": str(tmp_path),
            "MATTE_DATA_DIR": str(tmp_path / "data"),
            "MATTE_API_KEYS_FILE": str(keys),
        }
    )
    with TestClient(create_app(settings, engine=BrightnessEngine(), clock=ManualClock())) as client:
        wait_ready(client)
        response = remove(client, photo())
    assert response.headers["x-ratelimit-limit"] == "40"
    assert response.headers["x-ratelimit-remaining"] == "39"
    assert response.headers["x-ratelimit-reset"] == str(int(NOW) + 60)


def test_without_an_answer_from_the_store_the_rate_headers_are_left_out(
    running: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(self: MemoryStore, key: str, window_s: float) -> tuple[int, float]:
        raise StoreUnavailable("ConnectionError: refused")

    monkeypatch.setattr(MemoryStore, "usage", down)
    response = remove(running, photo())
    assert response.status_code == 200
    assert not any(name.startswith("x-ratelimit-") for name in response.headers)
    assert response.headers["x-width"] == "200"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "other"),
        ({"type": "auto", "type_level": "2"}, "other"),
        ({"type": "person"}, "person"),
        ({"type": "car_interior"}, "car"),  # type_level 1 (the default) is coarse
        ({"type": "car_part", "type_level": "1"}, "car"),
        ({"type": "car_interior", "type_level": "2"}, "car_interior"),
        ({"type": "car_part", "type_level": "latest"}, "car_part"),
        ({"type": "graphics"}, "graphic"),
        ({"type": "PRODUCT"}, "product"),
        ({"type": "transportation", "type_level": "2"}, "transportation"),
    ],
)
def test_x_type_echoes_the_type(running: TestClient, fields: dict[str, str], expected: str) -> None:
    response = remove(running, photo(), **fields)
    assert response.status_code == 200, response.text
    assert response.headers["x-type"] == expected


def test_type_level_none_sends_no_x_type(running: TestClient) -> None:
    response = remove(running, photo(), type="person", type_level="none")
    assert response.status_code == 200
    assert "x-type" not in response.headers


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "image/*",
        "image/png",
        # axios's default, which remove.bg's own Node sample sent while saving the bytes
        "application/json, text/plain, */*",
        "application/json;q=0.5, image/*",
        "text/html",
    ],
)
def test_the_image_itself_unless_json_is_preferred(running: TestClient, accept: str | None) -> None:
    if accept is None:
        del running.headers["accept"]  # httpx sends `accept: */*` unless told not to
        headers = {}
    else:
        headers = {"accept": accept}
    response = remove(running, photo(), headers, format="png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert decoded(response.content).size == (200, 160)


@pytest.mark.parametrize(
    "accept", ["application/json", "Application/JSON", "application/json;q=1, */*;q=0.1"]
)
def test_json_carries_the_image_and_the_foreground(running: TestClient, accept: str) -> None:
    image = remove(running, photo(), format="png")
    response = remove(running, photo(), {"accept": accept}, format="png")
    assert response.status_code == 200, response.text
    # Labelled JSON exactly: the npm wrapper parses only what says application/json.
    assert response.headers["content-type"] == "application/json"
    data = response.json()["data"]
    assert set(data) == {
        "result_b64",
        "foreground_top",
        "foreground_left",
        "foreground_width",
        "foreground_height",
    }
    assert base64.b64decode(data["result_b64"], validate=True) == image.content
    box = (data["foreground_left"], data["foreground_top"])
    size = (data["foreground_width"], data["foreground_height"])
    assert (*box, *size) == header_box(response) == header_box(image)
    assert response.headers["x-width"] == "200"


def test_reply_kind_weighs_the_accept_header() -> None:
    assert reply_kind(None) == reply_kind("") == "image"
    assert reply_kind("application/json") == "json"
    assert reply_kind("application/json, image/*;q=0.9") == "json"
    assert reply_kind("image/*, application/json") == "image"
    assert reply_kind("application/json;q=oops") == "image"  # a q it cannot read is 0


# --- the three body encodings and the three sources ---------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "image/png"])
@pytest.mark.parametrize("filename", [None, "photo.png", "blob"])
def test_the_file_part_may_come_with_or_without_a_name_and_type(
    running: TestClient, content_type: str | None, filename: str | None
) -> None:
    body, header = multipart(
        ("size", None, None, b"auto"), ("image_file", filename, content_type, photo())
    )
    response = running.post(PATH, headers={**AUTH, "content-type": header}, content=body)
    assert response.status_code == 200, response.text
    assert header_box(response) == header_box(remove(running, photo()))


def test_base64_in_a_urlencoded_body(running: TestClient) -> None:
    encoded = base64.b64encode(photo()).decode()
    response = running.post(PATH, headers=AUTH, data={"image_file_b64": encoded, "size": "auto"})
    assert response.status_code == 200, response.text
    assert response.content == remove(running, photo(), size="auto").content


def test_unescaped_plus_signs_in_urlencoded_base64_are_forgiven(running: TestClient) -> None:
    # A body built by hand, its '+' not written as %2B: form decoding makes it a space.
    encoded = base64.b64encode(photo()).decode()
    assert "+" in encoded
    body = "size=auto&image_file_b64=" + encoded.replace("/", "%2F").replace("=", "%3D")
    response = running.post(
        PATH,
        headers={**AUTH, "content-type": "application/x-www-form-urlencoded"},
        content=body.encode(),
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_base64_in_a_json_body(running: TestClient, content_type: str | None) -> None:
    encoded = base64.b64encode(photo()).decode()
    body = f'{{"image_file_b64": "{encoded}", "size": "auto", "crop": false}}'.encode()
    headers = {**AUTH} if content_type is None else {**AUTH, "content-type": content_type}
    response = running.post(PATH, headers=headers, content=body)
    assert response.status_code == 200, response.text
    assert response.content == remove(running, photo(), size="auto").content


def test_a_data_url_is_taken_as_base64(running: TestClient) -> None:
    url = "data:image/png;base64," + base64.b64encode(photo()).decode()
    response = running.post(PATH, headers=AUTH, json={"image_file_b64": url})
    assert response.status_code == 200, response.text


def test_json_values_of_other_types_are_read_as_text(running: TestClient) -> None:
    encoded = base64.b64encode(photo()).decode()
    fields = {"shadow_opacity": 50, "add_shadow": True, "crop": False, "scale": None}
    response = running.post(PATH, headers=AUTH, json={"image_file_b64": encoded, **fields})
    assert response.status_code == 200, response.text
    for value in ([1], {"a": 1}):
        refused = running.post(PATH, headers=AUTH, json={"image_file_b64": encoded, "size": value})
        assert error_of(refused, 400, "invalid_size")["detail"] == "size: must be a string"


def test_a_body_that_is_not_json_is_refused(running: TestClient) -> None:
    response = running.post(
        PATH, headers={**AUTH, "content-type": "application/json"}, content=b"{nope"
    )
    assert error_of(response, 400, "invalid_body")["detail"] == "body: is not valid JSON"


def test_no_source_is_missing_source(running: TestClient) -> None:
    for response in (
        remove(running, None, size="auto"),
        remove(running, b""),  # an empty file input, as a browser form sends it
        running.post(PATH, headers=AUTH, data={"image_url": "", "size": "auto"}),
        running.post(PATH, headers=AUTH, json={"image_file_b64": None}),
        running.post(PATH, headers=AUTH),
    ):
        error = error_of(response, 400, "missing_source")
        assert error["title"] == "No image given"


def test_two_sources_are_multiple_sources(running: TestClient) -> None:
    encoded = base64.b64encode(photo()).decode()
    response = remove(running, photo(), image_file_b64=encoded)
    error = error_of(response, 400, "multiple_sources")
    assert error["detail"].startswith("image_file, image_file_b64: send only one")


def test_a_file_field_outside_multipart_is_refused(running: TestClient) -> None:
    response = running.post(PATH, headers=AUTH, json={"image_file": "photo.png"})
    error_of(response, 400, "invalid_image_file")


def test_a_repeated_field_is_refused(running: TestClient) -> None:
    body, header = multipart(
        ("size", None, None, b"auto"),
        ("size", None, None, b"preview"),
        ("image_file", "a.png", None, photo()),
    )
    response = running.post(PATH, headers={**AUTH, "content-type": header}, content=body)
    assert error_of(response, 400, "invalid_size")["detail"] == "size: must be sent only once"
    urlencoded = running.post(
        PATH,
        headers={**AUTH, "content-type": "application/x-www-form-urlencoded"},
        content=b"size=auto&size=hd&image_url=x",
    )
    error_of(urlencoded, 400, "invalid_size")


def test_bad_base64_names_its_field(running: TestClient) -> None:
    response = running.post(PATH, headers=AUTH, data={"image_file_b64": "!!not base64!!"})
    error_of(response, 400, "invalid_image_file_b64")


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["X-Api-Key", "x-api-key", "X-API-KEY", "X-API-Key"])
def test_the_key_header_in_any_case(running: TestClient, name: str) -> None:
    response = running.post(
        PATH, headers={name: KEY}, files={"image_file": ("p.png", photo(), "image/png")}
    )
    assert response.status_code == 200, response.text


def test_a_missing_key_is_403(running: TestClient) -> None:
    for headers in ({}, {"x-api-key": ""}, {"x-api-key": "  "}, {"authorization": f"Bearer {KEY}"}):
        response = running.post(PATH, headers=headers, data={"image_url": "x"})
        assert error_of(response, 403, "auth_failed")["title"] == "Missing API Key"


def test_a_wrong_key_is_403(running: TestClient) -> None:
    response = running.post(PATH, headers={"x-api-key": "sk-wrong"}, data={"image_url": "x"})
    assert error_of(response, 403, "auth_failed")["title"] == "API Key invalid"
    account = running.get(ACCOUNT_PATH, headers={"x-api-key": "sk-wrong"})
    assert error_of(account, 403, "auth_failed")["title"] == "API Key invalid"


def test_the_key_is_checked_before_the_body_is_read(running: TestClient) -> None:
    # An invalid body with a wrong key: the key speaks first.
    response = running.post(
        PATH, headers={"x-api-key": "sk-wrong", "content-type": "application/json"}, content=b"{"
    )
    error_of(response, 403, "auth_failed")


# --- the rate limit -------------------------------------------------------------------------


def test_past_the_limit_a_429_with_retry_after_and_the_rate_headers(tmp_path: Path) -> None:
    app = app_with(tmp_path, rate_limit_requests=2, rate_limit_timeout_s=30)
    with TestClient(app) as client:
        wait_ready(client)
        answers = [remove(client, photo()) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[1].headers["x-ratelimit-remaining"] == "0"
    limited = answers[2]
    error = error_of(limited, 429, "rate_limit_exceeded")
    assert error["title"] == "Rate limit exceeded"
    assert error["detail"].startswith("You have exceeded the rate limit of 2 requests")
    assert limited.headers["retry-after"] == "30"
    assert limited.headers["x-ratelimit-limit"] == "2"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"] == str(int(NOW) + 30)


# --- credits and the account ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "credits"),
    [
        (None, "0.25"),
        ("preview", "0.25"),
        ("small", "0.25"),
        ("regular", "0.25"),
        ("Preview", "0.25"),
        ("medium", "1"),
        ("hd", "1"),
        ("full", "1"),
        ("4k", "1"),
        ("auto", "1"),
        ("50MP", "1"),
    ],
)
def test_credits_charged_by_size(running: TestClient, size: str | None, credits: str) -> None:
    response = remove(running, photo(), **({} if size is None else {"size": size}))
    assert response.status_code == 200, response.text
    assert response.headers["x-credits-charged"] == credits


def account(client: TestClient, key: str = KEY) -> dict[str, Any]:
    response = client.get(ACCOUNT_PATH, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    # Exactly these keys: remove.bg's Ruby gem builds its objects from them by keyword.
    assert set(body) == {"data"} and set(body["data"]) == {"attributes"}
    attributes = body["data"]["attributes"]
    assert set(attributes) == {"credits", "api"}
    assert set(attributes["credits"]) == {"total", "subscription", "payg", "enterprise"}
    assert set(attributes["api"]) == {"free_calls", "sizes"}
    assert attributes["api"]["sizes"] == "all"
    result: dict[str, Any] = attributes
    return result


def test_the_account_reports_the_credits_counted_for_the_key(running: TestClient) -> None:
    assert account(running)["credits"] == {
        "total": 0,
        "subscription": 0,
        "payg": 0,
        "enterprise": 0,
    }
    for size in ("preview", "auto", "hd"):
        assert remove(running, photo(), size=size).status_code == 200
    # Refused calls cost nothing: no foreground, a bad field.
    assert remove(running, photo(subject=None)).status_code == 400
    assert remove(running, photo(), size="huge").status_code == 400
    attributes = account(running)
    assert attributes["credits"] == {
        "total": 2.25,
        "subscription": 0,
        "payg": 2.25,
        "enterprise": 0,
    }
    # Each call counted against the key's window (150): 6 calls and this one.
    assert attributes["api"]["free_calls"] == 150 - 7
    # Another key has its own count.
    assert account(running, OTHER_KEY)["credits"]["total"] == 0
    assert remove(running, photo(), {"x-api-key": OTHER_KEY}).status_code == 200
    assert account(running, OTHER_KEY)["credits"]["total"] == 0.25


def test_whole_credits_are_written_as_integers(running: TestClient) -> None:
    for _ in range(4):
        assert remove(running, photo()).status_code == 200
    assert account(running)["credits"]["total"] == 1
    assert isinstance(account(running)["credits"]["total"], int)


def test_credits_are_not_the_imgproc_dialects_usage(running: TestClient) -> None:
    assert remove(running, photo(), size="auto").status_code == 200
    usage = running.get("/v1/usage", headers=AUTH)
    assert usage.status_code == 200 and usage.json() == {"data": []}


def test_the_account_needs_a_key(running: TestClient) -> None:
    error_of(running.get(ACCOUNT_PATH), 403, "auth_failed")


def test_a_failing_storage_still_answers_the_image(
    running: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from server.storage import StorageError

    storage, _ = services_of(running).stored()

    def broken(*args: object) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(storage, "count_usage", broken)
    response = remove(running, photo())
    assert response.status_code == 200
    assert "credits could not be counted" in caplog.text


# --- image URLs, through the outbound guard only --------------------------------------------


def test_urls_are_refused_while_the_guard_is_off(running: TestClient) -> None:
    response = running.post(PATH, headers=AUTH, data={"image_url": "https://example.com/a.png"})
    error = error_of(response, 400, "invalid_image_url")
    assert error["detail"] == "image_url: URLs are turned off on this server; send the data instead"
    background = remove(running, photo(), bg_image_url="https://example.com/b.png")
    error_of(background, 400, "invalid_bg_image_url")


@pytest.fixture
def images_host() -> Iterator[LocalServer]:
    def script(received: Any) -> Any:
        if received.path == "/missing.png":
            return answer(404, b"no")(received)
        return answer(200, photo(), content_type="image/png")(received)

    with LocalServer(script) as running_host:
        yield running_host


def fetching(tmp_path: Path, host: LocalServer) -> Starlette:
    outbound = Outbound(
        True,
        resolver=Resolver({"images.example": ["127.0.0.1"]}),
        allow_for_tests={("127.0.0.1", host.port)},
    )
    return app_with(tmp_path, outbound=outbound)


def test_an_image_url_is_fetched_through_the_guard(
    tmp_path: Path, images_host: LocalServer
) -> None:
    with TestClient(fetching(tmp_path, images_host)) as client:
        wait_ready(client)
        url = f"http://images.example:{images_host.port}/photo.png"
        # The Ruby gem's URL call: urlencoded, size=auto.
        response = client.post(PATH, headers=AUTH, data={"image_url": url, "size": "auto"})
        assert response.status_code == 200, response.text
        assert response.content == remove(client, photo(), size="auto").content
        assert images_host.received[0].path == "/photo.png"
        missing = client.post(
            PATH,
            headers=AUTH,
            data={"image_url": f"http://images.example:{images_host.port}/missing.png"},
        )
        error = error_of(missing, 400, "failed_to_download_image")
        # remove.bg's own words, which the Ruby gem's tests recorded.
        assert error["title"] == "Failed to download image from given image_url: HTTP Status 404"
        loopback = client.post(PATH, headers=AUTH, data={"image_url": "http://127.0.0.1:9/"})
        assert (
            error_of(loopback, 400, "invalid_image_url")["detail"]
            == f"image_url: {REFUSED_ADDRESS}"
        )


def test_a_background_url_is_fetched_through_the_guard(
    tmp_path: Path, images_host: LocalServer
) -> None:
    with TestClient(fetching(tmp_path, images_host)) as client:
        wait_ready(client)
        url = f"http://images.example:{images_host.port}/background.png"
        response = remove(client, photo(), bg_image_url=url, format="png")
        assert response.status_code == 200, response.text
        assert images_host.received[0].path == "/background.png"
        missing = remove(
            client, photo(), bg_image_url=f"http://images.example:{images_host.port}/missing.png"
        )
        error_of(missing, 400, "failed_to_download_bg_image")


# --- errors in remove.bg's shape ------------------------------------------------------------


def test_a_body_over_the_limit_is_file_too_large(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, max_body_bytes=4096)) as client:
        wait_ready(client)
        response = remove(client, photo(400, 400) + b"\0" * 8192)
    error = error_of(response, 400, "file_too_large")
    assert error["title"] == "File too large"
    assert error["detail"] == "body: payloads cannot be larger than 4096 bytes in size"


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buffer, "GIF")
    return buffer.getvalue()


def animated_png() -> bytes:
    frames = [Image.new("RGB", (100, 100), (value, 0, 0)) for value in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is not an image", "invalid_file_type"),
        (gif(), "invalid_file_type"),
        (animated_png(), "invalid_file_type"),
        (photo()[:200], "failed_to_read_image"),
        (photo(40, 40, subject=(10, 10, 30, 30)), "invalid_dimensions"),
        (photo(2200, 2000, subject=(100, 100, 900, 900)), "resolution_too_high"),
    ],
    ids=["text", "gif", "apng", "truncated", "too-small", "too-large"],
)
def test_an_image_the_pipeline_refuses_gets_its_code(
    running: TestClient, data: bytes, code: str
) -> None:
    error = error_of(remove(running, data), 400, code)
    assert error["detail"].startswith("image_file: ")


def test_a_background_image_the_pipeline_refuses_names_its_field(running: TestClient) -> None:
    body, header = multipart(
        ("image_file", "a.png", None, photo()),
        ("bg_image_file", "b.gif", None, gif()),
    )
    response = running.post(PATH, headers={**AUTH, "content-type": header}, content=body)
    error = error_of(response, 400, "invalid_file_type")
    expected = "bg_image_file: gif is not supported: must be a jpeg, png or webp image"
    assert error["detail"] == expected


def test_an_empty_mask_is_unknown_foreground(running: TestClient) -> None:
    response = remove(running, photo(subject=None))
    error = error_of(response, 400, "unknown_foreground")
    assert error["title"] == "Could not identify foreground in image"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "huge"),
        ("type", "furniture"),
        ("type_level", "3"),
        ("format", "gif"),
        ("channels", "rgb"),
        ("crop", "maybe"),
        ("crop_margin", "-10px"),
        ("crop_margin", "1px 2px 3px"),
        ("roi", "0 0 100%"),
        ("roi", "50% 0 10% 100%"),
        ("scale", "5%"),
        ("scale", "200%"),
        ("position", "left"),
        ("bg_color", "not-a-colour"),
        ("add_shadow", "sometimes"),
        ("shadow_type", "long"),
        ("shadow_opacity", "101"),
        ("shadow_opacity", "-1"),
        ("semitransparency", "half"),
    ],
)
def test_a_bad_value_is_invalid_field(running: TestClient, field: str, value: str) -> None:
    error = error_of(remove(running, photo(), **{field: value}), 400, f"invalid_{field}")
    assert error["detail"].startswith(f"{field}: ")
    assert error["title"] == f"Invalid {field}"


def test_two_backgrounds_are_refused(running: TestClient) -> None:
    response = remove(running, photo(), bg_color="red", bg_image_url="https://example.com/b.png")
    error = error_of(response, 400, "multiple_bg_sources")
    assert error["detail"].startswith("bg_color, bg_image_url: send only one")


def test_a_model_failure_is_a_500_that_shows_nothing(tmp_path: Path) -> None:
    with TestClient(
        app_with(tmp_path, engine=BrokenEngine()), raise_server_exceptions=False
    ) as client:
        wait_ready(client)
        response = remove(client, photo())
    error = error_of(response, 500, "internal_error")
    assert "secret" not in response.text and "CUDA" not in response.text
    assert error["title"] == "Internal server error"


def test_while_the_model_loads_a_503_with_retry_after(running: TestClient) -> None:
    services_of(running).readiness.state = "loading"
    response = remove(running, photo())
    error_of(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "5"


# --- the hostile-input corpus (tests/hostile/cases.py) on this route --------------------------

REQUEST_BOUND_S = 2.0  # as tests/hostile/test_corpus.py bounds each of its requests
IMAGE_CODES = {
    "invalid_file_type",
    "invalid_dimensions",
    "resolution_too_high",
    "failed_to_read_image",
}


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[case.name for case in IMAGE_CASES])
def test_every_hostile_image_case(running: TestClient, case: ImageCase) -> None:
    started = time.perf_counter()
    response = running.post(
        PATH,
        headers=AUTH,
        files={"image_file": (case.filename, case.data, "application/octet-stream")},
        data={"size": "auto", "format": "png"},
    )
    assert time.perf_counter() - started < REQUEST_BOUND_S
    if case.refusal is None:
        assert response.status_code == 200, response.text
        assert decoded(response.content).size == case.size
    else:
        body = response.json()
        assert response.status_code == 400 and body["errors"][0]["code"] in IMAGE_CODES, body
        # The decoder's message, naming the field the client sent.
        assert body["errors"][0]["detail"] == "image_file" + case.refusal.removeprefix("image")
    assert running.get("/healthz").status_code == 200
