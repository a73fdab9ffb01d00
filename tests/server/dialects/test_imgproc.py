"""The IMG Processing dialect over the fake engine and a real SQLite storage: every
route, the Image object, problem-details errors, ownership, pagination, publishing,
usage, URL fetching through the guard and retention."""

from __future__ import annotations

import datetime as dt
import io
import re
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
from server.dialects import imgproc, imgproc_fields
from server.outbound import Outbound
from server.services import Services
from server.settings import Settings
from server.storage import StorageError
from tests.conftest import KEY, PATH, jpeg, png, wait_ready
from tests.fakes import BrightnessEngine
from tests.local_http import LocalServer, answer
from tests.server.test_imaging import with_scans
from tests.server.test_outbound import REFUSED_ADDRESS, Resolver

OTHER_KEY = "live_other-key"
TEST_KEY = "test_sandbox-key"
AUTH = {"x-api-key": KEY}
OTHER = {"x-api-key": OTHER_KEY}
ID = re.compile(r"image_[a-z0-9]{24}")
CREATED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DOCS = "https://docs.img-processing.com/api-reference/errors#"
SOS = b"\xff\xda"  # a JPEG's start-of-scan marker


def app_with(tmp_path: Path, **changes: Any) -> Starlette:
    outbound = changes.pop("outbound", None)
    settings = Settings(
        cache_dir=tmp_path, api_keys=frozenset({KEY, OTHER_KEY, TEST_KEY}), **changes
    )
    return create_app(settings, engine=BrightnessEngine(), outbound=outbound)


