"""A real uvicorn process on the real model, called as Stability's own examples call it."""

from __future__ import annotations

import contextlib
import io
import json
import re
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import FIXTURES, KEY, PATH, reference_alpha, soft_iou
from tests.matte_process import matte_server

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with matte_server() as url:
        yield url


def test_the_stability_docs_example(server_url: str) -> None:
    # What Stability's Python sample sends, with only the base URL changed.
    photo = FIXTURES / "car-1.jpg"
    with photo.open("rb") as image:
        response = httpx.post(
            f"{server_url}{PATH}",
            headers={"authorization": f"Bearer {KEY}", "accept": "image/*"},
            files={"image": image},
            data={"output_format": "webp"},
            timeout=120,
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["finish-reason"] == "SUCCESS"
    cutout = Image.open(io.BytesIO(response.content))
    assert cutout.format == "WEBP" and cutout.mode == "RGBA"
    # WebP keeps alpha lossless, so the mask still matches the reference.
    assert soft_iou(np.asarray(cutout)[:, :, 3], reference_alpha(photo)) >= 0.995


def test_readiness_names_the_provider(server_url: str) -> None:
    ready = httpx.get(f"{server_url}/readyz").json()
    assert ready["status"] == "ready"
    assert ready["provider"] in ("cpu", "cuda")
    assert Path(ready["model_file"]).name.endswith(".onnx")


def complete(reply: bytes) -> bool:
    """Whether `reply` holds a whole response: its headers and Content-Length bytes of body."""
    head, found, body = reply.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def test_oversized_upload_is_refused_mid_stream(server_url: str) -> None:
    """413 arrives while the client is still sending; the server never reads the rest."""
    port = int(server_url.rsplit(":", 1)[1])
    total = 100 * 1024 * 1024
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"\0" * (256 * 1024)
    sent = 0
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        # A well-formed start, so the parser reads on into the oversized part.
        part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\n'
        conn.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        try:
            # Send until the first byte of an answer arrives (or all 100 MiB are sent).
            while sent < total and not reply:
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                readable, _, _ = select.select([conn], [], [], 0)
                if readable:
                    reply += conn.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        answered_after = sent
        # The answer came while the client was still sending: after the 10 MiB limit
        # (plus what the sockets buffer), long before the 100 MiB it meant to send.
        assert 10 * 1024 * 1024 <= answered_after < total / 2, answered_after
        with contextlib.suppress(ConnectionResetError):
            for _ in range(1000):  # bounded: the answer is well under 1000 reads
                if complete(reply):
                    break
                more = conn.recv(65536)
                if not more:
                    break
                reply += more
    head_bytes, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 413 "), reply[:200]
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    request_id = headers["x-request-id"]
    assert json.loads(body) == {
        "id": request_id,
        "name": "payload_too_large",
        "errors": ["body: payloads cannot be larger than 10MiB in size"],
    }
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert httpx.get(f"{server_url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("fields", "mode"),
    [
        ({"alpha_matting": "true"}, "RGBA"),
        ({"only_mask": "true"}, "L"),
        ({"post_process_mask": "true"}, "RGBA"),
        ({"bgcolor": "0,0,255"}, "RGBA"),
        (
            {"alpha_matting": "true", "alpha_matting_erode_size": "5", "bgcolor": "[0, 0, 0]"},
            "RGBA",
        ),
    ],
    ids=["alpha_matting", "only_mask", "post_process_mask", "bgcolor", "combined"],
)
def test_each_option_over_real_http(server_url: str, fields: dict[str, str], mode: str) -> None:
    photo = FIXTURES / "car-1.jpg"
    response = httpx.post(
        f"{server_url}{PATH}",
        headers={"authorization": KEY},
        files={"image": (photo.name, photo.read_bytes())},
        data=fields,
        timeout=120,
    )
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == mode and image.size == (480, 360)
    if "bgcolor" in fields:
        assert (np.asarray(image)[:, :, 3] == 255).all()


def test_bad_option_over_real_http(server_url: str) -> None:
    response = httpx.post(
        f"{server_url}{PATH}",
        headers={"authorization": KEY},
        files={"image": ("a.jpg", (FIXTURES / "car-1.jpg").read_bytes())},
        data={"alpha_matting": "sometimes"},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == ["alpha_matting: must be true or false"]
