"""The Stability remove-background contract, driven over HTTP against the app with a fake engine."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from server.app import create_app
from server.dialects.stability import StabilityDialect, bearer_key, reply_kind
from server.errors import ApiError, BadRequest, RateLimited, Unavailable
from server.settings import Settings
from tests.conftest import AUTH, ID, KEY, PATH, assert_error, decode, jpeg, png, post, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, ManualClock
from tests.server.test_imaging import MALFORMED_EXIF

# --- success paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept", [None, "", "  ", "image/*", "*/*", "image/*, */*;q=0.8", "IMAGE/*", "Image/*;q=1"]
)
def test_image_reply_is_a_png_cutout(client: TestClient, accept: str | None) -> None:
    if accept is None:
        del client.headers["accept"]  # httpx sends `accept: */*` unless told not to
        headers = {}
    else:
        headers = {"accept": accept}
    response = post(client, jpeg(320, 240), headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["finish-reason"] == "SUCCESS"
    assert response.headers["seed"] == "0"
    assert ID.fullmatch(response.headers["x-request-id"])
    cutout = decode(response.content)
    assert cutout.format == "PNG" and cutout.mode == "RGBA" and cutout.size == (320, 240)
    pixels = np.asarray(cutout)
    # The fake engine calls bright pixels foreground: the disc (230 grey) is kept, the
    # corners cut. Every channel on its own, within JPEG's loss on both sides.
    assert pixels[120, 160, 3] == 255
    assert ((pixels[120, 160, :3] >= 222) & (pixels[120, 160, :3] <= 238)).all()
    assert pixels[2, 2, 3] == 0
    # Fully transparent pixels carry no colour (half the PNG size, no visible change).
    assert not pixels[pixels[:, :, 3] == 0][:, :3].any()


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "Application/JSON",
        "APPLICATION/JSON; charset=utf-8",
        "text/html, application/json;q=0.9",
        "image/*, application/json",  # JSON asked for by name wins over the wildcard
    ],
)
def test_json_reply_carries_base64_and_a_typed_content_type(
    client: TestClient, accept: str
) -> None:
    response = post(client, jpeg(), {"accept": accept}, output_format="webp")
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


# --- input modes: known colours in, exact cut-out out -----------------------------------

# The mode tests draw a 96 x 80 image: a dark background, a bright "subject" (the fake
# engine's foreground) and, for modes with alpha, a bright block that is fully transparent.
SUBJECT = (slice(16, 64), slice(12, 44))
HIDDEN = (slice(16, 64), slice(56, 88))
# The same regions shrunk by 6 px: away from the resampled mask's soft edges.
SUBJECT_INSIDE = (slice(22, 58), slice(18, 38))
HIDDEN_INSIDE = (slice(22, 58), slice(62, 82))
BACKGROUND_INSIDE = (slice(0, 10), slice(None))


Colour = int | tuple[int, ...]


def layered(background: Colour, subject: Colour, hidden: Colour | None = None) -> np.ndarray:
    """An (80, 96) or (80, 96, channels) array of the three regions' values."""
    channels = len(background) if isinstance(background, tuple) else 1
    values = np.empty((80, 96, channels), dtype=np.int64)
    values[:] = background
    values[SUBJECT] = subject
    values[HIDDEN] = background if hidden is None else hidden
    return values[..., 0] if channels == 1 else values


