"""remove.bg's clients as they are: PyPI's `removebg` 0.4 run unchanged against a real
socket, and what the npm `remove.bg` 1.3.0 wrapper, `removebg`'s newer (git) release,
remove.bg's Ruby gem and remove.bg's own curl and Node samples send and read, one test
per behaviour, on the fake engine."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from removebg import removebg as pypi  # type: ignore[import-untyped]
from starlette.testclient import TestClient

from server.dialects.removebg import ACCOUNT_PATH, PATH
from server.settings import Settings
from tests.conftest import KEY, wait_ready
from tests.server.dialects.test_removebg import (
    app_with,
    decoded,
    error_of,
    header_box,
    multipart,
    photo,
)
from tests.threaded_server import threaded_server


@pytest.fixture
def running(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app_with(tmp_path), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


# --- PyPI `removebg` 0.4, unchanged, over a real socket ------------------------------------


@pytest.fixture
def wrapper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """removebg.RemoveBg pointed at a Matte served on a free loopback port."""
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}))
    with threaded_server(settings) as served:
        monkeypatch.setattr(pypi, "API_ENDPOINT", served.url + PATH)
        # It calls logging.basicConfig(filename=...), which only acts on a bare root logger.
        assert logging.getLogger().handlers
        yield pypi.RemoveBg(KEY, str(tmp_path / "error.log"))


def test_pypi_wrapper_uploads_a_file_and_saves_the_cutout(wrapper: Any, tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(photo())
    # A multipart `image_file` whose part has a file name and no content type, and
    # size=regular (a preview): the bytes are saved as they come.
    wrapper.remove_background_from_img_file(str(source))
    saved = decoded((tmp_path / "photo.png_no_bg.png").read_bytes())
    assert saved.format == "PNG" and saved.mode == "RGBA" and saved.size == (200, 160)
    alpha = np.asarray(saved)[:, :, 3]
    assert alpha[80, 100] == 255 and alpha[5, 5] == 0


def test_pypi_wrapper_bg_color_gets_an_opaque_jpeg(wrapper: Any, tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(photo())
    wrapper.remove_background_from_img_file(str(source), size="hd", bg_color="81d4fa")
    # format=auto: nothing is transparent, so a JPEG (under the wrapper's .png name, as
    # remove.bg answered it too).
    saved = decoded((tmp_path / "photo.png_no_bg.png").read_bytes())
    assert saved.format == "JPEG"
    assert np.abs(np.asarray(saved)[2, 2].astype(int) - (0x81, 0xD4, 0xFA)).max() <= 3


def test_pypi_wrapper_sends_base64_urlencoded(wrapper: Any, tmp_path: Path) -> None:
    target = tmp_path / "b64-no-bg.png"
    wrapper.remove_background_from_base64_img(base64.b64encode(photo()), new_file_name=str(target))
    assert decoded(target.read_bytes()).size == (200, 160)


def test_pypi_wrapper_url_call_meets_a_400_it_raises_on(wrapper: Any, tmp_path: Path) -> None:
    # The guard is off by default: the wrapper's raise_for_status sees remove.bg's 400.
    # (requests, as the wrapper imports it: it ships no type hints.)
    with pytest.raises(pypi.requests.HTTPError) as raised:
        wrapper.remove_background_from_img_url(
            "https://example.com/photo.jpg", new_file_name=str(tmp_path / "x.png")
        )
    response = raised.value.response
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid_image_url"


# --- removebg's git release: every field on every call ---------------------------------------


# What its remove_background_from_img_file sends at its defaults (requests drops the
# None ones: crop_margin, and bg_* unless bg_type is given).
PYPI_GIT_DEFAULTS = {
    "size": "regular",
    "type": "auto",
    "type_level": "none",
    "format": "auto",
    "roi": "0 0 100% 100%",
    "crop": "false",
    "scale": "original",
    "position": "original",
    "channels": "rgba",
    "add_shadow": "false",
    "semitransparency": "true",
}


def git_wrapper_call(client: TestClient, **changes: str) -> Any:
    fields = {**PYPI_GIT_DEFAULTS, **changes}
    parts = [(name, None, None, value.encode()) for name, value in fields.items()]
    body, header = multipart(*parts, ("image_file", "photo.png", None, photo()))
    return client.post(PATH, headers={"X-Api-Key": KEY, "content-type": header}, content=body)


def test_pypi_git_defaults_are_the_plain_cutout(running: TestClient) -> None:
    response = git_wrapper_call(running)
    assert response.status_code == 200, response.text
    plain = running.post(
        PATH, headers={"x-api-key": KEY}, files={"image_file": ("p.png", photo(), "image/png")}
    )
    assert response.content == plain.content
    assert "x-type" not in response.headers  # type_level=none
    assert response.headers["x-credits-charged"] == "0.25"


def test_pypi_git_crop_true_sends_crop_margin_true(running: TestClient) -> None:
    # crop=True becomes crop=true and crop_margin=str(True).
    response = git_wrapper_call(running, crop="true", crop_margin="True")
    assert response.status_code == 200, response.text
    _, _, width, height = header_box(git_wrapper_call(running))
    assert decoded(response.content).size == (width, height)


def test_pypi_git_crop_margin_and_channels_alpha(running: TestClient) -> None:
    response = git_wrapper_call(running, crop="true", crop_margin="10px", channels="alpha")
    assert response.status_code == 200, response.text
    _, _, width, height = header_box(git_wrapper_call(running))
    mask = decoded(response.content)
    assert mask.mode == "L" and mask.size == (width + 20, height + 20)


def test_pypi_git_error_title_is_what_it_logs(running: TestClient) -> None:
    # It logs errors[0]["title"].lower() for a failed call.
    response = git_wrapper_call(running, size="gigantic")
    assert error_of(response, 400, "invalid_size")["title"].lower() == "invalid size"


# --- the npm `remove.bg` 1.3.0 wrapper (unirest) ---------------------------------------------


NPM_HEADERS = {"X-Api-Key": KEY, "Accept": "application/json"}


def npm_result(response: Any) -> dict[str, Any]:
    """What its processResult reads from a 200."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"  # unirest parses it
    return {
        "base64img": response.json()["data"]["result_b64"],
        "creditsCharged": response.headers["x-credits-charged"],
        "detectedType": response.headers.get("x-type"),
        "resultWidth": response.headers["x-width"],
        "resultHeight": response.headers["x-height"],
        "rateLimit": response.headers["x-ratelimit-limit"],
        "rateLimitRemaining": response.headers["x-ratelimit-remaining"],
        "rateLimitReset": response.headers["x-ratelimit-reset"],
        "retryAfter": response.headers.get("retry-after"),
    }