@pytest.fixture(params=["sqlite", "postgres"])
def client(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The app on each storage backend: every round trip runs on both."""
    changes: dict[str, Any] = {}
    if request.param == "postgres":
        changes["database_url"] = request.getfixturevalue("postgres_url")
    with TestClient(app_with(tmp_path, **changes), raise_server_exceptions=False) as running:
        wait_ready(running)
        if request.param == "postgres":  # the data really is there, not on disk
            assert not (tmp_path / "data").exists()
        yield running


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def photo(width: int = 96, height: int = 80) -> bytes:
    """Left half dark, right half bright: the fake engine's foreground is the right half."""
    pixels = np.full((height, width, 3), 30, dtype=np.uint8)
    pixels[:, width // 2 :] = 220
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def upload(
    client: TestClient,
    data: bytes | None = None,
    name: str | None = "photo",
    headers: dict[str, str] | None = None,
    content_type: str = "image/png",
) -> httpx.Response:
    files = {"other": ("x", b"", "text/plain")}
    if data is not None:
        files = {"image": ("upload.bin", data, content_type)}
    fields = {} if name is None else {"name": name}
    response: httpx.Response = client.post(
        "/v1/images/upload",
        headers=AUTH if headers is None else headers,
        files=files,
        data=fields,
    )
    return response


def created(response: httpx.Response, usage: int = 1) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    assert response.headers["x-image-processing-usage"] == str(usage)
    body: dict[str, Any] = response.json()
    return body


def uploaded(client: TestClient, data: bytes | None = None, **kwargs: Any) -> dict[str, Any]:
    return created(upload(client, photo() if data is None else data, **kwargs))


def assert_problem(
    response: httpx.Response, status: int, message: str, errors: list[str] | None = None
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    names = {
        400: ("Bad Request", "bad-request"),
        401: ("Unauthorized", "unauthorized"),
        404: ("Not Found", "not-found"),
        413: ("Request Entity Too Large", "payload-too-large"),
        422: ("Unprocessable Entity", "unprocessable-entity"),
        501: ("Not Implemented", "not-implemented"),
        503: ("Service Unavailable", "service-unavailable"),
    }
    title, slug = names[status]
    expected: dict[str, Any] = {
        "type": DOCS + slug,
        "error": title,
        "status": status,
        "message": message,
    }
    if errors is not None:
        expected["errors"] = errors
    assert body == expected


def invalid(errors: list[str]) -> str:
    return "The request has invalid fields: " + "; ".join(errors)


def not_found(image_id: str) -> str:
    return f"Image with id {image_id} not found."


def read_back(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- upload and the Image object --------------------------------------------------------


def test_upload_answers_201_with_the_image_object(client: TestClient) -> None:
    data = photo(96, 80)
    body = uploaded(client, data, name="  my photo  ")
    assert set(body) == {"id", "name", "url", "width", "height", "format", "size", "created_at"}
    assert ID.fullmatch(body["id"])
    assert body["name"] == "my photo"
    assert body["url"] is None
    assert (body["width"], body["height"], body["format"]) == (96, 80, "png")
    assert body["size"] == len(data)
    assert CREATED_AT.fullmatch(body["created_at"])
    moment = dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - moment).total_seconds()) < 60


def test_the_format_comes_from_the_bytes_not_the_content_type(client: TestClient) -> None:
    body = uploaded(client, jpeg(128, 96), content_type="image/png")
    assert body["format"] == "jpeg" and (body["width"], body["height"]) == (128, 96)
    webp = io.BytesIO()
    Image.new("RGB", (100, 90), "red").save(webp, "WEBP")
    assert uploaded(client, webp.getvalue())["format"] == "webp"


def test_ids_are_unique(client: TestClient) -> None:
    ids = {uploaded(client)["id"] for _ in range(5)}
    assert len(ids) == 5


def test_get_and_download_give_the_image_back(client: TestClient) -> None:
    data = photo()
    body = uploaded(client, data)
    response = client.get(f"/v1/images/{body['id']}", headers=AUTH)
    assert response.status_code == 200 and response.json() == body
    download = client.get(f"/v1/images/{body['id']}/download", headers=AUTH)
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert download.content == data


@pytest.mark.parametrize(
    ("data", "name", "errors"),
    [
        (None, "photo", ["image: is required: a jpeg, png or webp file"]),
        (b"png?", None, ["name: is required"]),
        (None, None, ["image: is required: a jpeg, png or webp file", "name: is required"]),
        (b"png?", "   ", ["name: is required"]),
        (b"png?", "x" * 31, ["name: must be at most 30 characters"]),
        (b"", "photo", ["image: is empty: the part holds no bytes"]),
    ],
)
def test_upload_fields_are_checked_together(
    client: TestClient, data: bytes | None, name: str | None, errors: list[str]
) -> None:
    assert_problem(upload(client, data, name=name), 422, invalid(errors), errors)


def test_a_name_of_30_characters_is_fine(client: TestClient) -> None:
    assert uploaded(client, name="x" * 30)["name"] == "x" * 30


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"/>',
            "image: svg is not supported: must be a jpeg, png or webp image",
        ),
        (b"GIF89a" + b"\0" * 64, "image: gif is not supported: must be a jpeg, png or webp image"),
        (photo()[:200], "image: the png is truncated or corrupt"),
        (png(32, 32), "image: width and height must be at least 64 pixels"),
    ],
)
def test_files_that_are_not_usable_images_are_422(
    client: TestClient, data: bytes, error: str
) -> None:
    assert_problem(upload(client, data), 422, invalid([error]), [error])


def test_a_jpeg_of_too_many_scans_is_422(client: TestClient) -> None:
    # Each scan is a pass over the whole image: the upload is refused before decoding.
    data = with_scans(jpeg(128, 96), 101)
    error = f"image: a JPEG of more than 100 scans is refused (this one has {data.count(SOS)})"
    assert_problem(upload(client, data), 422, invalid([error]), [error])


def test_an_image_over_the_pixel_limit_is_422(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, max_pixels=5000)) as client:
        error = "image: must have at most 5,000 pixels, got 7,680"
        assert_problem(upload(client, photo(96, 80)), 422, invalid([error]), [error])


