"""The Stability remove-background contract, driven over HTTP against the app with a fake engine."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.conftest import AUTH, ID, KEY, PATH, assert_error, decode, jpeg, png, post, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, ManualClock

# --- success paths -----------------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "image/*", "*/*", "image/*, */*;q=0.8"])
def test_image_reply_is_a_png_cutout(client: TestClient, accept: str | None) -> None:
    headers = {"accept": accept} if accept else {}
    response = post(client, jpeg(320, 240), headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["finish-reason"] == "SUCCESS"
    assert response.headers["seed"] == "0"
    assert ID.fullmatch(response.headers["x-request-id"])
    cutout = decode(response.content)
    assert cutout.format == "PNG" and cutout.mode == "RGBA" and cutout.size == (320, 240)
    pixels = np.asarray(cutout)
    # The fake engine calls bright pixels foreground: the disc is kept, the corners cut.
    assert pixels[120, 160, 3] > 200 and tuple(pixels[120, 160, :3]) > (200, 200, 200)
    assert pixels[2, 2, 3] == 0
    # Fully transparent pixels carry no colour (half the PNG size, no visible change).
    assert not pixels[pixels[:, :, 3] == 0][:, :3].any()


def test_json_reply_carries_base64_and_a_typed_content_type(client: TestClient) -> None:
    response = post(client, jpeg(), {"accept": "application/json"}, output_format="webp")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; type=image/webp"
    assert "finish-reason" not in response.headers and "seed" not in response.headers
    body = response.json()
    assert set(body) == {"image", "finish_reason", "seed"}
    assert body["finish_reason"] == "SUCCESS" and body["seed"] == 0
    image = decode(base64.b64decode(body["image"]))
    assert image.format == "WEBP" and image.mode == "RGBA" and image.size == (320, 240)


def test_webp_image_reply(client: TestClient) -> None:
    response = post(client, jpeg(), output_format="webp")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert decode(response.content).format == "WEBP"


@pytest.mark.parametrize("authorization", [f"Bearer {KEY}", KEY, f"bearer   {KEY}"])
def test_both_authorization_forms(client: TestClient, authorization: str) -> None:
    response = post(client, jpeg(), {"authorization": authorization})
    assert response.status_code == 200


def test_format_is_sniffed_not_taken_from_filename_or_part_type(client: TestClient) -> None:
    # A PNG sent as "photo.jpg", and the same bytes with no filename (a plain form field).
    data = png(100, 80)
    assert post(client, data, filename="photo.jpg").status_code == 200
    assert post(client, data, filename=None).status_code == 200


def test_unknown_fields_are_ignored(client: TestClient) -> None:
    response = post(client, jpeg(), mode="image-to-image", prompt="a cat", api_key_override="x")
    assert response.status_code == 200


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "I;16", "P"])
def test_any_pillow_mode_is_accepted(client: TestClient, mode: str) -> None:
    image = Image.new(mode, (96, 80))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if mode == "CMYK" else "PNG")
    response = post(client, buffer.getvalue())
    assert response.status_code == 200, response.text
    assert decode(response.content).size == (96, 80)


def test_sixteen_bit_greys_are_scaled_not_clipped(client: TestClient) -> None:
    # Half grey in 16 bits is 32768; clipping would read it as white (255), i.e. foreground.
    grey = Image.fromarray(np.full((80, 96), 32768, dtype=np.uint16))
    left = np.full((80, 48), 60000, dtype=np.uint16)
    grey = Image.fromarray(np.hstack([left, np.full((80, 48), 2000, dtype=np.uint16)]))
    buffer = io.BytesIO()
    grey.save(buffer, "PNG")
    pixels = np.asarray(decode(post(client, buffer.getvalue()).content))
    assert pixels[40, 10, 3] == 255  # bright half kept
    assert pixels[40, 90, 3] == 0  # dark half cut: it was not clipped to white
    assert 225 <= pixels[40, 10, 0] <= 235  # 60000 >> 8 = 234, colours preserved


def test_input_transparency_is_kept(client: TestClient) -> None:
    rgba = np.full((80, 96, 4), 255, dtype=np.uint8)
    rgba[:, :48, 3] = 0  # left half transparent, although white (the fake's foreground)
    rgba[60:, :, :3] = 0  # a dark strip, so the prediction is not flat
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    pixels = np.asarray(decode(post(client, buffer.getvalue()).content))
    assert not pixels[:, :48, 3].any()
    assert (pixels[:50, 60:, 3] == 255).all()
    assert not pixels[70:, 60:, 3].any()


def test_exif_orientation_is_applied(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = jpeg(200, 100, exif=exif.tobytes())
    cutout = decode(post(client, data).content)
    assert cutout.size == (100, 200)


@pytest.mark.parametrize("size", [(64, 64), (2048, 2048)])
def test_sizes_at_the_accepted_edges(client: TestClient, size: tuple[int, int]) -> None:
    response = post(client, png(*size))
    assert response.status_code == 200
    assert decode(response.content).size == size


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer "},
        {"authorization": "Bearer wrong"},
        {"authorization": "wrong"},
    ],
)
def test_missing_or_wrong_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(PATH, headers=headers, files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert_error(response, 401, "unauthorized", "authorization: invalid or missing header value")


def test_any_key_is_accepted_when_none_are_configured(
    tmp_path: Path, engine: BrightnessEngine
) -> None:
    app = create_app(Settings(cache_dir=tmp_path), engine=engine)
    with TestClient(app) as client:
        wait_ready(client)
        ok = client.post(
            PATH,
            headers={"authorization": "anything"},
            files={"image": ("a.jpg", jpeg(), "image/jpeg")},
        )
        missing = client.post(PATH, files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert ok.status_code == 200
    assert missing.status_code == 401


@pytest.mark.parametrize(
    ("fields", "image", "message"),
    [
        ({}, None, "image: is required"),
        ({}, b"", "image: is required"),
        ({"output_format": "gif"}, "jpeg", "output_format: must be one of png, webp"),
        ({"output_format": "jpeg"}, "jpeg", "output_format: must be one of png, webp"),
        ({}, b"not an image at all", "image: must be a jpeg, png or webp image"),
        ({}, "gif", "image: must be a jpeg, png or webp image"),
        ({}, "truncated", "image: is truncated or corrupt"),
        ({}, (63, 64), "image: width and height must be at least 64 pixels"),
        ({}, (64, 63), "image: width and height must be at least 64 pixels"),
        ({}, (2049, 2048), "image: must have at most 4,194,304 pixels, got 4,196,352"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: TestClient, fields: dict[str, str], image: object, message: str
) -> None:
    if image == "jpeg":
        image = jpeg()
    elif image == "gif":
        buffer = io.BytesIO()
        Image.new("RGB", (100, 100)).save(buffer, "GIF")
        image = buffer.getvalue()
    elif image == "truncated":
        image = jpeg(400, 300)[:2000]
    elif isinstance(image, tuple):
        image = png(*image)
    if image is None:
        response = client.post(PATH, headers=AUTH, files={"other": ("a", b"x")}, data=fields)
    else:
        response = post(client, image, **fields)
    assert_error(response, 400, "bad_request", message)


def test_non_multipart_body_is_400(client: TestClient) -> None:
    response = client.post(
        PATH, headers={**AUTH, "content-type": "application/json"}, content=b"{}"
    )
    assert_error(response, 400, "bad_request", "content-type: must be multipart/form-data")


def test_repeated_image_field_is_400(client: TestClient) -> None:
    files = [("image", ("a.jpg", jpeg(), "image/jpeg")), ("image", ("b.jpg", jpeg(), "image/jpeg"))]
    response = client.post(PATH, headers=AUTH, files=files)
    assert_error(response, 400, "bad_request", "image: must be sent only once")


@pytest.mark.parametrize("accept", ["text/html", "image/png", "application/xml"])
def test_other_accept_values_are_400(client: TestClient, accept: str) -> None:
    response = post(client, jpeg(), {"accept": accept})
    assert_error(response, 400, "bad_request", "accept: must be one of image/*, application/json")


def test_body_at_the_limit_passes_the_size_check(client: TestClient) -> None:
    # Exactly 10 MiB of body: not refused for size (it fails later, as a non-image).
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    filler = b"x" * (10 * 1024 * 1024 - len(head) - len(tail))
    body = head + filler + tail
    assert len(body) == 10 * 1024 * 1024
    headers = {**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"}
    response = client.post(PATH, headers=headers, content=body)
    assert_error(response, 400, "bad_request", "image: must be a jpeg, png or webp image")
    over = head + filler + b"y" + tail
    response = client.post(PATH, headers=headers, content=over)
    assert_error(
        response, 413, "payload_too_large", "body: payloads cannot be larger than 10MiB in size"
    )


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def bomb(side: int = 8000) -> bytes:
    """A valid greyscale PNG of side x side zeros: ~60 KB that inflates to 64 MB."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_its_header(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bomb()
    assert len(data) < 200_000
    from PIL import PngImagePlugin

    def no_decoding(self: object) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    response = post(client, data)
    assert_error(
        response, 400, "bad_request", "image: must have at most 4,194,304 pixels, got 64,000,000"
    )


