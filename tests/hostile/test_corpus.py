"""Every case of the hostile-input corpus (cases.py) against every route that takes
it, in-process on the fake engine (decoding is real): each answer is the expected
refusal in that dialect's own error shape, or the expected image, within
REQUEST_BOUND_S, and the server stays healthy throughout and after."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.app import create_app
from server.dialects import modelslab, octoai, omixa, photoroom, rembg
from server.settings import Settings
from tests.conftest import AUTH, KEY, PATH, wait_ready
from tests.conftest import assert_error as assert_stability_error
from tests.fakes import BrightnessEngine
from tests.hostile.cases import (
    IMAGE_CASES,
    IMAGE_FIELD_CASES,
    JSON_BODY_CASES,
    MULTIPART_CASES,
    SIZE,
    BodyCase,
    FieldCase,
    ImageCase,
    save,
)
from tests.server.dialects.conftest import assert_detail as assert_rembg_detail
from tests.server.dialects.test_imgproc import assert_problem, invalid
from tests.server.dialects.test_modelslab import assert_error as assert_modelslab_error
from tests.server.dialects.test_octoai import assert_422
from tests.server.dialects.test_omixa import assert_error as assert_omixa_error
from tests.server.dialects.test_omixa import image_of
from tests.server.dialects.test_photoroom import assert_error as assert_photoroom_error

# Each request's answer, refused or not, on this project's busy 2-core machine.
REQUEST_BOUND_S = 2.0
# cases x routes, recorded in README's Tests section; test_the_count keeps them equal.
HOSTILE_COUNT = 418
IMGPROC_AUTH = {"x-api-key": KEY}
UPLOAD = "/v1/images/upload"
# The body is read before the id is looked up, so no stored image is needed.
REMOVE = "/v1/images/image_aaaaaaaaaaaaaaaaaaaaaaaa/remove-background"

Size = tuple[int, int]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One server for the whole corpus, so a case that broke it shows in those after."""
    settings = Settings(
        cache_dir=tmp_path_factory.mktemp("hostile"),
        api_keys=frozenset({KEY}),
        rate_limit_requests=100_000,  # the corpus is hundreds of requests on one key
    )
    with TestClient(
        create_app(settings, engine=BrightnessEngine()), raise_server_exceptions=False
    ) as running:
        wait_ready(running)
        yield running