def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, max_body_bytes=1000)) as client:
        response = upload(client, photo() + b"\0" * 2000)
        assert_problem(response, 413, "body: payloads cannot be larger than 1000 bytes in size")


def test_upload_needs_multipart(client: TestClient) -> None:
    response = client.post("/v1/images/upload", headers=AUTH, json={"name": "x"})
    assert_problem(response, 400, "content-type: must be multipart/form-data")


# --- auth and ownership -------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}, {"x-api-key": "wrong"}])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/images"),
        ("GET", "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa"),
        ("POST", "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa/crop"),
        ("DELETE", "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa"),
        ("GET", "/v1/usage"),
    ],
)
def test_a_missing_or_wrong_key_is_401(
    client: TestClient, headers: dict[str, str], method: str, path: str
) -> None:
    response = client.request(method, path, headers=headers)
    assert_problem(response, 401, "x-api-key: invalid or missing API key")


def test_the_upload_is_refused_without_a_key(client: TestClient) -> None:
    assert_problem(
        upload(client, photo(), headers={}), 401, "x-api-key: invalid or missing API key"
    )


def test_another_keys_image_is_404_everywhere(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    for method, path in [
        ("GET", f"/v1/images/{image_id}"),
        ("GET", f"/v1/images/{image_id}/download"),
        ("DELETE", f"/v1/images/{image_id}"),
        ("POST", f"/v1/images/{image_id}/publish"),
        ("POST", f"/v1/images/{image_id}/unpublish"),
    ]:
        assert_problem(client.request(method, path, headers=OTHER), 404, not_found(image_id))
    for op in ("remove-background", "mirror"):
        response = client.post(f"/v1/images/{image_id}/{op}", headers=OTHER, json={"mode": "both"})
        assert_problem(response, 404, not_found(image_id))
    assert client.get("/v1/images", headers=OTHER).json()["data"] == []
    # And the owner still has it.
    assert client.get(f"/v1/images/{image_id}", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "image_id", ["image_x", "image_AAAAAAAAAAAAAAAAAAAAAAAA", "image_" + "a" * 23, "x" * 300]
)
def test_malformed_ids_are_404(client: TestClient, image_id: str) -> None:
    response = client.get(f"/v1/images/{image_id}", headers=AUTH)
    assert_problem(response, 404, not_found(image_id))


# --- listing ------------------------------------------------------------------------------


def test_the_list_is_newest_first_in_pages_with_full_links(client: TestClient) -> None:
    ids = [uploaded(client, name=f"n{index}")["id"] for index in range(5)]
    newest_first = ids[::-1]
    response = client.get("/v1/images", headers=AUTH, params={"take": 2})
    assert response.status_code == 200
    seen: list[str] = []
    pages = 0
    body = response.json()
    while True:
        pages += 1
        seen += [image["id"] for image in body["data"]]
        assert len(body["data"]) <= 2
        following = body["links"]["next"]
        if following is None:
            break
        assert following.startswith("http://testserver/v1/images?take=2&from=image_")
        body = client.get(following, headers=AUTH).json()
    assert seen == newest_first and pages == 3
    # The last page links back to the one before it.
    previous = body["links"]["previous"]
    assert previous == f"http://testserver/v1/images?take=2&from={newest_first[2]}"
    back = client.get(previous, headers=AUTH).json()
    assert [image["id"] for image in back["data"]] == newest_first[2:4]
    first = client.get("/v1/images", headers=AUTH, params={"take": 2}).json()
    assert first["links"]["previous"] is None


def test_the_sdks_undefined_query_values_mean_not_sent(client: TestClient) -> None:
    # img-processing-sdk's listImages({take}) sends `from=undefined` (ky writes the
    # option it left out as text), and listImages({}) `take=undefined` too.
    ids = [uploaded(client)["id"] for _ in range(3)]
    body = client.get("/v1/images?take=2&from=undefined", headers=AUTH).json()
    assert [image["id"] for image in body["data"]] == ids[:0:-1]
    body = client.get("/v1/images?take=undefined&from=null", headers=AUTH).json()
    assert len(body["data"]) == 3


def test_the_list_defaults_to_ten(client: TestClient) -> None:
    for _ in range(11):
        uploaded(client)
    body = client.get("/v1/images", headers=AUTH).json()
    assert len(body["data"]) == 10 and body["links"]["next"] is not None
    assert "take=10" in body["links"]["next"]


def test_list_links_use_the_public_base_url(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, public_base_url="https://matte.example.com")) as client:
        for _ in range(2):
            uploaded(client)
        body = client.get("/v1/images?take=1", headers=AUTH).json()
        assert body["links"]["next"].startswith("https://matte.example.com/v1/images?take=1&from=")


