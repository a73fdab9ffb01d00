"""Photoroom's `/v1/segment` and rembg's `/api/remove` on the real model and a fixture photo,
and both through a real uvicorn process.

Each request runs the model (seconds on a CPU), so the options are shown on one photo
(car-1, 480 x 360) against the Stability endpoint's answer for the same options, which
tests/end_to_end/test_fidelity.py holds to rembg's reference cut-outs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Mapping

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.dialects import photoroom, rembg
from tests.conftest import FIXTURES, KEY, PATH, reference_alpha, soft_iou
from tests.matte_process import matte_server

pytestmark = pytest.mark.model

CAR = FIXTURES / "car-1.jpg"
PHOTO = CAR.read_bytes()
BEARER = {"authorization": f"Bearer {KEY}"}
API_KEY = {"x-api-key": KEY}


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def image_of(response: httpx.Response, media_type: str = "image/png") -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    return opened(response.content)


def stability(client: TestClient, **fields: str) -> np.ndarray:
    response = client.post(
        PATH, headers=BEARER, files={"image": ("car.jpg", PHOTO, "image/jpeg")}, data=fields or None
    )
    return np.asarray(image_of(response))


def remove(
    client: TestClient, query: str = "", form: Mapping[str, str] | None = None
) -> np.ndarray:
    response = client.post(
        rembg.PATH + query,
        headers=BEARER,
        files={"file": ("car.jpg", PHOTO, "image/jpeg")},
        data=dict(form or {}) or None,
    )
    return np.asarray(image_of(response))


def segment(client: TestClient, media_type: str = "image/png", **fields: str) -> Image.Image:
    response = client.post(
        photoroom.PATH,
        headers=API_KEY,
        files={"image_file": ("car.jpg", PHOTO, "image/jpeg")},
        data=fields or None,
    )
    return image_of(response, media_type)


# --- rembg ---------------------------------------------------------------------------------


def test_rembg_cuts_out_as_rembg_does(model_client: TestClient) -> None:
    got = remove(model_client)
    assert got.shape == (360, 480, 4)
    assert soft_iou(got[:, :, 3], reference_alpha(CAR)) >= 0.995
    assert np.array_equal(got, stability(model_client))


@pytest.mark.parametrize(
    ("query", "form", "equivalent"),
    [
        ("", {"model": "isnet-general-use", "om": "true"}, {"only_mask": "true"}),
        ("", {"ppm": "1"}, {"post_process_mask": "true"}),
        ("?bgc=255,255,255,255", {}, {"bgcolor": "255,255,255,255"}),
        (
            "",
            {"a": "true", "af": "230", "ab": "20", "ae": "5"},
            {
                "alpha_matting": "true",
                "alpha_matting_foreground_threshold": "230",
                "alpha_matting_background_threshold": "20",
                "alpha_matting_erode_size": "5",
            },
        ),
    ],
    ids=["om", "ppm", "bgc", "alpha-matting"],
)
def test_rembg_options_are_the_stability_endpoints(
    model_client: TestClient, query: str, form: dict[str, str], equivalent: dict[str, str]
) -> None:
    assert np.array_equal(remove(model_client, query, form), stability(model_client, **equivalent))


# --- Photoroom -----------------------------------------------------------------------------


def test_photoroom_png_and_base64img(model_client: TestClient) -> None:
    image = segment(model_client)
    assert image.mode == "RGBA" and image.size == (480, 360)
    values = np.asarray(image)
    assert soft_iou(values[:, :, 3], reference_alpha(CAR)) >= 0.995
    assert np.array_equal(values, stability(model_client))
    response = model_client.post(
        photoroom.PATH,
        headers={**API_KEY, "accept": "application/json"},
        files={"image_file": ("car.jpg", PHOTO, "image/jpeg")},
    )
    assert response.status_code == 200
    decoded = np.asarray(opened(base64.b64decode(response.json()["base64img"], validate=True)))
    assert np.array_equal(decoded, values)


def test_photoroom_webp_and_jpg(model_client: TestClient) -> None:
    cutout = stability(model_client).astype(np.float64)
    webp = np.asarray(segment(model_client, "image/webp", format="webp"))
    assert np.array_equal(webp[:, :, 3], cutout[:, :, 3])
    jpg = segment(model_client, "image/jpeg", format="jpg")
    assert jpg.mode == "RGB" and jpg.size == (480, 360)
    # The cut-out over white, as a JPEG: close to the exact composite.
    alpha = cutout[:, :, 3:] / 255
    on_white = cutout[:, :, :3] * alpha + 255 * (1 - alpha)
    assert np.abs(np.asarray(jpg).astype(np.float64) - on_white).mean() < 3


def test_photoroom_channels_alpha_and_bg_color(model_client: TestClient) -> None:
    mask = segment(model_client, channels="alpha")
    assert mask.mode == "L"
    assert np.array_equal(np.asarray(mask), stability(model_client, only_mask="true"))
    coloured = np.asarray(segment(model_client, bg_color="#FF0000"))
    assert (coloured[:, :, 3] == 255).all()
    background = stability(model_client)[:, :, 3] == 0
    assert background.mean() > 0.3
    assert (coloured[background][:, :3] == (255, 0, 0)).all()


def test_photoroom_crop_and_despill(model_client: TestClient) -> None:
    # The box of the reference cut-out's subject (alpha of 10 and more, as framing.py: faint
    # specks of 1-2 neither count nor stretch the crop).
    ys, xs = np.nonzero(reference_alpha(CAR) >= 10)
    cropped = segment(model_client, crop="true", despill="true")
    assert abs(cropped.width - (xs.max() - xs.min() + 1)) <= 4
    assert abs(cropped.height - (ys.max() - ys.min() + 1)) <= 4
    # Despill re-estimates only the edge colours: alpha and the opaque pixels stay.
    plain = stability(model_client)
    despilled = np.asarray(segment(model_client, despill="true"))
    assert np.array_equal(despilled[:, :, 3], plain[:, :, 3])
    opaque = plain[:, :, 3] == 255
    assert np.array_equal(despilled[opaque], plain[opaque])
    edge = (plain[:, :, 3] > 0) & (plain[:, :, 3] < 255)
    assert (despilled[edge][:, :3] != plain[edge][:, :3]).any()


# --- a real uvicorn process ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with matte_server() as url:
        yield url


def test_rembg_over_real_http(server_url: str) -> None:
    # What rembg's README shows: curl -F file=@input.jpg .../api/remove (plus the key).
    files = {"file": ("car.jpg", PHOTO, "image/jpeg")}
    response = httpx.post(f"{server_url}{rembg.PATH}", files=files, headers=BEARER, timeout=120)
    cutout = np.asarray(image_of(response))
    assert soft_iou(cutout[:, :, 3], reference_alpha(CAR)) >= 0.995
    refused = httpx.post(f"{server_url}{rembg.PATH}", files=files, timeout=60)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    invalid = httpx.post(
        f"{server_url}{rembg.PATH}", data={"a": "maybe"}, headers=BEARER, timeout=60
    )
    assert invalid.status_code == 422
    assert [entry["loc"] for entry in invalid.json()["detail"]] == [["body", "a"], ["body", "file"]]
    fetched = httpx.get(
        f"{server_url}{rembg.PATH}", params={"url": "https://example.com/a.jpg"}, headers=BEARER
    )
    assert fetched.status_code == 400
    assert fetched.json() == {
        "detail": "url: URLs are turned off on this server; send the data instead"
    }


def test_photoroom_over_real_http(server_url: str) -> None:
    files = {"image_file": ("car.jpg", PHOTO, "image/jpeg")}
    url = f"{server_url}{photoroom.PATH}"
    response = httpx.post(url, files=files, data={"format": "webp"}, headers=API_KEY, timeout=120)
    cutout = np.asarray(image_of(response, "image/webp"))
    assert soft_iou(cutout[:, :, 3], reference_alpha(CAR)) >= 0.995
    refused = httpx.post(url, files=files, timeout=60)
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "x-api-key: invalid or missing API key",
        "status_code": 403,
        "type": "invalid_api_key",
    }
    missing = httpx.post(url, files={"other": ("a.jpg", b"x")}, headers=API_KEY, timeout=60)
    assert missing.status_code == 400 and missing.json()["type"] == "missing_image"