def timed(send: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.perf_counter()
    response = send()
    elapsed = time.perf_counter() - started
    assert elapsed < REQUEST_BOUND_S, f"took {elapsed:.2f} s"
    return response


def png_size(data: bytes) -> Size:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the routes, each with its own way to send and its own error shape ---------------------


@dataclass(frozen=True)
class ImageRoute:
    """A route that takes an image: how to send one, how its refusal of a bad one
    reads (a message starting `image:`), and what accepting a good one gives back."""

    name: str
    send: Callable[[TestClient, ImageCase], httpx.Response]
    refused: Callable[[httpx.Response, str], None]
    accepted: Callable[[TestClient, httpx.Response], Size]


def _stability_send(client: TestClient, case: ImageCase) -> httpx.Response:
    files = {"image": (case.filename, case.data, "application/octet-stream")}
    response: httpx.Response = client.post(PATH, headers=AUTH, files=files)
    return response


def _stability_accepted(client: TestClient, response: httpx.Response) -> Size:
    assert response.status_code == 200, response.text
    return png_size(response.content)


def omixa_body(url: object) -> dict[str, object]:
    image = {"type": "image_url", "image_url": {"url": url}}
    return {"model": omixa.MODEL, "prompt": "", "input_images": [image]}


def _omixa_send(client: TestClient, case: ImageCase) -> httpx.Response:
    body = omixa_body("data:image/png;base64," + b64(case.data))
    response: httpx.Response = client.post(omixa.PATH, headers=AUTH, json=body)
    return response


def _omixa_refused(response: httpx.Response, message: str) -> None:
    assert_omixa_error(
        response, 400, message, "invalid_request_error", "bad_request", omixa.URL_FIELD
    )


def _octoai_send(client: TestClient, case: ImageCase) -> httpx.Response:
    body = {"init_image": b64(case.data)}
    response: httpx.Response = client.post(octoai.PATH, headers=AUTH, json=body)
    return response


def _octoai_accepted(client: TestClient, response: httpx.Response) -> Size:
    assert response.status_code == 200, response.text
    return png_size(base64.b64decode(response.json()["image_b64"]))


def _modelslab_send(client: TestClient, case: ImageCase) -> httpx.Response:
    body = {"key": KEY, "image": b64(case.data), "base64": True}
    response: httpx.Response = client.post(modelslab.PATHS[1], json=body)
    return response


def _modelslab_accepted(client: TestClient, response: httpx.Response) -> Size:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    return png_size(base64.b64decode(body["output"][0]))


def _imgproc_send(client: TestClient, case: ImageCase) -> httpx.Response:
    files = {"image": (case.filename, case.data, "application/octet-stream")}
    fields = {"name": "photo"}
    response: httpx.Response = client.post(UPLOAD, headers=IMGPROC_AUTH, files=files, data=fields)
    return response


def _imgproc_refused(response: httpx.Response, message: str) -> None:
    assert_problem(response, 422, invalid([message]), [message])


def _imgproc_accepted(client: TestClient, response: httpx.Response) -> Size:
    """Stored as sent (IMG Processing serves and measures stored images without
    their EXIF turn), then cut out upright."""
    assert response.status_code == 201, response.text
    stored = response.json()
    assert (stored["width"], stored["height"]) == SIZE
    path = f"/v1/images/{stored['id']}/remove-background"
    cutout = timed(lambda: client.post(path, headers=IMGPROC_AUTH, json={}))
    assert cutout.status_code == 201, cutout.text
    made = cutout.json()
    assert made["format"] == "png"
    return made["width"], made["height"]


def _photoroom_send(client: TestClient, case: ImageCase) -> httpx.Response:
    files = {"image_file": (case.filename, case.data, "application/octet-stream")}
    response: httpx.Response = client.post(photoroom.PATH, headers=IMGPROC_AUTH, files=files)
    return response


def _photoroom_refused(response: httpx.Response, message: str) -> None:
    assert_photoroom_error(response, 400, "invalid_image", message)


def _rembg_send(client: TestClient, case: ImageCase) -> httpx.Response:
    files = {"file": (case.filename, case.data, "application/octet-stream")}
    response: httpx.Response = client.post(rembg.PATH, headers=AUTH, files=files)
    return response


def _png_accepted(client: TestClient, response: httpx.Response) -> Size:
    assert response.status_code == 200, response.text
    return png_size(response.content)


IMAGE_ROUTES = (
    ImageRoute(
        "stability",
        _stability_send,
        lambda response, message: assert_stability_error(response, 400, "bad_request", message),
        _stability_accepted,
    ),
    ImageRoute(
        "omixa",
        _omixa_send,
        _omixa_refused,
        lambda client, response: image_of(response).size,
    ),
    ImageRoute(
        "octoai",
        _octoai_send,
        lambda response, message: assert_422(
            response, ["body", octoai.IMAGE_FIELD], message, "value_error"
        ),
        _octoai_accepted,
    ),
    ImageRoute(
        "modelslab",
        _modelslab_send,
        lambda response, message: assert_modelslab_error(response, 400, message),
        _modelslab_accepted,
    ),
    ImageRoute("imgproc", _imgproc_send, _imgproc_refused, _imgproc_accepted),
    ImageRoute("photoroom", _photoroom_send, _photoroom_refused, _png_accepted),
    ImageRoute(
        "rembg",
        _rembg_send,
        lambda response, message: assert_rembg_detail(response, 400, message),
        _png_accepted,
    ),
)


def assert_healthy(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.text


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[case.name for case in IMAGE_CASES])
@pytest.mark.parametrize("route", IMAGE_ROUTES, ids=[route.name for route in IMAGE_ROUTES])
def test_every_image_case_on_every_route(
    client: TestClient, route: ImageRoute, case: ImageCase
) -> None:
    response = timed(lambda: route.send(client, case))
    if case.refusal is None:
        assert route.accepted(client, response) == case.size
    else:
        route.refused(response, case.refusal)
    assert_healthy(client)


# --- multipart bodies (Stability, IMG Processing's upload) ----------------------------------


def _multipart_stability(client: TestClient, case: BodyCase) -> None:
    headers = {**AUTH, "content-type": case.content_type}
    response = timed(lambda: client.post(PATH, headers=headers, content=case.body))
    assert_stability_error(response, 400, "bad_request", case.refusal)


def _multipart_imgproc(client: TestClient, case: BodyCase) -> None:
    headers = {**IMGPROC_AUTH, "content-type": case.content_type}
    response = timed(lambda: client.post(UPLOAD, headers=headers, content=case.body))
    if case.upload_problem is None:
        assert_problem(response, 400, case.refusal)
    else:
        assert_problem(response, 422, invalid([case.upload_problem]), [case.upload_problem])


MULTIPART_ROUTES: dict[str, Callable[[TestClient, BodyCase], None]] = {
    "stability": _multipart_stability,
    "imgproc": _multipart_imgproc,
}


@pytest.mark.parametrize("case", MULTIPART_CASES, ids=[case.name for case in MULTIPART_CASES])
@pytest.mark.parametrize("route", sorted(MULTIPART_ROUTES))
def test_every_multipart_case_on_every_form_route(
    client: TestClient, route: str, case: BodyCase
) -> None:
    MULTIPART_ROUTES[route](client, case)
    assert_healthy(client)


# --- JSON bodies (Omixa, OctoAI, ModelsLab, IMG Processing's remove-background) -------------


def _json_omixa(client: TestClient, case: BodyCase) -> None:
    headers = {**AUTH, "content-type": case.content_type}
    response = timed(lambda: client.post(omixa.PATH, headers=headers, content=case.body))
    assert_omixa_error(response, 400, case.refusal, "invalid_request_error", "bad_request", "body")


def _json_octoai(client: TestClient, case: BodyCase) -> None:
    headers = {**AUTH, "content-type": case.content_type}
    response = timed(lambda: client.post(octoai.PATH, headers=headers, content=case.body))
    assert_422(response, ["body"], case.refusal, case.problem)


def _json_modelslab(client: TestClient, case: BodyCase) -> None:
    headers = {"content-type": case.content_type}
    path = modelslab.PATHS[1]
    response = timed(lambda: client.post(path, headers=headers, content=case.body))
    assert_modelslab_error(response, 400, case.refusal)


def _json_imgproc(client: TestClient, case: BodyCase) -> None:
    headers = {**IMGPROC_AUTH, "content-type": case.content_type}
    response = timed(lambda: client.post(REMOVE, headers=headers, content=case.body))
    assert_problem(response, 400, case.refusal)


JSON_ROUTES: dict[str, Callable[[TestClient, BodyCase], None]] = {
    "omixa": _json_omixa,
    "octoai": _json_octoai,
    "modelslab": _json_modelslab,
    "imgproc": _json_imgproc,
}


@pytest.mark.parametrize("case", JSON_BODY_CASES, ids=[case.name for case in JSON_BODY_CASES])
@pytest.mark.parametrize("route", sorted(JSON_ROUTES))
def test_every_json_body_on_every_json_route(
    client: TestClient, route: str, case: BodyCase
) -> None:
    JSON_ROUTES[route](client, case)
    assert_healthy(client)


def _field_omixa(client: TestClient, case: FieldCase) -> None:
    body = omixa_body(case.value)
    response = timed(lambda: client.post(omixa.PATH, headers=AUTH, json=body))
    field = omixa.URL_FIELD
    message = f"{field}: {case.refusal}"
    assert_omixa_error(response, 400, message, "invalid_request_error", "bad_request", field)


def _field_octoai(client: TestClient, case: FieldCase) -> None:
    body = {"init_image": case.value}
    response = timed(lambda: client.post(octoai.PATH, headers=AUTH, json=body))
    field = octoai.IMAGE_FIELD
    assert_422(response, ["body", field], f"{field}: {case.refusal}", case.problem)


def _field_modelslab(client: TestClient, case: FieldCase) -> None:
    body = {"key": KEY, "image": case.value}
    response = timed(lambda: client.post(modelslab.PATHS[1], json=body))
    assert_modelslab_error(response, 400, f"image: {case.refusal}")


FIELD_ROUTES: dict[str, Callable[[TestClient, FieldCase], None]] = {
    "omixa": _field_omixa,
    "octoai": _field_octoai,
    "modelslab": _field_modelslab,
}


@pytest.mark.parametrize("case", IMAGE_FIELD_CASES, ids=[case.name for case in IMAGE_FIELD_CASES])
@pytest.mark.parametrize("route", sorted(FIELD_ROUTES))
def test_every_image_field_value_on_every_json_route(
    client: TestClient, route: str, case: FieldCase
) -> None:
    FIELD_ROUTES[route](client, case)
    assert_healthy(client)


# --- after the corpus ------------------------------------------------------------------------


def test_the_count() -> None:
    count = (
        len(IMAGE_CASES) * len(IMAGE_ROUTES)
        + len(MULTIPART_CASES) * len(MULTIPART_ROUTES)
        + len(JSON_BODY_CASES) * len(JSON_ROUTES)
        + len(IMAGE_FIELD_CASES) * len(FIELD_ROUTES)
    )
    print(f"hostile-input count: {count} requests")
    assert count == HOSTILE_COUNT


@pytest.mark.parametrize("route", IMAGE_ROUTES, ids=[route.name for route in IMAGE_ROUTES])
def test_a_normal_request_still_succeeds_after_the_corpus(
    client: TestClient, route: ImageRoute
) -> None:
    normal = ImageCase(
        "a normal photo", lambda: save(Image.new("RGB", SIZE, "white"), "JPEG"), None
    )
    response = timed(lambda: route.send(client, normal))
    assert route.accepted(client, response) == SIZE
    assert_healthy(client)
