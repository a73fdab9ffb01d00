"""rembg's server API (`POST /api/remove`, `GET /api/remove?url=`) over HTTP, on the fake engine.

The contract is rembg's FastAPI app: form fields a/af/ab/ae/om/ppm/model, query
parameters bgc/extras even on POST, a PNG back, FastAPI's 422 validation body
(checked against what FastAPI 0.165 with pydantic 2.14 answers for rembg's
declarations), `{"detail": "..."}` for everything else.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.routing import Route
from starlette.testclient import TestClient

from server.app import create_app
from server.dialects import rembg_api
from server.dialects.rembg import PATH, RembgDialect
from server.dialects.rembg_fields import MODEL_PATTERN, MODELS, OPTION_NAMES
from server.errors import RateLimited, Unauthorized
from server.operations import Field
from server.outbound import Outbound
from server.settings import Settings, SettingsError
from tests.conftest import ID, KEY, jpeg, png, post, wait_ready
from tests.fakes import BrightnessEngine, BrokenEngine, ManualClock
from tests.local_http import Answer, LocalServer, answer
from tests.server.dialects.conftest import assert_detail

AUTH = {"authorization": f"Bearer {KEY}"}
PHOTO = jpeg(320, 240)
BOOL_MSG = "Input should be a valid boolean, unable to interpret input"
INT_MSG = "Input should be a valid integer, unable to parse string as an integer"


def remove(
    client: TestClient,
    photo: bytes | None = PHOTO,
    query: str = "",
    headers: dict[str, str] | None = None,
    filename: str | None = "photo.jpg",
    form: Mapping[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    files = {"file": (filename, photo, "image/jpeg")} if photo is not None else None
    data = {**(form or {}), **fields}
    response: httpx.Response = client.post(
        PATH + query, headers={**AUTH, **(headers or {})}, files=files, data=data or None
    )
    return response


def decoded(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert image.format == "PNG"
    return image


def pixels(response: httpx.Response) -> np.ndarray:
    return np.asarray(decoded(response))


def stability(client: TestClient, **fields: str) -> np.ndarray:
    """The Stability endpoint's answer for the same photo: the same pipeline."""
    response = post(client, PHOTO, None, "photo.jpg", **fields)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def assert_422(response: httpx.Response, *details: dict[str, Any]) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": list(details)}


def detail(kind: str, loc: list[str], msg: str, raw: object, **ctx: object) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": raw}
    if ctx:
        entry["ctx"] = ctx
    return entry


# --- success -------------------------------------------------------------------------------


def test_a_cutout_is_an_rgba_png_of_the_inputs_size(client: TestClient) -> None:
    image = decoded(remove(client))
    assert image.mode == "RGBA" and image.size == (320, 240)
    values = np.asarray(image)
    # The fake engine keeps the bright disc and cuts the dark corners.
    assert values[120, 160, 3] == 255 and values[2, 2, 3] == 0
    assert np.array_equal(values, stability(client))


def test_the_header_set(client: TestClient) -> None:
    response = remove(client)
    assert response.status_code == 200
    headers = response.headers
    assert headers["content-type"] == "image/png"
    assert int(headers["content-length"]) == len(response.content)
    assert ID.fullmatch(headers["x-request-id"])
    assert headers["x-content-type-options"] == "nosniff"
    # Nothing of the other dialects' headers.
    for name in ("finish-reason", "seed", "www-authenticate", "retry-after"):
        assert name not in headers


def test_the_file_may_be_a_plain_part(client: TestClient) -> None:
    # FastAPI's `bytes = File()` takes a part without a filename too.
    assert np.array_equal(pixels(remove(client, filename=None)), pixels(remove(client)))


def test_om_answers_the_greyscale_mask(client: TestClient) -> None:
    image = decoded(remove(client, om="true"))
    assert image.mode == "L" and image.size == (320, 240)
    assert np.array_equal(np.asarray(image), stability(client, only_mask="true"))


def test_ppm_post_processes_the_mask(client: TestClient) -> None:
    processed = pixels(remove(client, ppm="true"))
    assert np.array_equal(processed, stability(client, post_process_mask="true"))
    assert not np.array_equal(processed, pixels(remove(client)))


