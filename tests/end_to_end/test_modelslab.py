"""ModelsLab's removebg_mask on the real model: the cut-out equals the Stability
endpoint's, and a real uvicorn process answers what modelslab-py sends (result
URL, fetch, base64) and refuses image URLs and webhooks it must not reach."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.conftest import FIXTURES, KEY, PATH, reference_alpha, soft_iou
from tests.local_http import LocalServer, answer
from tests.matte_process import matte_server

pytestmark = pytest.mark.model

V6 = "/api/v6/image_editing/removebg_mask"
PHOTO = FIXTURES / "car-1.jpg"
REFUSED = "points at a private, loopback, link-local or reserved address, which is refused"


def alpha(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.mode == "RGBA"
    return np.asarray(image)[:, :, 3]


def test_the_cutout_equals_the_stability_endpoints(model_client: TestClient) -> None:
    photo = PHOTO.read_bytes()
    stability = model_client.post(
        PATH, headers={"authorization": KEY}, files={"image": (PHOTO.name, photo)}
    )
    assert stability.status_code == 200
    response = model_client.post(
        V6, json={"key": KEY, "image": base64.b64encode(photo).decode(), "base64": True}
    )
    assert response.status_code == 200, response.text
    ours = base64.b64decode(response.json()["output"][0])
    assert np.array_equal(alpha(ours), alpha(stability.content))
    assert soft_iou(alpha(ours), reference_alpha(PHOTO)) >= 0.995


def test_modelslab_defaults_are_stabilitys_with_its_thresholds(model_client: TestClient) -> None:
    # alpha_matting with ModelsLab's defaults (240/20/5) is Stability's with the same
    # three fields sent: the defaults reach the matting on the real model.
    photo = PHOTO.read_bytes()
    fields = {
        "alpha_matting": "true",
        "alpha_matting_foreground_threshold": "240",
        "alpha_matting_background_threshold": "20",
        "alpha_matting_erode_size": "5",
    }
    stability = model_client.post(
        PATH, headers={"authorization": KEY}, files={"image": (PHOTO.name, photo)}, data=fields
    )
    assert stability.status_code == 200
    body = {"key": KEY, "image": base64.b64encode(photo).decode(), "alpha_matting": True}
    response = model_client.post("/api/v5/removebg_mask", json={**body, "base64": True})
    assert response.status_code == 200, response.text
    ours = base64.b64decode(response.json()["output"][0])
    assert np.array_equal(alpha(ours), alpha(stability.content))


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    outbound = {"MATTE_OUTBOUND_ENABLED": "true"}
    with matte_server(lambda url: {**outbound, "MATTE_PUBLIC_BASE_URL": url + "/"}) as url:
        yield url


def test_what_modelslab_py_sends_over_real_http(server_url: str) -> None:
    # modelslab-py: requests.post(base + "v6/image_editing/removebg_mask",
    # json={"key": ..., **BackgroundRemoverSchema(...).dict()}), then fetch(id).
    body = {
        "key": KEY,
        "api_key": KEY,
        "image": base64.b64encode(PHOTO.read_bytes()).decode(),
        "alpha_matting": False,
        "post_process_mask": False,
        "only_mask": False,
        "inverse_mask": False,
        "seed": None,
        "base64": False,
        "alpha_matting_foreground_threshold": 240,
        "alpha_matting_background_threshold": 20,
        "alpha_matting_erode_size": 5,
        "webhook": None,
        "track_id": None,
    }
    response = httpx.post(f"{server_url}{V6}", json=body, timeout=120)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["status"] == "success"
    [url] = reply["output"]
    assert url.startswith(f"{server_url}/results/") and url.endswith(".png")
    image = httpx.get(url, timeout=60)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    cutout = Image.open(io.BytesIO(image.content))
    assert cutout.size == (480, 360)
    assert soft_iou(np.asarray(cutout)[:, :, 3], reference_alpha(PHOTO)) >= 0.995
    again = httpx.post(
        f"{server_url}/api/v6/image_editing/fetch/{reply['id']}", json={"key": KEY}, timeout=60
    )
    assert again.status_code == 200 and again.json() == reply


def test_inverse_mask_over_real_http(server_url: str) -> None:
    body = {"key": KEY, "image": base64.b64encode(PHOTO.read_bytes()).decode()}
    mask = httpx.post(
        f"{server_url}/api/v5/removebg_mask",
        json={**body, "only_mask": True, "base64": True},
        timeout=120,
    )
    inverse = httpx.post(
        f"{server_url}/api/v5/removebg_mask",
        json={**body, "inverse_mask": True, "base64": True},
        timeout=120,
    )
    assert mask.status_code == 200 and inverse.status_code == 200
    plain = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask.json()["output"][0]))))
    swapped = np.asarray(Image.open(io.BytesIO(base64.b64decode(inverse.json()["output"][0]))))
    assert plain.ndim == 2 and np.array_equal(swapped, 255 - plain)


def test_loopback_is_refused_for_images_and_webhooks(server_url: str) -> None:
    # The guard is on in this process, with no test hook: its own address and a local
    # receiver are both out of reach.
    with LocalServer(answer(200, PHOTO.read_bytes())) as local:
        image = httpx.post(
            f"{server_url}{V6}", json={"key": KEY, "image": f"{local.url}/car.jpg"}, timeout=120
        )
        assert image.status_code == 400
        assert image.json() == {"status": "error", "message": f"image: {REFUSED}"}
        hook = httpx.post(
            f"{server_url}{V6}",
            json={
                "key": KEY,
                "image": base64.b64encode(PHOTO.read_bytes()).decode(),
                "webhook": f"{local.url}/hook",
            },
            timeout=120,
        )
        assert hook.status_code == 400
        assert hook.json() == {"status": "error", "message": f"webhook: {REFUSED}"}
        assert local.received == []


def test_errors_over_real_http(server_url: str) -> None:
    response = httpx.post(
        f"{server_url}/api/v1/image_editing/removebg_mask", json={"key": "x"}, timeout=60
    )
    assert response.status_code == 401
    assert response.json() == {"status": "error", "message": "key: invalid or missing API key"}
    gone = httpx.post(f"{server_url}/api/v6/fetch/1", json={"key": KEY}, timeout=60)
    assert gone.status_code == 404
    assert gone.json()["status"] == "error"
