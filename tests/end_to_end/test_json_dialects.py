"""Omixa and OctoAI on the real model: the same cut-out as the Stability endpoint's for the
same photo and options, and one request of each through a real uvicorn process."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.dialects import octoai, omixa
from tests.conftest import FIXTURES, KEY, PATH, reference_alpha, soft_iou
from tests.matte_process import matte_server

pytestmark = pytest.mark.model

AUTH = {"authorization": f"Bearer {KEY}"}
CAR = FIXTURES / "car-1.jpg"


def decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image)


def stability(client: TestClient, photo: Path, **fields: str) -> np.ndarray:
    response = client.post(
        PATH,
        headers=AUTH,
        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
        data=fields or None,
    )
    assert response.status_code == 200, response.text
    return decoded(response.content)


def omixa_body(photo: Path, **fields: object) -> dict[str, object]:
    url = "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()
    return {
        "model": omixa.MODEL,
        "prompt": "",
        "input_images": [{"type": "image_url", "image_url": {"url": url}}],
        **fields,
    }


def omixa_cutout(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return decoded(base64.b64decode(response.json()["data"][0]["b64_json"], validate=True))


def octoai_body(photo: Path, **fields: object) -> dict[str, object]:
    return {"init_image": base64.b64encode(photo.read_bytes()).decode(), **fields}


def octoai_cutout(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.json()["removed_for_safety"] is False
    return decoded(base64.b64decode(response.json()["image_b64"], validate=True))


def test_omixa_alpha_equals_the_stability_endpoints(model_client: TestClient) -> None:
    expected = stability(model_client, CAR)
    got = omixa_cutout(model_client.post(omixa.PATH, json=omixa_body(CAR), headers=AUTH))
    assert got.shape == expected.shape == (360, 480, 4)
    assert np.array_equal(got[:, :, 3], expected[:, :, 3])
    assert np.array_equal(got, expected)
    assert soft_iou(got[:, :, 3], reference_alpha(CAR)) >= 0.995


def test_omixa_webp_keeps_the_alpha(model_client: TestClient) -> None:
    expected = stability(model_client, CAR)
    body = omixa_body(CAR, output_format="webp")
    got = omixa_cutout(model_client.post(omixa.PATH, json=body, headers=AUTH))
    # WebP's alpha plane is lossless.
    assert np.array_equal(got[:, :, 3], expected[:, :, 3])


def test_octoai_alpha_equals_the_stability_endpoints_with_post_processing(
    model_client: TestClient,
) -> None:
    # OctoAI post-processes the mask by default; Stability (rembg's default) does not.
    expected = stability(model_client, CAR, post_process_mask="true")
    got = octoai_cutout(model_client.post(octoai.PATH, json=octoai_body(CAR), headers=AUTH))
    assert got.shape == (360, 480, 4)
    assert np.array_equal(got, expected)
    plain = octoai_body(CAR, post_process_mask="false")
    unprocessed = octoai_cutout(model_client.post(octoai.PATH, json=plain, headers=AUTH))
    assert np.array_equal(unprocessed, stability(model_client, CAR))


@pytest.mark.parametrize(
    ("json_fields", "form_fields"),
    [
        ({"only_mask": True}, {"only_mask": "true", "post_process_mask": "true"}),
        ({"bgcolor": [0, 0, 255]}, {"bgcolor": "0,0,255", "post_process_mask": "true"}),
        (
            {
                "alpha_matting": "true",
                "alpha_matting_foreground_threshold": 230,
                "alpha_matting_background_threshold": 20,
                "alpha_matting_erode_size": 5,
                "post_process_mask": False,
            },
            {
                "alpha_matting": "true",
                "alpha_matting_foreground_threshold": "230",
                "alpha_matting_background_threshold": "20",
                "alpha_matting_erode_size": "5",
            },
        ),
    ],
    ids=["only_mask", "bgcolor", "alpha_matting"],
)
def test_octoai_options_equal_the_stability_endpoints(
    model_client: TestClient, json_fields: dict[str, object], form_fields: dict[str, str]
) -> None:
    got = octoai_cutout(
        model_client.post(octoai.PATH, json=octoai_body(CAR, **json_fields), headers=AUTH)
    )
    assert np.array_equal(got, stability(model_client, CAR, **form_fields))


# --- a real uvicorn process ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with matte_server() as url:
        yield url


def test_omixa_over_real_http(server_url: str) -> None:
    # What openai's `images.generate(..., extra_body={"input_images": [...]})` posts.
    response = httpx.post(
        f"{server_url}/api/v1/images/generations",
        json=omixa_body(CAR, output_format="png"),
        headers={**AUTH, "accept": "application/json"},
        timeout=120,
    )
    assert response.status_code == 200
    body = response.json()
    assert abs(body["created"] - time.time()) < 120
    assert body["usage"] == {"billed_amount": "0.000000"}
    cutout = omixa_cutout(response)
    assert soft_iou(cutout[:, :, 3], reference_alpha(CAR)) >= 0.995
    refused = httpx.post(f"{server_url}/api/v1/images/generations", json=omixa_body(CAR))
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"


def test_octoai_over_real_http(server_url: str) -> None:
    # @octoai/client's empty Accept and X-OctoAI-Async headers, with a token.
    response = httpx.post(
        f"{server_url}/background-removal",
        json=octoai_body(CAR),
        headers={**AUTH, "accept": "", "x-octoai-async": ""},
        timeout=120,
    )
    cutout = octoai_cutout(response)
    assert cutout.shape == (360, 480, 4)
    refused = httpx.post(
        f"{server_url}/background-removal", json={"init_image": "??"}, headers=AUTH
    )
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": [
            {
                "loc": ["body", "init_image"],
                "msg": "init_image: is not valid base64",
                "type": "value_error",
            }
        ]
    }