def test_alpha_matting_and_its_thresholds(client: TestClient) -> None:
    matted = pixels(remove(client, a="true", af="230", ab="20", ae="5"))
    expected = stability(
        client,
        alpha_matting="true",
        alpha_matting_foreground_threshold="230",
        alpha_matting_background_threshold="20",
        alpha_matting_erode_size="5",
    )
    assert np.array_equal(matted, expected)
    assert not np.array_equal(matted, pixels(remove(client, a="true")))
    assert not np.array_equal(matted, pixels(remove(client)))


def test_an_erode_size_past_100_runs_as_100(client: TestClient) -> None:
    # rembg sets no upper bound on ae; Matte's erosion stops at 100 px.
    at_limit = pixels(remove(client, a="true", ae="100"))
    assert np.array_equal(pixels(remove(client, a="true", ae="5000")), at_limit)
    assert np.array_equal(pixels(remove(client, a="true", ae="9" * 40)), at_limit)


def test_thresholds_without_matting_change_nothing(client: TestClient) -> None:
    # rembg uses af/ab/ae only for alpha matting; an inverted pair is no error then.
    assert np.array_equal(pixels(remove(client, af="5", ab="250", ae="0")), pixels(remove(client)))


@pytest.mark.parametrize(
    ("bgc", "corner"),
    [
        ("0,0,255", (0, 0, 255, 255)),
        ("0,0,255,255", (0, 0, 255, 255)),
        ("0,255,0,128", (0, 255, 0, 128)),
        ("red", (255, 0, 0, 255)),
        ("00ff00", (0, 255, 0, 255)),
    ],
)
def test_bgc_is_a_query_parameter_even_on_post(
    client: TestClient, bgc: str, corner: tuple[int, ...]
) -> None:
    values = pixels(remove(client, query=f"?bgc={bgc}"))
    assert tuple(values[2, 2]) == corner
    assert values[120, 160, 3] == 255


def test_bgc_in_the_form_and_options_in_the_query_are_not_read_on_post(
    client: TestClient,
) -> None:
    # rembg's POST reads bgc from the query only and the options from the form only.
    plain = pixels(remove(client))
    assert np.array_equal(pixels(remove(client, bgc="255,0,0")), plain)
    assert np.array_equal(pixels(remove(client, query="?om=true&a=true")), plain)


def test_bgc_is_ignored_with_om(client: TestClient) -> None:
    # rembg applies the background to the cut-out only, never to the mask.
    mask = decoded(remove(client, query="?bgc=255,0,0", om="true"))
    assert mask.mode == "L"


@pytest.mark.parametrize("extras", ['{"sam_prompt": [{"type": "point"}]}', "not json", "[1, 2]"])
def test_extras_is_accepted_and_ignored(client: TestClient, extras: str) -> None:
    # rembg hands extras to its other models' sessions and ignores JSON it cannot read.
    response = remove(client, query="?" + str(httpx.QueryParams({"extras": extras})))
    assert np.array_equal(pixels(response), pixels(remove(client)))


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_form_fields_are_not_sent(client: TestClient, value: str) -> None:
    if value:
        # FastAPI strips nothing: whitespace is a value, and not a boolean.
        response = remove(client, a=value)
        assert_422(response, detail("bool_parsing", ["body", "a"], BOOL_MSG, value))
        return
    fields = dict.fromkeys(("model", "a", "af", "ab", "ae", "om", "ppm"), value)
    assert np.array_equal(pixels(remove(client, form=fields)), pixels(remove(client)))


def test_the_last_of_a_repeated_field_counts(client: TestClient) -> None:
    files = [
        ("file", ("a.png", png(32, 32), "image/png")),  # refused, were it the one read
        ("file", ("b.jpg", PHOTO, "image/jpeg")),
    ]
    data = {"om": ["false", "true"]}
    response = client.post(PATH, headers=AUTH, files=files, data=data)
    assert decoded(response).mode == "L"


def test_an_urlencoded_form_is_read(client: TestClient) -> None:
    # FastAPI reads form fields from urlencoded bodies too (the file then as text).
    body = b"om=true&file=" + _percent(PHOTO)
    headers = {**AUTH, "content-type": "application/x-www-form-urlencoded"}
    response = client.post(PATH, content=body, headers=headers)
    assert np.array_equal(pixels(response), pixels(remove(client, om="true")))