def test_npm_wrapper_base64_as_json(running: TestClient) -> None:
    # getRequestOptions: size and type default, crop a JSON boolean, undefined ones left out.
    body = {
        "size": "preview",
        "type": "auto",
        "crop": False,
        "image_file_b64": base64.b64encode(photo()).decode(),
    }
    result = npm_result(running.post(PATH, headers=NPM_HEADERS, json=body))
    assert decoded(base64.b64decode(result["base64img"])).size == (200, 160)
    assert result["creditsCharged"] == "0.25"
    assert result["detectedType"] == "other"
    assert (result["resultWidth"], result["resultHeight"]) == ("200", "160")
    assert result["rateLimit"] == "150" and result["rateLimitRemaining"] == "149"
    assert int(result["rateLimitReset"]) > 1_000_000_000  # a Unix time
    assert result["retryAfter"] is None


def test_npm_wrapper_file_as_multipart_with_json_back(running: TestClient) -> None:
    # request.field(k, v) for each option, then attach("image_file", a read stream):
    # form-data names the part after the file and types it from its extension.
    body, header = multipart(
        ("size", None, None, b"full"),
        ("type", None, None, b"person"),
        ("crop", None, None, b"false"),
        ("image_file", "photo.png", "image/png", photo()),
    )
    response = running.post(PATH, headers={**NPM_HEADERS, "content-type": header}, content=body)
    result = npm_result(response)
    assert result["creditsCharged"] == "1" and result["detectedType"] == "person"


def test_npm_wrapper_crop_and_scale_options(running: TestClient) -> None:
    body = {
        "size": "auto",
        "type": "product",
        "crop": True,
        "crop_margin": "10%",
        "scale": "50%",
        "position": "center",
        "image_file_b64": base64.b64encode(photo()).decode(),
    }
    result = npm_result(running.post(PATH, headers=NPM_HEADERS, json=body))
    assert int(result["resultWidth"]) < 200


def test_npm_wrapper_new_background_options(running: TestClient) -> None:
    body = {
        "size": "auto",
        "type": "auto",
        "crop": False,
        "bg_color": "81d4fa77",
        "add_shadow": True,
        "channels": "rgba",
        "image_file_b64": base64.b64encode(photo()).decode(),
    }
    result = npm_result(running.post(PATH, headers=NPM_HEADERS, json=body))
    image = decoded(base64.b64decode(result["base64img"]))
    # A translucent background keeps the result transparent: format=auto makes a PNG.
    assert image.format == "PNG" and tuple(np.asarray(image)[2, 2]) == (0x81, 0xD4, 0xFA, 0x77)


