"""Photoroom's `POST /v1/segment` over HTTP, on the fake engine.

The contract is Photoroom's OpenAPI document for the Basic plan: multipart with
`image_file`, the fields format/channels/bg_color/size/crop/despill, `x-api-key`,
the image or `{"base64img"}` back, errors `{"detail", "status_code", "type"}`.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.routing import Route
from starlette.testclient import TestClient

from server.app import create_app
from server.dialects.photoroom import PATH, PhotoroomDialect, segment_options
from server.dialects.photoroom_api import CHANNEL, CROP, DESPILL, FORMAT, SIZE
from server.errors import BadRequest, PayloadTooLarge, RateLimited, Unauthorized, Unavailable
from server.forms import Form, Part
from server.operations import Field
from server.option_text import COLOR_HELP
from server.options import CutoutOptions
from server.settings import Settings
from tests.conftest import ID, KEY, jpeg, png, post, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, ManualClock

AUTH = {"x-api-key": KEY}
PHOTO = jpeg(320, 240)
# The fake engine's subject: the disc of radius 80 in the middle of PHOTO.
DISC = (80, 40, 160, 160)  # left, top, width, height


def segment(
    client: TestClient,
    photo: bytes | None = PHOTO,
    headers: dict[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    files = {"image_file": ("photo.jpg", photo, "image/jpeg")} if photo is not None else None
    data = {**(form or {}), **fields}
    response: httpx.Response = client.post(
        PATH, headers={**AUTH, **(headers or {})}, files=files, data=data or None
    )
    return response


def decoded(response: httpx.Response, media_type: str = "image/png") -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def pixels(response: httpx.Response, media_type: str = "image/png") -> np.ndarray:
    return np.asarray(decoded(response, media_type))


def stability(client: TestClient, **fields: str) -> np.ndarray:
    response = post(client, PHOTO, None, "photo.jpg", **fields)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def assert_error(response: httpx.Response, status: int, kind: str, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": detail, "status_code": status, "type": kind}
    assert ID.fullmatch(response.headers["x-request-id"])


# --- success -------------------------------------------------------------------------------


def test_a_cutout_is_an_rgba_png_of_the_inputs_size(client: TestClient) -> None:
    image = decoded(segment(client))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (320, 240)
    values = np.asarray(image)
    assert values[120, 160, 3] == 255 and values[2, 2, 3] == 0
    assert np.array_equal(values, stability(client))


def test_the_header_set(client: TestClient) -> None:
    response = segment(client)
    assert response.status_code == 200
    headers = response.headers
    assert headers["content-type"] == "image/png"
    assert int(headers["content-length"]) == len(response.content)
    assert ID.fullmatch(headers["x-request-id"])
    assert headers["x-content-type-options"] == "nosniff"
    for name in ("finish-reason", "seed", "retry-after", "x-width"):
        assert name not in headers


@pytest.mark.parametrize("accept", [None, "*/*", "image/*", "image/png", "text/html"])
def test_the_image_itself_unless_json_is_asked_for(client: TestClient, accept: str | None) -> None:
    headers = {} if accept is None else {"accept": accept}
    if accept is None:
        del client.headers["accept"]
    assert decoded(segment(client, headers=headers)).size == (320, 240)


@pytest.mark.parametrize("accept", ["application/json", "image/png, application/json;q=0.9"])
def test_accept_json_answers_base64img(client: TestClient, accept: str) -> None:
    response = segment(client, headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"base64img"}
    assert base64.b64decode(body["base64img"], validate=True) == segment(client).content


def test_webp_keeps_the_alpha(client: TestClient) -> None:
    values = pixels(segment(client, format="webp"), "image/webp")
    # WebP's alpha plane is lossless.
    assert np.array_equal(values[:, :, 3], pixels(segment(client))[:, :, 3])


def test_jpg_is_on_white(client: TestClient) -> None:
    image = decoded(segment(client, format="jpg"), "image/jpeg")
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (320, 240)
    values = np.asarray(image).astype(int)
    assert (values[2, 2] >= 245).all()  # the background, on white
    assert (abs(values[120, 160] - 230) <= 8).all()  # the subject's grey


def test_jpg_is_on_the_background_colour(client: TestClient) -> None:
    values = pixels(segment(client, format="jpg", bg_color="blue"), "image/jpeg").astype(int)
    assert abs(values[2, 2] - (0, 0, 255)).max() <= 12


@pytest.mark.parametrize("fmt", ["png", "PNG", "webp", "jpg"])
def test_channels_alpha_answers_the_mask(client: TestClient, fmt: str) -> None:
    media_type = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}[fmt.lower()]
    image = decoded(segment(client, channels="alpha", format=fmt), media_type)
    # WebP has no greyscale mode: its decoder gives the grey as RGB.
    assert image.mode == ("RGB" if fmt == "webp" else "L") and image.size == (320, 240)
    grey = np.asarray(image.convert("L")).astype(int)
    mask = stability(client, only_mask="true").astype(int)
    tolerance = 0 if fmt.lower() == "png" else 24  # JPEG and WebP are lossy, even for grey
    assert abs(grey - mask).max() <= tolerance


def test_channels_alpha_ignores_the_background_colour(client: TestClient) -> None:
    with_colour = pixels(segment(client, channels="alpha", bg_color="red"))
    assert np.array_equal(with_colour, pixels(segment(client, channels="alpha")))


@pytest.mark.parametrize(
    ("colour", "corner"),
    [
        ("red", (255, 0, 0, 255)),
        ("#FF00FF", (255, 0, 255, 255)),
        ("00ff00", (0, 255, 0, 255)),
        ("0000ff80", (0, 0, 255, 128)),
        ("rebeccapurple", (102, 51, 153, 255)),
    ],
)
def test_bg_color_fills_the_background(
    client: TestClient, colour: str, corner: tuple[int, ...]
) -> None:
    values = pixels(segment(client, bg_color=colour))
    assert tuple(values[2, 2]) == corner
    assert values[120, 160, 3] == 255


def test_crop_trims_to_the_subject(client: TestClient) -> None:
    full = pixels(segment(client))
    cropped = decoded(segment(client, crop="true"))
    left, top, width, height = DISC
    # The disc's box, give or take the soft edge the mask's resize leaves.
    assert abs(cropped.width - width) <= 3 and abs(cropped.height - height) <= 3
    values = np.asarray(cropped)
    assert values[values.shape[0] // 2, values.shape[1] // 2, 3] == 255
    # The cut-out itself is unchanged inside the box.
    alpha = full[:, :, 3]
    ys, xs = np.nonzero(alpha > 0)
    assert ys.min() - 3 <= top <= ys.min() + 3 and xs.min() - 3 <= left <= xs.min() + 3


@pytest.mark.parametrize(("size", "most"), [("preview", 250_000), ("medium", 1_500_000)])
def test_size_caps_the_output(client: TestClient, size: str, most: int) -> None:
    big = jpeg(1000, 800)
    image = decoded(segment(client, photo=big, size=size))
    assert image.width * image.height <= most
    if most >= 1000 * 800:
        assert image.size == (1000, 800)  # below the cap: untouched
    else:
        assert image.width * image.height >= 0.95 * most
        assert abs(image.width / image.height - 1.25) < 0.02  # aspect kept


@pytest.mark.parametrize("size", ["hd", "full", "FULL"])
def test_large_sizes_keep_the_inputs_size(client: TestClient, size: str) -> None:
    assert decoded(segment(client, size=size)).size == (320, 240)


def test_despill_keeps_the_mask(client: TestClient) -> None:
    despilled = pixels(segment(client, despill="true"))
    assert np.array_equal(despilled[:, :, 3], pixels(segment(client))[:, :, 3])


def test_unknown_and_empty_fields_are_ignored(client: TestClient) -> None:
    plain = pixels(segment(client))
    fields = {"format": "", "crop": "", "bg_color": "", "shadow": "hard", "prompt": "x"}
    assert np.array_equal(pixels(segment(client, form=fields)), plain)


def form(**fields: str) -> Form:
    return Form(
        [Part(name, None, None, bytearray(value.encode())) for name, value in fields.items()]
    )


@pytest.mark.parametrize(
    ("fields", "options"),
    [
        ({}, CutoutOptions()),
        ({"format": "JPG"}, CutoutOptions(output_format="jpg")),
        ({"format": "webp"}, CutoutOptions(output_format="webp")),
        ({"channels": "alpha"}, CutoutOptions(only_mask=True)),
        ({"channels": "alpha", "bg_color": "red"}, CutoutOptions(only_mask=True)),
        ({"channels": "RGBA", "bg_color": "red"}, CutoutOptions(bgcolor=(255, 0, 0))),
        ({"bg_color": "#00FF0080"}, CutoutOptions(bgcolor=(0, 255, 0, 128))),
        ({"size": "preview"}, CutoutOptions(max_output_pixels=250_000)),
        ({"size": "medium"}, CutoutOptions(max_output_pixels=1_500_000)),
        ({"size": "hd"}, CutoutOptions(max_output_pixels=4_000_000)),
        ({"size": "full"}, CutoutOptions()),
        ({"crop": "true"}, CutoutOptions(crop=True)),
        ({"crop": "false"}, CutoutOptions()),
        ({"despill": "true"}, CutoutOptions(decontaminate=True)),
        ({"despill": "FALSE"}, CutoutOptions()),
    ],
)
def test_each_field_sets_its_option(fields: dict[str, str], options: CutoutOptions) -> None:
    assert segment_options(form(**fields)) == options


# --- errors --------------------------------------------------------------------------------


def test_a_missing_image_is_missing_image(client: TestClient) -> None:
    detail = "image_file: is required: a jpeg, png or webp file"
    # A form without it (another name is not it).
    response = client.post(PATH, headers=AUTH, files={"image": ("a.jpg", PHOTO)})
    assert_error(response, 400, "missing_image", detail)
    assert_error(segment(client, photo=b""), 400, "missing_image", "image_file: is empty")


@pytest.mark.parametrize("body", [{"json": {"image_file": "x"}}, {"content": b""}])
def test_a_body_that_is_not_a_form_is_missing_image(
    client: TestClient, body: dict[str, object]
) -> None:
    response = client.post(PATH, headers=AUTH, **body)
    assert_error(
        response,
        400,
        "missing_image",
        "image_file: is required: send multipart/form-data with the image in image_file",
    )


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"format": "gif"}, "format: must be one of png, jpg, webp"),
        ({"format": "zip"}, "format: must be one of png, jpg, webp"),
        ({"channels": "rgb"}, "channels: must be one of rgba, alpha"),
        ({"size": "4k"}, "size: must be one of preview, medium, hd, full"),
        ({"bg_color": "nope"}, f"bg_color: must be {COLOR_HELP}"),
        ({"bg_color": "#12345"}, f"bg_color: must be {COLOR_HELP}"),
        ({"crop": "maybe"}, "crop: must be true or false"),
        ({"despill": "2"}, "despill: must be true or false"),
    ],
)
def test_a_bad_field_is_invalid_parameter_naming_it(
    client: TestClient, fields: dict[str, str], detail: str
) -> None:
    assert_error(segment(client, form=fields), 400, "invalid_parameter", detail)


@pytest.mark.parametrize(
    ("photo", "detail"),
    [
        (b"not an image", "image: must be a jpeg, png or webp image"),
        (PHOTO[:200], "image: the jpeg is truncated or corrupt"),
        (png(32, 32), "image: width and height must be at least 64 pixels"),
    ],
)
def test_an_unreadable_image_is_invalid_image(
    client: TestClient, photo: bytes, detail: str
) -> None:
    assert_error(segment(client, photo=photo), 400, "invalid_image", detail)


def test_form_errors_are_bad_request(client: TestClient) -> None:
    headers = {**AUTH, "content-type": "multipart/form-data; boundary=xx"}
    response = client.post(PATH, content=b"garbage", headers=headers)
    assert_error(response, 400, "bad_request", "body: malformed multipart/form-data")
    twice = client.post(
        PATH, headers=AUTH, files={"image_file": ("a.jpg", PHOTO)}, data={"crop": ["1", "0"]}
    )
    assert_error(twice, 400, "bad_request", "crop: must be sent only once")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "wrong"},
        {"authorization": f"Bearer {KEY}"},  # Photoroom's key goes in x-api-key only
    ],
    ids=["none", "empty", "wrong", "bearer"],
)
def test_a_missing_or_wrong_key_is_403(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(PATH, headers=headers, files={"image_file": ("a.jpg", PHOTO)})
    assert_error(response, 403, "invalid_api_key", "x-api-key: invalid or missing API key")


def test_with_no_keys_configured_any_key_works_but_one_is_needed(open_client: TestClient) -> None:
    files = {"image_file": ("a.jpg", PHOTO)}
    assert open_client.post(PATH, headers={"x-api-key": "anything"}, files=files).status_code == 200
    assert open_client.post(PATH, files=files).status_code == 403


def test_rate_limit_is_429_with_retry_after(client: TestClient, clock: ManualClock) -> None:
    for _ in range(150):
        assert segment(client, photo=None).status_code == 400
    response = segment(client)
    assert_error(
        response,
        429,
        "rate_limit_exceeded",
        "You have exceeded the rate limit of 150 requests within a 10 second period,"
        " and have been timed out for 60 seconds.",
    )
    assert response.headers["retry-after"] == "60"


def test_a_body_over_10_mib_is_413(client: TestClient) -> None:
    response = segment(client, photo=b"x" * (10 * 1024 * 1024))
    assert_error(
        response, 413, "payload_too_large", "body: payloads cannot be larger than 10MiB in size"
    )


def test_overload_is_503_with_retry_after(tmp_path: Path, engine: BrightnessEngine) -> None:
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), max_uploads=2)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        wait_ready(client)
        admission = app.state.services.pipeline.admission
        with admission.ticket(), admission.ticket():
            response = segment(client)
        assert_error(
            response,
            503,
            "service_unavailable",
            "server: too many requests in progress, please retry shortly",
        )
        assert response.headers["retry-after"] == "1"


def test_unexpected_errors_are_a_plain_500(tmp_path: Path) -> None:
    app = create_app(Settings(cache_dir=tmp_path, api_keys=frozenset({KEY})), engine=BrokenEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = segment(client)
    assert_error(
        response,
        500,
        "internal_error",
        "An unexpected server error has occurred, please try again later.",
    )
    assert "deadbeef" not in response.text


def test_requests_are_counted_under_the_route(client: TestClient) -> None:
    segment(client)
    segment(client, photo=None)
    text = client.get("/metrics").text
    assert f'matte_requests_total{{route="{PATH}",status="200"}} 1.0' in text
    assert f'matte_requests_total{{route="{PATH}",status="400"}} 1.0' in text


# --- the dialect's parts -------------------------------------------------------------------


def test_the_dialect_serves_one_post_route() -> None:
    dialect = PhotoroomDialect()
    assert dialect.name == "photoroom"
    (route,) = dialect.routes()
    assert isinstance(route, Route)
    assert route.path == PATH == "/v1/segment"
    assert route.methods == {"POST"}


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (Unauthorized(), 403, "invalid_api_key"),
        (BadRequest("image_file: x", field="image_file", problem="missing"), 400, "missing_image"),
        (BadRequest("image: x", field="image_file"), 400, "invalid_image"),
        (BadRequest("size: x", field="size"), 400, "invalid_parameter"),
        (BadRequest("body: x"), 400, "bad_request"),
        (PayloadTooLarge(1024), 413, "payload_too_large"),
        (RateLimited(150, 10, 60, 42), 429, "rate_limit_exceeded"),
        (Unavailable("server: busy", 7), 503, "service_unavailable"),
    ],
)
def test_every_error_has_its_status_code_and_type(
    error: BadRequest | Unauthorized | PayloadTooLarge | RateLimited | Unavailable,
    status: int,
    kind: str,
) -> None:
    response = PhotoroomDialect().render_error(error, "a" * 32)
    assert response.status_code == status
    body = json.loads(bytes(response.body))
    assert body["status_code"] == status and body["type"] == kind
    assert set(body) == {"detail", "status_code", "type"}
    for name, value in error.headers.items():
        assert response.headers[name] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (field, value)
        for field in (FORMAT, CHANNEL, SIZE, CROP, DESPILL)
        for value in field.schema["enum"]
    ],
)
def test_every_described_value_is_taken(client: TestClient, field: Field, value: str) -> None:
    assert segment(client, form={field.name: value}).status_code == 200
    assert segment(client, form={field.name: value + "x"}).status_code == 400


def test_the_description_is_the_handlers() -> None:
    api = PhotoroomDialect().api()
    (operation,) = api.operations
    assert operation.paths == (PATH,) and operation.method == "POST"
    assert operation.body is not None
    names = [field.name for field in operation.body.fields]
    assert names == ["image_file", "format", "channels", "bg_color", "size", "crop", "despill"]
    assert FORMAT.default == "png" and SIZE.default == "full"