def _percent(data: bytes) -> bytes:
    return "".join(f"%{byte:02X}" for byte in data).encode()


# --- models --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "isnet-general-use"])
def test_isnet_runs_and_so_does_no_model(client: TestClient, model: str | None) -> None:
    fields = {} if model is None else {"model": model}
    assert np.array_equal(pixels(remove(client, form=fields)), pixels(remove(client)))


@pytest.mark.parametrize("model", ["u2net", "birefnet-general", "sam", "xu2netx"])
def test_another_rembg_model_is_a_400_naming_what_runs(client: TestClient, model: str) -> None:
    # "xu2netx" passes rembg's unanchored pattern (rembg then answers 500).
    assert_detail(
        remove(client, model=model),
        400,
        f"model: {model} is not available on this server; it runs isnet-general-use "
        "(send model=isnet-general-use or leave model out)",
    )


def test_any_model_setting_runs_isnet_for_every_rembg_name(
    tmp_path: Path, engine: BrightnessEngine
) -> None:
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), rembg_any_model=True)
    with TestClient(create_app(settings, engine=engine)) as client:
        wait_ready(client)
        expected = pixels(remove(client))
        for model in ("u2net", "birefnet-massive", "bria-rmbg"):
            assert np.array_equal(pixels(remove(client, model=model)), expected)
        assert remove(client, model="xu2netx").status_code == 400  # not a rembg name
        assert remove(client, model="U2NET").status_code == 422


def test_the_model_names_are_rembgs() -> None:
    assert len(MODELS) == len(set(MODELS)) == 19
    assert {"u2net", "isnet-general-use", "birefnet-general", "bria-rmbg"} <= set(MODELS)
    assert "(" + "|".join(MODELS) + ")" == MODEL_PATTERN


@pytest.mark.parametrize("model", ["foo", "U2NET", "isnet"])
def test_a_name_outside_rembgs_pattern_is_a_422(client: TestClient, model: str) -> None:
    assert_422(
        remove(client, model=model),
        detail(
            "string_pattern_mismatch",
            ["body", "model"],
            f"String should match pattern '{MODEL_PATTERN}'",
            model,
            pattern=MODEL_PATTERN,
        ),
    )


# --- FastAPI's parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *((text, True) for text in ("true", "True", "TRUE", "1", "t", "T", "yes", "Y", "on", "On")),
        *((text, False) for text in ("false", "FALSE", "0", "f", "no", "N", "off", "oFF")),
    ],
)
def test_booleans_are_fastapis(client: TestClient, text: str, value: bool) -> None:
    image = decoded(remove(client, om=text))
    assert image.mode == ("L" if value else "RGBA")


@pytest.mark.parametrize("text", [" true", "true ", "2", "1.0", "maybe", "ja"])
def test_other_booleans_are_a_422(client: TestClient, text: str) -> None:
    assert_422(remove(client, om=text), detail("bool_parsing", ["body", "om"], BOOL_MSG, text))


@pytest.mark.parametrize("text", ["230", " 230", "230\n", "+230", "2_30", "230.0", "0230.00"])
def test_integers_are_fastapis(client: TestClient, text: str) -> None:
    expected = pixels(remove(client, a="true", af="230", ab="20"))
    assert np.array_equal(pixels(remove(client, a="true", af=text, ab="20")), expected)


@pytest.mark.parametrize(
    ("field", "text", "kind", "msg", "ctx"),
    [
        ("af", "abc", "int_parsing", INT_MSG, {}),
        ("af", "12.5", "int_parsing", INT_MSG, {}),
        ("af", "1e2", "int_parsing", INT_MSG, {}),
        ("af", "0x10", "int_parsing", INT_MSG, {}),
        ("af", "1__2", "int_parsing", INT_MSG, {}),
        ("af", "\uff11\uff12", "int_parsing", INT_MSG, {}),  # fullwidth digits
        ("af", "256", "less_than_equal", "Input should be less than or equal to 255", {"le": 255}),
        (
            "af",
            "9" * 30,
            "less_than_equal",
            "Input should be less than or equal to 255",
            {"le": 255},
        ),
        ("ab", "-1", "greater_than_equal", "Input should be greater than or equal to 0", {"ge": 0}),
        ("ae", "-3", "greater_than_equal", "Input should be greater than or equal to 0", {"ge": 0}),
    ],
)
def test_bad_integers_are_a_422(
    client: TestClient, field: str, text: str, kind: str, msg: str, ctx: dict[str, int]
) -> None:
    assert_422(remove(client, form={field: text}), detail(kind, ["body", field], msg, text, **ctx))