@pytest.mark.parametrize("take", ["0", "101", "x", "-1", "1.5", "٣"])
def test_take_out_of_range_is_422(client: TestClient, take: str) -> None:
    error = "take: must be an integer from 1 to 100"
    response = client.get("/v1/images", headers=AUTH, params={"take": take})
    assert_problem(response, 422, invalid([error]), [error])


def test_take_100_is_fine(client: TestClient) -> None:
    assert client.get("/v1/images?take=100", headers=AUTH).status_code == 200


def test_from_an_unknown_or_foreign_id_is_404(client: TestClient) -> None:
    foreign = uploaded(client, headers=OTHER)["id"]
    for start in (foreign, "image_bbbbbbbbbbbbbbbbbbbbbbbb", "nonsense"):
        response = client.get("/v1/images", headers=AUTH, params={"from": start})
        assert_problem(response, 404, not_found(start))


# --- delete, publish ----------------------------------------------------------------------


def test_delete_is_204_and_the_image_is_gone(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    response = client.delete(f"/v1/images/{image_id}", headers=AUTH)
    assert response.status_code == 204 and response.content == b""
    for path in (f"/v1/images/{image_id}", f"/v1/images/{image_id}/download"):
        assert_problem(client.get(path, headers=AUTH), 404, not_found(image_id))
    assert_problem(client.delete(f"/v1/images/{image_id}", headers=AUTH), 404, not_found(image_id))


def test_publish_serves_the_image_without_a_key_until_unpublished(client: TestClient) -> None:
    data = photo()
    image_id = uploaded(client, data)["id"]
    published = client.post(f"/v1/images/{image_id}/publish", headers=AUTH)
    assert published.status_code == 200
    url = published.json()["url"]
    assert re.fullmatch(r"http://testserver/v1/public/[A-Za-z0-9_-]{32}\.png", url)
    public = client.get(url)
    assert public.status_code == 200 and public.content == data
    assert public.headers["content-type"] == "image/png"
    assert public.headers["cache-control"] == "no-cache"
    # The object says so everywhere, and publishing again keeps the URL.
    assert client.get(f"/v1/images/{image_id}", headers=AUTH).json()["url"] == url
    assert client.post(f"/v1/images/{image_id}/publish", headers=AUTH).json()["url"] == url
    unpublished = client.post(f"/v1/images/{image_id}/unpublish", headers=AUTH)
    assert unpublished.status_code == 200 and unpublished.json()["url"] is None
    assert_problem(client.get(url), 404, "route: no published image at this URL")


def test_a_deleted_image_is_unreachable_at_its_public_url(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    url = client.post(f"/v1/images/{image_id}/publish", headers=AUTH).json()["url"]
    client.delete(f"/v1/images/{image_id}", headers=AUTH)
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("suffix", ["", ".jpeg", "x.png"])
def test_public_urls_must_match_exactly(client: TestClient, suffix: str) -> None:
    image_id = uploaded(client)["id"]
    url = client.post(f"/v1/images/{image_id}/publish", headers=AUTH).json()["url"]
    token = url.rsplit("/", 1)[1].removesuffix(".png")
    assert client.get(f"/v1/public/{token}{suffix}").status_code == 404


# --- remove-background and transforms ---------------------------------------------------


def test_remove_background_creates_a_png_cutout_and_counts_two(client: TestClient) -> None:
    data = jpeg(128, 96)
    source = uploaded(client, data, name="car")
    response = client.post(f"/v1/images/{source['id']}/remove-background", headers=AUTH, json={})
    body = created(response, usage=2)
    assert body["id"] != source["id"] and body["name"] == "car"
    assert (body["format"], body["width"], body["height"]) == ("png", 128, 96)
    cutout = client.get(f"/v1/images/{body['id']}/download", headers=AUTH).content
    assert body["size"] == len(cutout)
    # The same cut-out as the Stability endpoint's for the same photo.
    stability = client.post(
        PATH,
        headers={"authorization": f"Bearer {KEY}", "accept": "image/*"},
        files={"image": ("car.jpg", data, "image/jpeg")},
    )
    assert stability.status_code == 200
    np.testing.assert_array_equal(
        np.asarray(read_back(cutout)), np.asarray(read_back(stability.content))
    )
    # The source is unchanged.
    assert client.get(f"/v1/images/{source['id']}/download", headers=AUTH).content == data


def test_remove_background_takes_a_name(client: TestClient) -> None:
    source = uploaded(client)
    response = client.post(
        f"/v1/images/{source['id']}/remove-background", headers=AUTH, json={"name": "cut"}
    )
    assert created(response, 2)["name"] == "cut"


@pytest.mark.parametrize("content", [b"", b"   "])
def test_an_empty_json_body_is_refused(client: TestClient, content: bytes) -> None:
    image_id = uploaded(client)["id"]
    for op in ("remove-background", "crop"):
        response = client.post(
            f"/v1/images/{image_id}/{op}",
            headers={**AUTH, "content-type": "application/json"},
            content=content,
        )
        assert_problem(response, 400, "body: is required: a JSON object")


def test_a_transform_creates_a_new_image_and_keeps_the_source(client: TestClient) -> None:
    data = photo(96, 80)
    source = uploaded(client, data, name="src")
    response = client.post(
        f"/v1/images/{source['id']}/crop",
        headers=AUTH,
        json={"x1": 40, "y1": 10, "x2": 60, "y2": 30},
    )
    body = created(response)
    assert body["id"] != source["id"] and body["name"] == "src"
    assert (body["width"], body["height"], body["format"]) == (20, 20, "png")
    pixels = np.asarray(
        read_back(client.get(f"/v1/images/{body['id']}/download", headers=AUTH).content)
    )
    # x 40-47 was the dark half, 48-59 the bright one.
    assert (pixels[:, :8] == 30).all() and (pixels[:, 8:] == 220).all()
    assert client.get(f"/v1/images/{source['id']}/download", headers=AUTH).content == data


def test_convert_changes_the_format_and_name(client: TestClient) -> None:
    source = uploaded(client)
    response = client.post(
        f"/v1/images/{source['id']}/convert",
        headers=AUTH,
        json={"format": "jpg", "quality": 80, "name": "as jpeg"},
    )
    body = created(response)
    assert body["format"] == "jpeg" and body["name"] == "as jpeg"
    download = client.get(f"/v1/images/{body['id']}/download", headers=AUTH)
    assert download.headers["content-type"] == "image/jpeg"
    assert read_back(download.content).format == "JPEG"


def test_invalid_transform_fields_are_422_with_every_problem(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    response = client.post(
        f"/v1/images/{image_id}/resize", headers=AUTH, json={"width": 0, "name": 5}
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0] == "name: must be a string"
    assert any(error.startswith("width:") for error in errors[1:])


def test_unknown_operations_are_404(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    response = client.post(f"/v1/images/{image_id}/sharpen", headers=AUTH, json={})
    assert_problem(response, 404, "route: not found")


def test_a_watermark_must_be_an_image_of_the_same_key(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    foreign = uploaded(client, headers=OTHER)["id"]
    response = client.post(
        f"/v1/images/{image_id}/watermark", headers=AUTH, json={"watermarks": [{"id": foreign}]}
    )
    error = f"watermarks[0].id: {not_found(foreign)}"
    assert_problem(response, 422, invalid([error]), [error])
    own = uploaded(client, png(64, 64))["id"]
    response = client.post(
        f"/v1/images/{image_id}/watermark",
        headers=AUTH,
        json={"watermarks": [{"id": own, "left": 0, "top": 0}]},
    )
    assert created(response)["format"] == "png"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/images/imagine",
        "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa/classify",
        "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa/visualize",
        "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa/extract-text",
    ],
)
def test_operations_without_a_model_here_are_501(client: TestClient, path: str) -> None:
    response = client.post(path, headers=AUTH, json={"prompt": "a cat"})
    assert_problem(
        response,
        501,
        "route: image generation, classification and text extraction are not offered "
        "by this server; it removes backgrounds and transforms images",
    )


# --- usage --------------------------------------------------------------------------------


def test_usage_counts_images_per_key_per_day(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    client.post(f"/v1/images/{image_id}/remove-background", headers=AUTH, json={})
    client.post(f"/v1/images/{image_id}/mirror", headers=AUTH, json={"mode": "both"})
    uploaded(client, headers=OTHER)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert client.get("/v1/usage", headers=AUTH).json() == {"data": [{"date": today, "images": 4}]}
    assert client.get("/v1/usage", headers=OTHER).json() == {"data": [{"date": today, "images": 1}]}


# --- creating from a URL ------------------------------------------------------------------


@pytest.fixture
def images_host() -> Iterator[LocalServer]:
    with LocalServer(answer(200, photo(), content_type="image/png")) as running:
        yield running


def fetching_app(tmp_path: Path, server: LocalServer, **changes: Any) -> Starlette:
    outbound = Outbound(
        False,
        resolver=Resolver({"storage.example": ["127.0.0.1"], "evil.example": ["127.0.0.1"]}),
        allow_for_tests={("127.0.0.1", server.port)},
    )
    return app_with(tmp_path, outbound=outbound, **changes)


def test_an_image_is_created_from_an_allowed_url(tmp_path: Path, images_host: LocalServer) -> None:
    app = fetching_app(tmp_path, images_host, fetch_allowed_hosts=frozenset({"storage.example"}))
    with TestClient(app) as client:
        url = f"http://storage.example:{images_host.port}/photo.png"
        body = created(client.post("/v1/images", headers=AUTH, json={"name": "n", "url": url}))
        assert (body["format"], body["width"], body["height"]) == ("png", 96, 80)
        assert images_host.received[0].path == "/photo.png"


def test_urls_are_off_unless_hosts_are_listed(tmp_path: Path, images_host: LocalServer) -> None:
    with TestClient(fetching_app(tmp_path, images_host)) as client:
        url = f"http://storage.example:{images_host.port}/photo.png"
        response = client.post("/v1/images", headers=AUTH, json={"name": "n", "url": url})
        error = "url: URLs are turned off on this server; upload the image instead"
        assert_problem(response, 422, invalid([error]), [error])
    assert images_host.received == []


def test_a_host_off_the_list_and_loopback_are_refused(
    tmp_path: Path, images_host: LocalServer
) -> None:
    app = fetching_app(tmp_path, images_host, fetch_allowed_hosts=frozenset({"storage.example"}))
    with TestClient(app) as client:
        evil = f"http://evil.example:{images_host.port}/"
        response = client.post("/v1/images", headers=AUTH, json={"name": "n", "url": evil})
        error = "url: the host evil.example is not one this server fetches from"
        assert_problem(response, 422, invalid([error]), [error])
        # Listed, but on a port the test did not open up: loopback is refused.
        loopback = "http://storage.example:9/"
        response = client.post("/v1/images", headers=AUTH, json={"name": "n", "url": loopback})
        assert response.json()["errors"] == [f"url: {REFUSED_ADDRESS}"]
    assert images_host.received == []


def test_create_from_url_checks_its_fields(client: TestClient) -> None:
    errors = ["name: is required", "url: is required: the http(s) URL of a jpeg, png or webp image"]
    response = client.post("/v1/images", headers=AUTH, json={"url": 5})
    assert_problem(response, 422, invalid(errors), errors)


# --- retention, restarts, failures --------------------------------------------------------


def test_test_keys_images_expire_after_the_max_age(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, test_image_max_age_s=60)) as client:
        sandbox = uploaded(client, headers={"x-api-key": TEST_KEY})["id"]
        live = uploaded(client)["id"]
        storage, _ = services_of(client).stored()
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
        assert storage.purge_images(later) == 1
        gone = client.get(f"/v1/images/{sandbox}", headers={"x-api-key": TEST_KEY})
        assert gone.status_code == 404
        assert client.get(f"/v1/images/{live}", headers=AUTH).status_code == 200


def test_without_a_max_age_test_keys_images_stay(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path)) as client:
        uploaded(client, headers={"x-api-key": TEST_KEY})
        storage, _ = services_of(client).stored()
        assert storage.purge_images(dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)) == 0


def test_images_survive_a_restart(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path)) as client:
        data = photo()
        body = uploaded(client, data)
    with TestClient(app_with(tmp_path)) as client:
        assert client.get(f"/v1/images/{body['id']}", headers=AUTH).json() == body
        assert client.get(f"/v1/images/{body['id']}/download", headers=AUTH).content == data