def test_unexpected_errors_are_a_plain_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(cache_dir=tmp_path, api_keys=frozenset({KEY})), engine=BrokenEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = post(client, jpeg())
        assert_error(
            response,
            500,
            "internal_error",
            "An unexpected server error has occurred, please try again later.",
        )
        assert "deadbeef" not in response.text
        # The cause is logged under the id the client was given; the server stays healthy.
        assert any(response.json()["id"] in record.getMessage() for record in caplog.records)
        assert client.get("/healthz").status_code == 200


def test_rate_limit_151st_request_and_lock_out(client: TestClient, clock: ManualClock) -> None:
    # Refused requests count too (the limit protects the server), so cheap ones are used.
    for _ in range(150):
        assert post(client).status_code == 400
    response = post(client)
    assert response.status_code == 429
    assert response.json() == {
        "id": "rate_limit_exceeded",
        "name": "rate_limit_exceeded",
        "errors": [
            "You have exceeded the rate limit of 150 requests within a 10 second period,"
            " and have been timed out for 60 seconds."
        ],
    }
    assert response.headers["retry-after"] == "60"
    clock.advance(59)
    locked = post(client, jpeg())
    assert locked.status_code == 429 and locked.headers["retry-after"] == "1"
    # Other keys and callers are unaffected meanwhile.
    assert client.post(PATH).status_code == 401
    clock.advance(1.5)
    assert post(client, jpeg()).status_code == 200