def test_every_problem_is_reported_in_fastapis_order(client: TestClient) -> None:
    response = remove(
        client,
        photo=None,
        query="?bgc=nope",
        ppm="x",
        model="foo",
        a="maybe",
        af="abc",
        ab="-1",
        ae="-3",
    )
    colour = "bgc: must be a colour name, a hex colour (rgb, rgba, rrggbb or rrggbbaa) or r,g,b[,a]"
    assert_422(
        response,
        # The dependency's query parameter first, then its form fields, then the file.
        detail("value_error", ["query", "bgc"], f"Value error, {colour}", "nope"),
        detail(
            "string_pattern_mismatch",
            ["body", "model"],
            f"String should match pattern '{MODEL_PATTERN}'",
            "foo",
            pattern=MODEL_PATTERN,
        ),
        detail("bool_parsing", ["body", "a"], BOOL_MSG, "maybe"),
        detail("int_parsing", ["body", "af"], INT_MSG, "abc"),
        detail(
            "greater_than_equal",
            ["body", "ab"],
            "Input should be greater than or equal to 0",
            "-1",
            ge=0,
        ),
        detail(
            "greater_than_equal",
            ["body", "ae"],
            "Input should be greater than or equal to 0",
            "-3",
            ge=0,
        ),
        detail("bool_parsing", ["body", "ppm"], BOOL_MSG, "x"),
        detail("missing", ["body", "file"], "Field required", None),
    )


def test_a_missing_file_is_a_422(client: TestClient) -> None:
    missing = detail("missing", ["body", "file"], "Field required", None)
    assert_422(remove(client, photo=None), missing)
    assert_422(remove(client, photo=None, om="true"), missing)
    # An empty part that is not a file is missing too (FastAPI reads it as "").
    assert_422(remove(client, photo=b"", filename=None), missing)
    # Another body than a form holds no file.
    assert_422(client.post(PATH, json={"file": "x"}, headers=AUTH), missing)
    assert_422(client.post(PATH, headers=AUTH), missing)


def test_inverted_thresholds_with_matting_are_a_422(client: TestClient) -> None:
    assert_422(
        remove(client, a="true", af="20", ab="20"),
        detail(
            "value_error",
            ["body", "af"],
            "Value error, af must be greater than ab for alpha matting",
            20,
        ),
    )


# --- other errors: a `detail` string -------------------------------------------------------


def test_an_empty_file_is_a_400(client: TestClient) -> None:
    assert_detail(remove(client, photo=b""), 400, "file: is empty: the part holds no bytes")


@pytest.mark.parametrize(
    ("photo", "message"),
    [
        (b"not an image", "image: must be a jpeg, png or webp image"),
        (b"GIF89a" + b"\0" * 20, "image: gif is not supported: must be a jpeg, png or webp image"),
        (PHOTO[:200], "image: the jpeg is truncated or corrupt"),
        (png(32, 32), "image: width and height must be at least 64 pixels"),
    ],
)
def test_an_unreadable_image_is_a_400_not_rembgs_500(
    client: TestClient, photo: bytes, message: str
) -> None:
    assert_detail(remove(client, photo=photo), 400, message)