def test_npm_wrapper_rejects_with_the_errors_array(running: TestClient) -> None:
    # reject(result.body.errors): a list of {title, detail}.
    response = running.post(
        PATH, headers={**NPM_HEADERS, "X-Api-Key": "wrong"}, json={"image_url": "x"}
    )
    errors = response.json()["errors"]
    assert response.status_code == 403 and isinstance(errors, list)
    assert {"title", "detail"} <= set(errors[0])


# --- remove.bg's Ruby gem (Faraday) ---------------------------------------------------------


def test_ruby_gem_upload_and_its_result_metadata(running: TestClient) -> None:
    # Upload.for_file: a part typed from its extension; size defaults to auto; Accept */*.
    body, header = multipart(
        ("size", None, None, b"auto"), ("image_file", "person.png", "image/png", photo())
    )
    headers = {"X-Api-Key": KEY, "content-type": header, "Accept": "*/*"}
    response = running.post(PATH, headers=headers, content=body)
    assert response.status_code == 200
    assert "application/zip" not in response.headers["content-type"]  # a plain Result
    # ResultMetadata and RateLimitInfo read these as numbers.
    assert int(response.headers["X-Width"]) == 200 and int(response.headers["X-Height"]) == 160
    assert float(response.headers["X-Credits-Charged"]) == 1.0
    assert response.headers["X-Type"] == "other"
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert response.headers[name].isdigit()


def test_ruby_gem_zip_is_recognised_by_its_content_type(running: TestClient) -> None:
    body, header = multipart(
        ("size", None, None, b"auto"),
        ("format", None, None, b"zip"),
        ("image_file", "person.png", "image/png", photo()),
    )
    response = running.post(PATH, headers={"X-Api-Key": KEY, "content-type": header}, content=body)
    assert "application/zip" in response.headers["content-type"]  # a CompositeResult


def test_ruby_gem_account_info(running: TestClient) -> None:
    response = running.get(ACCOUNT_PATH, headers={"X-Api-Key": KEY, "Accept": "*/*"})
    attributes = response.json()["data"]["attributes"]
    # CreditsInfo.new(**credits) and ApiInfo.new(**api): no other keys allowed.
    assert sorted(attributes["credits"]) == ["enterprise", "payg", "subscription", "total"]
    assert sorted(attributes["api"]) == ["free_calls", "sizes"]


def test_ruby_gem_error_title_is_its_message(running: TestClient) -> None:
    # parse_error_message: errors.first["title"].
    response = running.post(PATH, headers={"X-Api-Key": "wrong"}, data={"size": "auto"})
    assert response.status_code == 403
    assert response.json()["errors"][0] == {
        "title": "API Key invalid",
        "code": "auth_failed",
        "detail": "API Key invalid",
    }


# --- remove.bg's own samples ----------------------------------------------------------------


def test_the_documented_curl_call(running: TestClient) -> None:
    # curl -H 'X-API-Key: ...' -F 'image_file=@/path/to/file.jpg' -F 'size=auto' -f ... -o no-bg.png
    body, header = multipart(
        ("image_file", "file.png", "image/png", photo()), ("size", None, None, b"auto")
    )
    response = running.post(
        PATH,
        headers={"X-API-Key": KEY, "content-type": header, "accept": "*/*"},
        content=body,
    )
    assert response.status_code == 200
    assert decoded(response.content).format == "PNG"


def test_the_documented_node_fetch_call(running: TestClient) -> None:
    # formData.append("image_file", blob): a Blob from fs.openAsBlob has no type, so the
    # part is named "blob" and typed application/octet-stream.
    body, header = multipart(
        ("size", None, None, b"auto"),
        ("image_file", "blob", "application/octet-stream", photo()),
    )
    response = running.post(PATH, headers={"X-Api-Key": KEY, "content-type": header}, content=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"


def test_the_axios_sample_gets_the_bytes(running: TestClient) -> None:
    # responseType: 'arraybuffer' with axios's default Accept.
    response = running.post(
        PATH,
        headers={"X-Api-Key": KEY, "Accept": "application/json, text/plain, */*"},
        files={"image_file": ("file.png", io.BytesIO(photo()), "image/png")},
        data={"size": "auto"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