def mode_image(mode: str) -> bytes:
    buffer = io.BytesIO()
    if mode == "L":
        Image.fromarray(layered(30, 200).astype(np.uint8), "L").save(buffer, "PNG")
    elif mode == "LA":
        pixels = layered((30, 255), (200, 128), (250, 0)).astype(np.uint8)
        Image.fromarray(pixels, "LA").save(buffer, "PNG")
    elif mode == "RGBA":
        pixels = layered((10, 10, 10, 255), (240, 180, 120, 200), (255, 255, 255, 0))
        Image.fromarray(pixels.astype(np.uint8), "RGBA").save(buffer, "PNG")
    elif mode == "P":
        image = Image.fromarray(layered(0, 1, 2).astype(np.uint8), "P")
        image.putpalette([20, 20, 20, 250, 200, 100, 255, 255, 255])
        image.save(buffer, "PNG", transparency=2)  # index 2 (white) is transparent
    elif mode == "RGB+tRNS":
        pixels = layered((20, 20, 20), (240, 200, 90), (255, 255, 255)).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(buffer, "PNG", transparency=(255, 255, 255))
    elif mode == "I;16":
        image = Image.fromarray(layered(2000, 60000).astype(np.uint16))
        assert image.mode == "I;16"
        image.save(buffer, "PNG")
    elif mode == "CMYK":
        pixels = layered((0, 0, 0, 230), (20, 60, 180, 25)).astype(np.uint8)
        Image.fromarray(pixels, "CMYK").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "subject", "tolerance"),
    [
        ("L", (200, 200, 200, 255), 0),
        # The input's own alpha scales the mask: 255 * 128 // 255.
        ("LA", (200, 200, 200, 128), 0),
        ("RGBA", (240, 180, 120, 200), 0),
        ("P", (250, 200, 100, 255), 0),
        # A PNG colour key (tRNS): white is the transparent colour.
        ("RGB+tRNS", (240, 200, 90, 255), 0),
        # 16-bit 60000 >> 8 = 234; clipping would read it as 255.
        ("I;16", (234, 234, 234, 255), 0),
        # CMYK (20, 60, 180, 25): channel = (255 - C|M|Y) * (255 - K) / 255 = (212, 176, 68).
        # JPEG is lossy, so within a few levels on both sides.
        ("CMYK", (212, 176, 68, 255), 5),
    ],
)
def test_each_pillow_mode_gives_its_own_colours(
    client: TestClient, mode: str, subject: tuple[int, int, int, int], tolerance: int
) -> None:
    response = post(client, mode_image(mode))
    assert response.status_code == 200, response.text
    cutout = decode(response.content)
    assert cutout.mode == "RGBA" and cutout.size == (96, 80)
    pixels = np.asarray(cutout).astype(int)
    inside = pixels[SUBJECT_INSIDE].reshape(-1, 4)
    assert (np.abs(inside - subject) <= tolerance).all(), (inside.min(0), inside.max(0))
    # The dark background is cut; the bright block the input made transparent stays
    # transparent, although the model calls it foreground. No colour is left under alpha 0.
    assert not pixels[HIDDEN_INSIDE].any()
    assert not pixels[BACKGROUND_INSIDE].any()


def test_sixteen_bit_greys_are_scaled_not_clipped(client: TestClient) -> None:
    # 32768 (half grey in 16 bits) >> 8 = 128, just above the fake's mid-grey threshold;
    # 2000 >> 8 = 7. Clipping at 255 would make both white, so nothing would be cut.
    grey = np.hstack(
        [np.full((80, 48), 32768, dtype=np.uint16), np.full((80, 48), 2000, dtype=np.uint16)]
    )
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, "PNG")
    pixels = np.asarray(decode(post(client, buffer.getvalue()).content))
    assert (pixels[:, :40] == (128, 128, 128, 255)).all()
    assert not pixels[:, 56:].any()


# --- EXIF orientation ----------------------------------------------------------------------

# Where the stored top-left corner is shown for each EXIF orientation (EXIF 2.3, tag 274),
# and whether width and height swap. Together they single out each of the 8 transforms.
SHOWN_AT: dict[int, tuple[str, str, bool]] = {
    1: ("top", "left", False),
    2: ("top", "right", False),  # mirrored
    3: ("bottom", "right", False),  # turned 180
    4: ("bottom", "left", False),  # mirrored top-bottom
    5: ("top", "left", True),  # mirrored along the main diagonal
    6: ("top", "right", True),  # turned 90 clockwise to display
    7: ("bottom", "right", True),  # mirrored along the other diagonal
    8: ("bottom", "left", True),  # turned 90 anticlockwise to display
}