def test_a_malformed_multipart_body_is_a_400(client: TestClient) -> None:
    headers = {**AUTH, "content-type": "multipart/form-data; boundary=xx"}
    response = client.post(PATH, content=b"garbage", headers=headers)
    assert_detail(response, 400, "body: malformed multipart/form-data")


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": ""}, {"authorization": "Bearer "}, {"authorization": "Bearer nope"}],
    ids=["none", "empty", "bearer-empty", "wrong"],
)
def test_with_keys_configured_a_bearer_key_is_needed(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post(PATH, files={"file": ("a.jpg", PHOTO)}, headers=headers)
    assert_detail(response, 401, "authorization: invalid or missing header value")
    assert response.headers["www-authenticate"] == "Bearer"
    fetched = client.get(PATH, params={"url": "http://example.com/a.jpg"}, headers=headers)
    assert fetched.status_code == 401


@pytest.mark.parametrize("authorization", [f"Bearer {KEY}", f"bearer {KEY}", KEY])
def test_the_configured_key_is_accepted(client: TestClient, authorization: str) -> None:
    assert remove(client, headers={"authorization": authorization}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer anything"}])
def test_with_no_keys_configured_no_key_is_needed(
    open_client: TestClient, headers: dict[str, str]
) -> None:
    response = open_client.post(PATH, files={"file": ("a.jpg", PHOTO)}, headers=headers)
    assert decoded(response).size == (320, 240)


def test_rate_limit_is_429_with_retry_after(client: TestClient, clock: ManualClock) -> None:
    for _ in range(150):
        assert remove(client, photo=None).status_code == 422
    response = remove(client)
    assert_detail(
        response,
        429,
        "You have exceeded the rate limit of 150 requests within a 10 second period,"
        " and have been timed out for 60 seconds.",
    )
    assert response.headers["retry-after"] == "60"


def test_keyless_callers_are_limited_by_address(open_client: TestClient) -> None:
    for _ in range(150):
        assert open_client.post(PATH).status_code == 422
    assert open_client.post(PATH).status_code == 429
    assert open_client.get(PATH).status_code == 429


def test_a_body_over_10_mib_is_413(client: TestClient) -> None:
    response = remove(client, photo=b"x" * (10 * 1024 * 1024))
    assert_detail(response, 413, "body: payloads cannot be larger than 10MiB in size")


def test_overload_is_503_with_retry_after(tmp_path: Path, engine: BrightnessEngine) -> None:
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}), max_uploads=2)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        wait_ready(client)
        admission = app.state.services.pipeline.admission
        with admission.ticket(), admission.ticket():
            response = remove(client)
        assert_detail(response, 503, "server: too many requests in progress, please retry shortly")
        assert response.headers["retry-after"] == "1"


def test_unexpected_errors_are_a_plain_500(tmp_path: Path) -> None:
    app = create_app(Settings(cache_dir=tmp_path, api_keys=frozenset({KEY})), engine=BrokenEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = remove(client)
    assert_detail(response, 500, "An unexpected server error has occurred, please try again later.")
    assert "deadbeef" not in response.text


def test_requests_are_counted_under_the_route(client: TestClient) -> None:
    remove(client)
    remove(client, photo=None)
    client.get(PATH, headers=AUTH)
    text = client.get("/metrics").text
    assert f'matte_requests_total{{route="{PATH}",status="200"}} 1.0' in text
    assert f'matte_requests_total{{route="{PATH}",status="422"}} 2.0' in text


# --- GET /api/remove?url= ------------------------------------------------------------------


def test_get_needs_a_url(client: TestClient) -> None:
    response = client.get(PATH, headers=AUTH)
    assert_422(response, detail("missing", ["query", "url"], "Field required", None))


def test_get_reads_the_options_from_the_query(client: TestClient) -> None:
    # Empty query values are values (FastAPI): they fail their checks.
    response = client.get(PATH + "?url=&model=&a=&af=&om=x&bgc=nope", headers=AUTH)
    colour = "bgc: must be a colour name, a hex colour (rgb, rgba, rrggbb or rrggbbaa) or r,g,b[,a]"
    assert_422(
        response,
        detail(
            "string_pattern_mismatch",
            ["query", "model"],
            f"String should match pattern '{MODEL_PATTERN}'",
            "",
            pattern=MODEL_PATTERN,
        ),
        detail("bool_parsing", ["query", "a"], BOOL_MSG, ""),
        detail("int_parsing", ["query", "af"], INT_MSG, ""),
        detail("bool_parsing", ["query", "om"], BOOL_MSG, "x"),
        # rembg declares bgc after the option fields.
        detail("value_error", ["query", "bgc"], f"Value error, {colour}", "nope"),
    )


def test_get_is_refused_while_the_outbound_guard_is_off(client: TestClient) -> None:
    response = client.get(PATH, params={"url": "https://example.com/cat.jpg"}, headers=AUTH)
    assert_detail(response, 400, "url: URLs are turned off on this server; send the data instead")


def guarded(tmp_path: Path, server: LocalServer, engine: BrightnessEngine) -> TestClient:
    outbound = Outbound(True, allow_for_tests={("127.0.0.1", server.port)})
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}))
    return TestClient(create_app(settings, engine=engine, outbound=outbound))


