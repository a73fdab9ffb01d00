"""remove.bg v1.0 on the real model: the cut-out of real photos (the Stability endpoint's
alpha, rembg's reference), the preview size, crop with a margin against the reference
cut-out's box, zip and jpg, and a session through a real uvicorn process."""

from __future__ import annotations

import base64
import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.dialects.removebg import ACCOUNT_PATH, PATH
from server.framing import FOREGROUND_MIN_ALPHA
from tests.conftest import FIXTURES, KEY, fixture_photos, reference_alpha, soft_iou
from tests.conftest import PATH as STABILITY_PATH
from tests.matte_process import matte_server

pytestmark = pytest.mark.model

AUTH = {"x-api-key": KEY}
CAR = FIXTURES / "car-1.jpg"


def decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image)


def box_of(alpha: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((alpha >= FOREGROUND_MIN_ALPHA).any(axis=1))
    cols = np.flatnonzero((alpha >= FOREGROUND_MIN_ALPHA).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def upload(client: TestClient, photo: Path, **fields: str) -> httpx.Response:
    response: httpx.Response = client.post(
        PATH,
        headers=AUTH,
        files={"image_file": (photo.name, photo.read_bytes(), "image/jpeg")},
        data=fields,
    )
    assert response.status_code == 200, response.text
    return response


def test_the_alpha_is_the_stability_endpoints(model_client: TestClient) -> None:
    stability = model_client.post(
        STABILITY_PATH,
        headers={"authorization": f"Bearer {KEY}"},
        files={"image": ("car.jpg", CAR.read_bytes(), "image/jpeg")},
    )
    response = upload(model_client, CAR, size="auto", format="png")
    ours, theirs = decoded(response.content), decoded(stability.content)
    assert ours.shape == theirs.shape == (360, 480, 4)
    # The same mask; only the edge colours differ (remove.bg's are corrected).
    np.testing.assert_array_equal(ours[:, :, 3], theirs[:, :, 3])
    assert soft_iou(ours[:, :, 3], reference_alpha(CAR)) >= 0.99
    assert header_box(response) == box_of(ours[:, :, 3])


def header_box(response: httpx.Response) -> tuple[int, int, int, int]:
    names = ("left", "top", "width", "height")
    return tuple(int(response.headers[f"x-foreground-{name}"]) for name in names)  # type: ignore[return-value]


# A preview is cut out of the photo shrunk to 0.25 MP, so fine detail the full-size
# reference has is lost: plants-1's leaves most (measured 0.897; the others 0.987-0.9997).
PREVIEW_IOU = {"plants-1.jpg": 0.88}


def npm_call(client: TestClient, photo: Path, size: str) -> tuple[np.ndarray, dict[str, int]]:
    """The npm wrapper's base64 call, as JSON with Accept: application/json."""
    body = {
        "size": size,
        "type": "auto",
        "crop": False,
        "image_file_b64": base64.b64encode(photo.read_bytes()).decode(),
    }
    response = client.post(PATH, headers={**AUTH, "accept": "application/json"}, json=body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    cutout = decoded(base64.b64decode(data["result_b64"]))
    height, width = cutout.shape[:2]
    assert (str(width), str(height)) == (response.headers["x-width"], response.headers["x-height"])
    assert response.headers["x-credits-charged"] == ("0.25" if size == "preview" else "1")
    box = (data["foreground_left"], data["foreground_top"])
    assert box == box_of(cutout[:, :, 3])[:2]
    return cutout, data


@pytest.mark.parametrize("photo", fixture_photos(), ids=lambda photo: photo.stem)
def test_every_fixture_as_the_npm_wrapper_sends_it(model_client: TestClient, photo: Path) -> None:
    full, _ = npm_call(model_client, photo, "auto")
    assert soft_iou(full[:, :, 3], reference_alpha(photo)) >= 0.995
    preview, _ = npm_call(model_client, photo, "preview")
    height, width = preview.shape[:2]
    assert width * height <= 250_000
    # Against rembg's reference, brought to the preview's size.
    reference = Image.fromarray(reference_alpha(photo)).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    iou = soft_iou(preview[:, :, 3], np.asarray(reference))
    assert iou >= PREVIEW_IOU.get(photo.name, 0.98), photo.name


def test_crop_with_a_margin_around_the_reference_box(model_client: TestClient) -> None:
    plain = decoded(upload(model_client, CAR, size="auto", format="png").content)
    left, top, width, height = box_of(plain[:, :, 3])
    # The model's subject box is rembg's reference box, within a few pixels.
    reference = box_of(reference_alpha(CAR))
    assert max(abs(a - b) for a, b in zip((left, top, width, height), reference, strict=True)) <= 4
    response = upload(model_client, CAR, size="auto", crop="true", crop_margin="12px", format="png")
    cutout = decoded(response.content)
    # Exactly 12 px on each side of the subject's box.
    assert cutout.shape[:2] == (height + 24, width + 24)
    assert header_box(response) == (12, 12, width, height)
    inside = cutout[12 : 12 + height, 12 : 12 + width, 3]
    np.testing.assert_array_equal(inside, plain[top : top + height, left : left + width, 3])


def test_zip_and_jpg_of_a_real_photo(model_client: TestClient) -> None:
    png = decoded(upload(model_client, CAR, size="auto", format="png").content)
    archive = upload(model_client, CAR, size="auto", format="zip")
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        alpha = decoded(opened.read("alpha.png"))
        color = decoded(opened.read("color.jpg"))
    np.testing.assert_array_equal(alpha, png[:, :, 3])
    assert color.shape == (360, 480, 3)
    jpg = upload(model_client, CAR, size="auto", format="jpg", bg_color="000000")
    assert jpg.headers["content-type"] == "image/jpeg"
    pixels = decoded(jpg.content)
    assert pixels.shape == (360, 480, 3)
    background = png[:, :, 3] == 0
    assert pixels[background].mean() < 10  # laid on black


# --- through a real uvicorn process ---------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with matte_server() as url:
        yield url


def test_a_session_through_a_real_server(server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as client:
        multipart = client.post(
            PATH,
            headers={"X-Api-Key": KEY},
            files={"image_file": ("car.jpg", CAR.read_bytes(), "application/octet-stream")},
            data={"size": "auto"},
        )
        assert multipart.status_code == 200, multipart.text
        assert multipart.headers["content-type"] == "image/png"
        alpha = decoded(multipart.content)[:, :, 3]
        assert soft_iou(alpha, reference_alpha(CAR)) >= 0.99
        assert multipart.headers["x-ratelimit-limit"] == "150"
        urlencoded = client.post(
            PATH,
            headers={"X-Api-Key": KEY},
            data={"image_file_b64": base64.b64encode(CAR.read_bytes()).decode()},
        )
        assert urlencoded.status_code == 200, urlencoded.text
        assert urlencoded.headers["x-credits-charged"] == "0.25"
        as_json = client.post(
            PATH,
            headers={"X-Api-Key": KEY, "accept": "application/json"},
            json={"image_file_b64": base64.b64encode(CAR.read_bytes()).decode(), "size": "hd"},
        )
        assert as_json.headers["content-type"] == "application/json"
        assert base64.b64decode(as_json.json()["data"]["result_b64"])[:8] == b"\x89PNG\r\n\x1a\n"
        account = client.get(ACCOUNT_PATH, headers={"X-Api-Key": KEY}).json()
        assert account["data"]["attributes"]["credits"]["total"] == 2.25
        refused = client.post(PATH, headers={"X-Api-Key": "wrong"}, data={"size": "auto"})
        assert refused.status_code == 403
        assert refused.json()["errors"][0]["code"] == "auth_failed"
    status, body = announced_oversize(server)
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "file_too_large"


def announced_oversize(server: str) -> tuple[int, bytes]:
    """A request whose Content-Length is past the 10 MiB limit, its body never sent:
    the answer comes at once, and the server closes the connection after it."""
    port = int(server.rsplit(":", 1)[1])
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {KEY}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {11 * 1024 * 1024}\r\n\r\n"
    ).encode()
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        for _ in range(1000):  # bounded: the answer is a few hundred bytes
            more = conn.recv(65536)
            if not more:
                break
            reply += more
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