def test_rate_limit_window_slides(client: TestClient, clock: ManualClock) -> None:
    for _ in range(150):
        assert post(client).status_code == 400
    clock.advance(10.01)
    assert post(client).status_code == 400  # the first 150 left the window


def test_overload_is_503_with_retry_after(tmp_path: Path, engine: BrightnessEngine) -> None:
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), max_pending=1, max_queue=1)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        wait_ready(client)
        admission = app.state.services.pipeline.admission
        with admission.ticket(), admission.ticket():  # one in the pipeline, one in line
            response = post(client, jpeg())
        assert_error(
            response,
            503,
            "service_unavailable",
            "server: too many requests in progress, please retry shortly",
        )
        assert response.headers["retry-after"] == "1"
        assert post(client, jpeg()).status_code == 200
        text = client.get("/metrics").text
        assert 'matte_rejected_total{reason="overloaded"} 1.0' in text
        assert "matte_requests_waiting 0.0" in text


# --- other routes ------------------------------------------------------------------------


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["provider"] == "fake"
    post(client, jpeg())
    post(client, jpeg(), {"authorization": "nope"})
    text = client.get("/metrics").text
    assert f'matte_requests_total{{route="{PATH}",status="200"}} 1.0' in text
    assert f'matte_requests_total{{route="{PATH}",status="401"}} 1.0' in text
    for stage in ("decode", "predict", "matte", "encode"):
        assert f'matte_stage_seconds_count{{stage="{stage}"}} 1.0' in text
    assert 'matte_model_info{model_file="brightness",provider="fake"} 1.0' in text
    assert "matte_images_in_flight 0.0" in text


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v2beta/nothing"), 404, "not_found", "route: not found")
    assert client.get(PATH).status_code == 405


def test_cors_preflight_when_configured(tmp_path: Path, engine: BrightnessEngine) -> None:
    settings = Settings(cache_dir=tmp_path, cors_origins=("https://app.example",))
    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.options(
            PATH,
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