def test_get_fetches_the_url_through_the_guard(
    tmp_path: Path, engine: BrightnessEngine, client: TestClient
) -> None:
    expected = pixels(remove(client, om="true"))
    photos = LocalServer(answer(200, PHOTO, content_type="image/jpeg"))
    with photos, guarded(tmp_path, photos, engine) as fetching:
        wait_ready(fetching)
        response = fetching.get(
            PATH, params={"url": f"{photos.url}/car.jpg?v=1", "om": "true"}, headers=AUTH
        )
        assert np.array_equal(pixels(response), expected)
        [received] = photos.wait_for(1)
    assert received.method == "GET" and received.path == "/car.jpg?v=1"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Answer(404, {}, b"gone"), "url: the URL answered HTTP 404"),
        (Answer(200, {}, b""), "url: the URL answered with an empty body"),
        (Answer(200, {}, b"not an image"), "image: must be a jpeg, png or webp image"),
    ],
)
def test_get_refuses_what_the_url_answered(
    tmp_path: Path, engine: BrightnessEngine, reply: Answer, message: str
) -> None:
    with LocalServer(lambda _: reply) as photos, guarded(tmp_path, photos, engine) as fetching:
        wait_ready(fetching)
        response = fetching.get(PATH, params={"url": f"{photos.url}/a.jpg"}, headers=AUTH)
    assert_detail(response, 400, message)


def test_get_never_reaches_loopback(tmp_path: Path, engine: BrightnessEngine) -> None:
    # The guard on, but this server's address not allowed: refused before any request.
    with LocalServer(answer(200, PHOTO)) as photos:
        settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}))
        app = create_app(settings, engine=engine, outbound=Outbound(True))
        with TestClient(app) as fetching:
            wait_ready(fetching)
            response = fetching.get(PATH, params={"url": f"{photos.url}/a.jpg"}, headers=AUTH)
        assert photos.received == []
    assert_detail(
        response,
        400,
        "url: points at a private, loopback, link-local or reserved address, which is refused",
    )


# --- the dialect's parts -------------------------------------------------------------------


def test_the_dialect_serves_post_and_get_on_one_path() -> None:
    dialect = RembgDialect()
    assert dialect.name == "rembg"
    routes = dialect.routes()
    assert all(isinstance(route, Route) and route.path == PATH for route in routes)
    assert [route.methods for route in routes if isinstance(route, Route)] == [
        {"POST"},
        {"GET", "HEAD"},
    ]


def test_errors_render_as_fastapi_does() -> None:
    dialect = RembgDialect()
    limited = dialect.render_error(RateLimited(150, 10, 60, 42), "a" * 32)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "42"
    assert json.loads(bytes(limited.body))["detail"].startswith("You have exceeded")
    refused = dialect.render_error(Unauthorized(), "a" * 32)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


def test_the_description_lists_the_fields_the_parser_reads() -> None:
    assert [field.name for field in rembg_api.OPTIONS] == list(OPTION_NAMES)
    api = RembgDialect().api()
    assert [(op.method, op.paths) for op in api.operations] == [("POST", (PATH,)), ("GET", (PATH,))]


@pytest.mark.parametrize(
    "field",
    [field for field in rembg_api.OPTIONS if field.schema["type"] != "string"],
    ids=lambda field: field.name,
)
def test_each_described_option_is_read_with_its_default(client: TestClient, field: Field) -> None:
    response = remove(client, form={field.name: "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field.name]
    sent = str(field.default).lower()
    assert np.array_equal(pixels(remove(client, form={field.name: sent})), pixels(remove(client)))


def test_the_any_model_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).rembg_any_model is False
    assert Settings.from_env({"MATTE_REMBG_ANY_MODEL": "true"}).rembg_any_model is True
    assert Settings.from_env({"MATTE_REMBG_ANY_MODEL": "0"}).rembg_any_model is False
    with pytest.raises(SettingsError, match="MATTE_REMBG_ANY_MODEL"):
        Settings.from_env({"MATTE_REMBG_ANY_MODEL": "maybe"})