@pytest.mark.parametrize("orientation", sorted(SHOWN_AT))
def test_exif_orientation_turns_the_pixels_the_right_way(
    client: TestClient, orientation: int
) -> None:
    # Stored 160 x 120 with a bright (foreground) top-left quadrant on a dark background.
    stored = np.full((120, 160, 3), 20, dtype=np.uint8)
    stored[:60, :80] = 230
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    cutout = decode(post(client, buffer.getvalue()).content)
    vertical, horizontal, swapped = SHOWN_AT[orientation]
    width, height = (120, 160) if swapped else (160, 120)
    assert cutout.size == (width, height)
    alpha = np.asarray(cutout)[:, :, 3]
    margin = 8
    rows = {
        "top": slice(margin, height // 2 - margin),
        "bottom": slice(height // 2 + margin, -margin),
    }
    cols = {
        "left": slice(margin, width // 2 - margin),
        "right": slice(width // 2 + margin, -margin),
    }
    for v, h in [(v, h) for v in rows for h in cols]:
        quadrant = alpha[rows[v], cols[h]]
        if (v, h) == (vertical, horizontal):
            assert (quadrant == 255).all(), (orientation, v, h)
        else:
            assert not quadrant.any(), (orientation, v, h)


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
        ({}, b"", "image: is empty: the part holds no bytes"),
        ({"output_format": "gif"}, "jpeg", "output_format: must be one of png, webp"),
        ({"output_format": "jpeg"}, "jpeg", "output_format: must be one of png, webp"),
        ({}, b"not an image at all", "image: must be a jpeg, png or webp image"),
        ({}, "gif", "image: gif is not supported: must be a jpeg, png or webp image"),
        ({}, "truncated", "image: the jpeg is truncated or corrupt"),
        ({}, (63, 64), "image: width and height must be at least 64 pixels"),
        ({}, (64, 63), "image: width and height must be at least 64 pixels"),
        ({}, (2049, 2048), "image: must have at most 4,194,304 pixels, got 4,196,352"),
        ({}, (4095, 1), "image: width and height must be at least 64 pixels"),
        ({"only_mask": "maybe"}, "jpeg", "only_mask: must be true or false"),
        ({"post_process_mask": "2"}, "jpeg", "post_process_mask: must be true or false"),
        ({"alpha_matting": "yes please"}, "jpeg", "alpha_matting: must be true or false"),
        (
            {"alpha_matting_foreground_threshold": "256"},
            "jpeg",
            "alpha_matting_foreground_threshold: must be an integer from 0 to 255",
        ),
        (
            {"alpha_matting_background_threshold": "-1"},
            "jpeg",
            "alpha_matting_background_threshold: must be an integer from 0 to 255",
        ),
        (
            {"alpha_matting_erode_size": "101"},
            "jpeg",
            "alpha_matting_erode_size: must be an integer from 0 to 100",
        ),
        (
            {"bgcolor": "red"},
            "jpeg",
            "bgcolor: must be 3 or 4 integers from 0 to 255, like 255,0,0 or [255, 0, 0, 255]",
        ),
        (
            {"alpha_matting_foreground_threshold": "10"},
            "jpeg",
            "alpha_matting_foreground_threshold: must be greater than "
            "alpha_matting_background_threshold",
        ),
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
        assert isinstance(image, bytes)
        response = post(client, image, None, "photo.jpg", **fields)
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


def test_a_header_past_pillows_own_bomb_ceiling_is_a_400(client: TestClient) -> None:
    # 14000 x 14000 = 196 M pixels: Pillow itself refuses it while reading the header
    # (DecompressionBombError), before Matte's own size check; that must not become a 500.
    header = struct.pack(">IIBBBBB", 14_000, 14_000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"")
        + _png_chunk(b"IEND", b"")
    )
    response = post(client, data)
    assert_error(response, 400, "bad_request", "image: must have at most 4,194,304 pixels")


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
    # The body's id is Stability's fixed one; the request still has its own id.
    assert ID.fullmatch(response.headers["x-request-id"])
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
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), max_uploads=2)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        wait_ready(client)
        admission = app.state.services.pipeline.admission
        with admission.ticket(), admission.ticket():  # both uploads are taken
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
    assert (
        'matte_model_info{engine="fake",model_file="brightness",'
        'precision="fp32",provider="fake"} 1.0' in text
    )
    assert "matte_images_in_flight 0.0" in text


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v2beta/nothing"), 404, "not_found", "route: not found")
    assert_error(client.post("/v2beta/nothing", headers=AUTH), 404, "not_found", "route: not found")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_the_endpoint_are_405_naming_post(client: TestClient, method: str) -> None:
    response = client.request(method, PATH, headers=AUTH)
    assert_error(response, 405, "method_not_allowed", "method: not allowed on this route")
    assert response.headers["allow"] == "POST"


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


def test_cors_preflight_of_a_browser_multipart_post_and_other_origins(
    tmp_path: Path, engine: BrightnessEngine
) -> None:
    # fetch(url, {method: "POST", body: formData, headers: {authorization, accept}})
    # from the allowed origin is preflighted for those headers; any other origin is not
    # let in, and a request from it gets no allow-origin header to read the reply by.
    settings = Settings(cache_dir=tmp_path, cors_origins=("https://app.example",))
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, accept",
    }
    with TestClient(create_app(settings, engine=engine)) as client:
        wait_ready(client)
        allowed = client.options(PATH, headers={"origin": "https://app.example", **preflight})
        other = client.options(PATH, headers={"origin": "https://evil.example", **preflight})
        posted = post(client, jpeg(), {"origin": "https://evil.example"})
        posted_allowed = post(client, jpeg(), {"origin": "https://app.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert {"authorization", "accept"} <= set(
        allowed.headers["access-control-allow-headers"].lower().replace(" ", "").split(",")
    )
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert posted.status_code == 200 and "access-control-allow-origin" not in posted.headers
    assert posted_allowed.headers["access-control-allow-origin"] == "https://app.example"


def test_cors_is_off_unless_configured(client: TestClient) -> None:
    response = client.options(
        PATH,
        headers={"origin": "https://app.example", "access-control-request-method": "POST"},
    )
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
    posted = post(client, jpeg(), {"origin": "https://app.example"})
    assert "access-control-allow-origin" not in posted.headers


def test_a_callers_request_id_is_the_one_in_the_error_and_its_header(client: TestClient) -> None:
    trace = "0f8fad5b-d9cb-469f-a165-70867728950e"
    response = client.post(PATH, headers={"x-request-id": trace})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == trace
    assert response.json()["id"] == trace
    forged = client.post(PATH, headers={"x-request-id": "<b>hi</b>"})
    assert forged.headers["x-request-id"] != "<b>hi</b>"
    assert forged.json()["id"] == forged.headers["x-request-id"]


def test_json_and_image_replies_carry_the_same_image(client: TestClient) -> None:
    data = jpeg()
    image = post(client, data)
    body = post(client, data, {"accept": "application/json"}).json()
    assert image.status_code == 200
    assert base64.b64decode(body["image"], validate=True) == image.content


def test_the_endpoints_errors_are_rendered_by_its_own_dialect(app: Starlette) -> None:
    # Another dialect as the app's default: the endpoint's errors must still be Stability's,
    # because the endpoint claims the request; routes without a dialect get the default's.
    class Plain:
        name = "plain"

        def routes(self) -> list[BaseRoute]:
            return []

        def render_error(self, error: ApiError, request_id: str) -> Response:
            return PlainTextResponse(f"plain {error.name}", status_code=error.status)

    app.state.default_dialect = Plain()
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        assert_error(
            client.post(PATH), 401, "unauthorized", "authorization: invalid or missing header value"
        )
        other = client.get("/v2beta/nothing")
        assert (other.status_code, other.text) == (404, "plain not_found")


# --- the dialect's parts, unit by unit -----------------------------------------------------


def test_the_dialect_serves_one_post_route() -> None:
    dialect = StabilityDialect()
    assert dialect.name == "stability"
    routes = dialect.routes()
    assert len(routes) == 1
    route = routes[0]
    assert isinstance(route, Route)
    assert route.path == PATH == "/v2beta/stable-image/edit/remove-background"
    assert route.methods == {"POST"}


@pytest.mark.parametrize(
    ("error", "body_id", "headers"),
    [
        (BadRequest("image: is required"), "a" * 32, {}),
        (Unavailable("server: busy", 7), "a" * 32, {"retry-after": "7"}),
        (RateLimited(150, 10, 60, 60), "rate_limit_exceeded", {"retry-after": "60"}),
    ],
)
def test_render_error_is_stabilitys_error_shape(
    error: ApiError, body_id: str, headers: dict[str, str]
) -> None:
    response = StabilityDialect().render_error(error, "a" * 32)
    assert response.status_code == error.status
    assert response.headers["content-type"] == "application/json"
    assert json.loads(bytes(response.body)) == {
        "id": body_id,
        "name": error.name,
        "errors": list(error.messages),
    }
    for name, value in headers.items():
        assert response.headers[name] == value
    if not headers:
        assert "retry-after" not in response.headers


def test_render_error_lists_every_message() -> None:
    response = StabilityDialect().render_error(BadRequest("a: one", "b: two"), "f" * 32)
    assert json.loads(bytes(response.body))["errors"] == ["a: one", "b: two"]


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        (f"Bearer {KEY}", KEY),
        (f"bearer {KEY}", KEY),
        (f"BEARER {KEY}", KEY),
        (f"  Bearer   {KEY}  ", KEY),
        (KEY, KEY),
        (f"  {KEY}\t", KEY),
        # Only the Bearer scheme is taken off: anything else is the key as sent.
        (f"Basic {KEY}", f"Basic {KEY}"),
        (f"Bearer{KEY}", f"Bearer{KEY}"),
        ("Bearer a b", "a b"),
    ],
)
def test_bearer_key(header: str | None, key: str | None) -> None:
    assert bearer_key(header) == key


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (None, "image"),
        ("", "image"),
        ("  ", "image"),
        ("image/*", "image"),
        ("IMAGE/*", "image"),
        ("*/*", "image"),
        ("image/*;q=0.9", "image"),
        ("text/html, image/*", "image"),
        ("text/html,*/*;q=0.1", "image"),
        ("application/json", "json"),
        ("Application/JSON", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/json;q=0.9;level=1", "json"),  # the media range ends at the first ";"
        ("image/*, application/json", "json"),
        ("*/*,application/json", "json"),
    ],
)
def test_reply_kind(accept: str | None, kind: str) -> None:
    assert reply_kind(accept) == kind


@pytest.mark.parametrize(
    "accept", ["text/html", "image/png", "application/xml", "image", "application/*", "json"]
)
def test_reply_kind_refuses_what_it_cannot_send(accept: str) -> None:
    with pytest.raises(BadRequest) as error:
        reply_kind(accept)
    assert error.value.messages == ("accept: must be one of image/*, application/json",)


def test_a_photo_with_malformed_exif_is_cut_out_not_a_500(client: TestClient) -> None:
    # XResolution written as text beside an orientation: EXIF rewriting used to raise.
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(
        buffer, "JPEG", exif=MALFORMED_EXIF["xresolution as text"]
    )
    response = post(client, buffer.getvalue())
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (100, 200)  # still turned upright