def test_a_storage_failure_is_503_without_detail(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    image_id = uploaded(client)["id"]
    storage, _ = services_of(client).stored()

    def broken(*args: object) -> None:
        raise StorageError("disk /secret/path is full")

    monkeypatch.setattr(storage, "image", broken)
    response = client.get(f"/v1/images/{image_id}", headers=AUTH)
    assert_problem(response, 503, "storage: temporarily unavailable, please retry shortly")
    assert response.headers["retry-after"] == "5"
    assert "/secret/path" not in response.text
    assert "disk /secret/path is full" in caplog.text


def test_requests_are_counted_by_route_template(client: TestClient) -> None:
    image_id = uploaded(client)["id"]
    client.get(f"/v1/images/{image_id}", headers=AUTH)
    text = client.get("/metrics").text
    assert 'matte_requests_total{route="/v1/images/upload",status="201"} 1.0' in text
    assert 'matte_requests_total{route="/v1/images/{id}",status="200"} 1.0' in text


def test_the_dialect_clock_is_wall_clock_time() -> None:
    # A class attribute evaluated once would freeze created_at at import time.
    first = imgproc.ImgProcessingDialect.clock()
    assert abs(first - dt.datetime.now(dt.UTC).timestamp()) < 5


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (dt.datetime(2026, 12, 1, 12, 0, 0, 5_999, tzinfo=dt.UTC), "2026-12-01T12:00:00.005Z"),
        (dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC), "2026-12-01T12:00:00.000Z"),
        (dt.datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=dt.UTC), "2026-01-02T03:04:05.999Z"),
        # Another zone is written in UTC.
        (
            dt.datetime(2026, 12, 1, 13, 0, 0, 120_000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2026-12-01T12:00:00.120Z",
        ),
    ],
)
def test_created_at_is_utc_with_three_digits_of_milliseconds(
    moment: dt.datetime, text: str
) -> None:
    assert imgproc_fields.iso_millis(moment) == text
