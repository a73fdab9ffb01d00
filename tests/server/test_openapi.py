"""/openapi.json: a valid OpenAPI 3.1 document describing every route the app serves,
whose fields' enums, ranges, lengths, required fields and defaults are what the
parsers really accept, and whose reply and error schemas fit what the routes answer.

The request cases are generated from the document itself (so a dialect that describes
its fields gets them checked) and sent through the fake-engine app.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import tempfile
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from PIL import Image, ImageOps
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from server import openapi
from server.app import create_app
from server.operations import (
    BEARER,
    JSON,
    Api,
    Body,
    ErrorShape,
    Operation,
    Parameter,
    Reply,
    Schema,
    boolean,
    obj,
    text,
)
from server.settings import Settings
from tests.conftest import KEY, fixture_photos, jpeg, wait_ready
from tests.fakes import BrightnessEngine

# Routes that are no API: the web page (server/page.py) and the reference's stylesheet.
NOT_API = {"/", "/page/config", "/static/page", "/docs/reference.css"}
PHOTO = jpeg(96, 80)
PHOTO_B64 = base64.b64encode(PHOTO).decode()
SOURCE = "{source}"  # stands for the stored image the module's client uploads first

# Plain string fields a request needs a real value in (a key, an image, a stored id).
DATA_URL = "data:image/jpeg;base64," + PHOTO_B64
STRINGS = {
    "key": KEY,
    "image": DATA_URL,
    "input_images.image_url.url": DATA_URL,
    "watermarks.id": SOURCE,
}
# Fields a body needs beyond its required ones, for a rule no single field states.
BASES: dict[str, dict[str, object]] = {
    "post_v1_images_id_resize": {"width": 32},
    "post_v1_images_id_modulate": {"brightness": 1},
}
# Sent beside a field's edge value so that only that edge is tested: the other side
# of a resize or watermark small (its pixel limit), the other threshold out of the way.
COMPANIONS: dict[str, dict[str, object]] = {
    "width": {"height": 1},
    "height": {"width": 1},
    "alpha_matting_foreground_threshold": {"alpha_matting_background_threshold": 0},
    "alpha_matting_background_threshold": {"alpha_matting_foreground_threshold": 255},
}
# The foreground threshold must be above the background one (both fields say so), so
# these edges are refused whatever else is sent (and the cases check that they are).
UNREACHABLE = {
    ("alpha_matting_foreground_threshold", "minimum"),
    ("alpha_matting_background_threshold", "maximum"),
}
# Where a number has no bound in the document this far is accepted; but a crop box
# must lie in the image (the fields say so).
FAR = 10**6
IN_THE_IMAGE = {"x1", "y1", "x2", "y2"}
# Operations whose fields these cases cannot reach, and what covers them instead.
SKIPPED = {
    # Fetches from an allowed host: tests/server/dialects/test_imgproc.py.
    "post_v1_images",
    # Fetches its image from a URL: tests/server/dialects/test_rembg.py.
    "get_api_remove",
    # Needs a kept result: tests/server/dialects/test_modelslab.py.
    *(f"post_api_{v}_fetch_id" for v in ("v5", "v6", "v6_image_editing", "v1_image_editing")),
    "post_api_v1_enterprise_image_editing_fetch_id",
}


def valid(document: Schema) -> None:
    """Raises on any violation of the OpenAPI 3.1 schema or of its rules (unique
    operation ids, declared path parameters, resolvable references, ...)."""
    validate(cast("Mapping[Hashable, Any]", document))


def _settings(cache: Path) -> Settings:
    return Settings(cache_dir=cache, api_keys=frozenset({KEY}), rate_limit_requests=10**6)


def _static_document() -> Schema:
    """The document as built for parametrising (no app is started for it)."""
    app = create_app(_settings(Path(tempfile.gettempdir()) / "matte-openapi-unused"))
    return openapi.build(app.routes, openapi.described(app), "test")


DOCUMENT = _static_document()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(_settings(tmp_path_factory.mktemp("openapi")), engine=BrightnessEngine())
    with TestClient(app, raise_server_exceptions=False) as running:
        wait_ready(running)
        yield running


@pytest.fixture(scope="module")
def source(client: TestClient) -> str:
    """A stored image of KEY's, for the IMG Processing routes."""
    response = client.post(
        "/v1/images/upload",
        headers={"x-api-key": KEY},
        files={"image": ("photo.jpg", PHOTO, "image/jpeg")},
        data={"name": "source"},
    )
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


# --- the document -----------------------------------------------------------------------------


def test_the_served_document_is_valid_openapi_3_1(client: TestClient) -> None:
    response = client.get("/openapi.json")  # no key: the app has keys, the document needs none
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    valid(document)  # raises on any violation of the OpenAPI 3.1 schema or its rules
    assert document["openapi"] == "3.1.0"
    assert document["paths"] == DOCUMENT["paths"]


def test_every_route_the_app_serves_is_described() -> None:
    """Walks the app's routes: every method of every one (but the page's) is in the
    document, under a path that the router sends to that very route."""
    app = create_app(_settings(Path(tempfile.gettempdir())))
    described = {
        (openapi.route_index(app.routes, path, method), method.upper())
        for path, methods in DOCUMENT["paths"].items()
        for method in methods
    }
    undescribed = []
    for index, route in enumerate(app.routes):
        assert isinstance(route, Route | Mount), route
        if route.path in NOT_API:
            continue
        methods = (route.methods or set()) - {"HEAD"} if isinstance(route, Route) else {"GET"}
        undescribed += [f"{m} {route.path}" for m in sorted(methods) if (index, m) not in described]
    # A dialect without `api()`: see /tmp/briefs/openapi-howto.md.
    assert not undescribed, "routes with no description"


def test_the_routes_left_out_are_the_page_and_its_assets() -> None:
    """The list of non-API routes hides nothing else: each is a route the app has."""
    app = create_app(_settings(Path(tempfile.gettempdir())))
    paths = {route.path for route in app.routes if isinstance(route, Route | Mount)}
    assert paths >= NOT_API


# --- building ---------------------------------------------------------------------------------

SHAPE = ErrorShape("Error", obj({"message": {"type": "string"}}, ["message"]))


def _api(*operations: Operation, shape: ErrorShape = SHAPE, name: str = "test") -> Api:
    return Api(name, "Test", "For the builder.", shape, operations)


def _served(*paths: str) -> list[Route]:
    async def endpoint(request: object) -> None: ...

    return [Route(path, endpoint, methods=["POST"]) for path in paths]


def test_an_operation_no_route_serves_is_left_out() -> None:
    api = _api(Operation("POST", ("/a", "/gone"), "A"), Operation("GET", ("/a",), "read"))
    document = openapi.build(_served("/a"), [api], "1")
    assert list(document["paths"]) == ["/a"]
    assert list(document["paths"]["/a"]) == ["post"]
    valid(document)


def test_paths_follow_the_routes_order() -> None:
    api = _api(Operation("POST", ("/b", "/a"), "both"))
    assert list(openapi.build(_served("/a", "/b"), [api], "1")["paths"]) == ["/a", "/b"]


def test_a_route_described_twice_is_an_error() -> None:
    api = _api(Operation("POST", ("/a",), "one"), Operation("POST", ("/a",), "two"))
    with pytest.raises(ValueError, match="described twice"):
        openapi.build(_served("/a"), [api], "1")


def test_two_shapes_under_one_name_are_an_error() -> None:
    other = ErrorShape("Error", obj({"detail": {"type": "string"}}, ["detail"]))
    first = _api(Operation("POST", ("/a",), "A"), name="first")
    second = _api(Operation("POST", ("/b",), "B"), shape=other, name="second")
    with pytest.raises(ValueError, match="called 'Error'"):
        openapi.build(_served("/a", "/b"), [first, second], "1")


def test_keys_errors_and_parameters() -> None:
    operation = Operation(
        "POST",
        ("/items/{item}/{op}",),
        "Do",
        parameters=(Parameter("path", text("item", "The item.", pattern="^[0-9]+$")),),
        replies=(Reply(201, "Made.", {JSON: {"type": "object"}}, {"x-count": "how many"}),),
        errors={429: "limited", 400: "bad"},
        auth=(BEARER,),
        auth_optional=True,
    )
    document = openapi.build(_served("/items/{item}/{op}"), [_api(operation)], "1")
    valid(document)
    described = document["paths"]["/items/{item}/{op}"]["post"]
    assert described["security"] == [{"bearer": []}, {}]
    assert document["components"]["securitySchemes"]["bearer"] == BEARER.scheme
    assert [p["name"] for p in described["parameters"]] == ["item", "op"]
    assert all(p["required"] for p in described["parameters"])
    assert list(described["responses"]) == ["201", "400", "429", "500"]
    assert described["responses"]["429"]["headers"] == {"Retry-After": openapi._RETRY_AFTER}
    assert described["responses"]["400"]["content"][JSON]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    no_key = Operation("POST", ("/open",), "Open")
    assert (
        openapi.build(_served("/open"), [_api(no_key)], "1")["paths"]["/open"]["post"]["security"]
        == []
    )


def test_a_body_lists_its_fields_and_rules() -> None:
    fields = (boolean("flag", "A flag.", True), text("id", "", required=True))
    operation = Operation(
        "POST", ("/a",), "A", body=Body(JSON, fields, rules=("must set flag or id",))
    )
    schema = openapi.build(_served("/a"), [_api(operation)], "1")["paths"]["/a"]["post"][
        "requestBody"
    ]["content"][JSON]["schema"]
    assert schema["properties"]["flag"] == {
        "type": "boolean",
        "default": True,
        "description": "A flag.",
    }
    assert schema["required"] == ["id"]
    assert schema["description"] == "The body must set flag or id."


# --- the fields against the parsers ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    operation_id: str
    field: str  # "watermarks.id" for an item's field
    value: object
    accepted: bool
    # "body", "query", "drop" (the required field left out) or "none" (the base request)
    where: str = "body"
    also: tuple[tuple[str, object], ...] = ()  # other fields of the same object to send

    def __str__(self) -> str:
        verdict = "ok" if self.accepted else "refused"
        return f"{self.operation_id}:{self.field}={self.value!r}:{verdict}"


def _operations() -> Iterator[tuple[str, str, Schema]]:
    """Each described operation once (a handler on several paths: its first path)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    for path, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            key = (method, {k: v for k, v in operation.items() if k != "operationId"})
            if key in seen or operation["operationId"] in SKIPPED:
                continue
            seen.append(key)
            yield path, method, operation


def _body_schema(operation: Schema) -> tuple[str | None, Schema]:
    body = operation.get("requestBody")
    if body is None:
        return None, {}
    ((media, content),) = body["content"].items()
    return media, content["schema"]


def _fields(schema: Schema) -> Iterator[tuple[str, Schema]]:
    """(dotted name, schema) of every property, and of list items' properties."""
    for name, value in schema.get("properties", {}).items():
        yield name, value
        for inner, item in value.get("items", {}).get("properties", {}).items():
            yield f"{name}.{inner}", item


def _edges(name: str, schema: Schema) -> Iterator[tuple[object, bool]]:
    """Values the schema allows (True) or not (False) at its edges: every enum value,
    both booleans, a range's ends, the longest text; and one step past each."""
    if "const" in schema:
        yield schema["const"], True
        yield f"zz-{schema['const']}", False
    elif "enum" in schema:
        for value in schema["enum"]:
            yield value, True
        yield f"zz-{schema['enum'][0]}", False
    elif schema.get("type") == "boolean":
        yield True, True
        yield False, True
        yield "maybe", False
    elif schema.get("type") in ("integer", "number"):
        step = 1 if schema["type"] == "integer" else 0.01
        for bound, outward in (("minimum", -step), ("maximum", step)):
            if bound in schema:
                reachable = (name.split(".")[-1], bound) not in UNREACHABLE
                yield schema[bound], reachable
                yield round(schema[bound] + outward, 6), False
            else:  # no bound said: a far value must be taken
                yield int(outward / step) * FAR, name.split(".")[-1] not in IN_THE_IMAGE
    elif "maxLength" in schema:
        yield "a" * schema["maxLength"], True
        yield "a" * (schema["maxLength"] + 1), False


def _cases() -> Iterator[Case]:
    for _, _, operation in _operations():
        op_id = operation["operationId"]
        _, schema = _body_schema(operation)
        for name, field in _fields(schema):
            also = tuple(COMPANIONS.get(name.split(".")[-1], {}).items())
            for value, accepted in _edges(name, field):
                yield Case(op_id, name, value, accepted, also=also)
        for name in schema.get("required", []):
            yield Case(op_id, name, None, False, "drop")
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query":
                for value, accepted in _edges(parameter["name"], parameter["schema"]):
                    yield Case(op_id, parameter["name"], value, accepted, "query")


CASES = list(_cases())


def _find(operation_id: str) -> tuple[str, str, Schema]:
    for path, method, operation in _operations():
        if operation["operationId"] == operation_id:
            return path, method, operation
    raise KeyError(operation_id)


def _sample(name: str, schema: Schema, source: str) -> object:
    """A value a required field accepts."""
    if schema.get("format") == "binary":
        return PHOTO
    if schema.get("contentEncoding") == "base64":
        return PHOTO_B64
    if name in STRINGS:
        value = STRINGS[name]
        return source if value == SOURCE else value
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") in ("integer", "number"):
        return schema.get("minimum", 1)
    if schema.get("type") == "array":
        return [_sample(name, schema["items"], source)]
    if schema.get("type") == "object":
        return {
            key: _sample(f"{name}.{key}", value, source)
            for key, value in schema.get("properties", {}).items()
            if key in schema.get("required", [])
        }
    return "x"


def _base(operation: Schema, schema: Schema, source: str) -> dict[str, object]:
    body = {
        name: _sample(name, schema["properties"][name], source)
        for name in schema.get("required", [])
    }
    return {**body, **BASES.get(operation["operationId"], {})}


def _with(body: dict[str, object], case: Case) -> dict[str, object]:
    changed = dict(body)
    name = case.field
    companions = dict(case.also)
    if case.where == "none":
        return changed
    if case.where == "drop":
        changed.pop(name)
    elif "." in name:
        outer, inner = name.split(".", 1)
        items = changed.get(outer)
        item = items[0] if isinstance(items, list) and items else {}
        changed[outer] = [{**item, **companions, inner: case.value}]
    else:
        changed.update({**companions, name: case.value})
    return changed


def _headers(operation: Schema) -> dict[str, str]:
    for requirement in operation.get("security", []):
        if "bearer" in requirement:
            return {"authorization": f"Bearer {KEY}"}
        if "apiKeyHeader" in requirement:
            return {"x-api-key": KEY}
    return {}


def _send(
    client: TestClient, case: Case, source: str, extra: dict[str, object] | None = None
) -> tuple[httpx.Response, Schema]:
    """`case`'s request: the operation's base body (and `extra`) with its change."""
    path, method, operation = _find(case.operation_id)
    media, schema = _body_schema(operation)
    url = path.replace("{id}", source)
    query: dict[str, str] = {}
    body: dict[str, object] = {**_base(operation, schema, source), **(extra or {})} if media else {}
    if case.where == "query":
        query[case.field] = _form_text(case.value)
    else:
        body = _with(body, case)
    request: dict[str, Any] = {"headers": _headers(operation), "params": query}
    if media == JSON:
        request["json"] = body
    elif media is not None:
        # Every field a part (a file or a text part), and one unknown part besides, so
        # the form is multipart even with its file left out (as a browser's would be).
        request["files"] = [
            (
                name,
                ("photo.jpg", value, "image/jpeg")
                if isinstance(value, bytes)
                else (None, _form_text(value)),
            )
            for name, value in {**body, "unknown": "ignored"}.items()
        ]
    response = client.request(method.upper(), url, **request)
    return response, operation


def _form_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _schema_of(operation: Schema, status: int, media: str) -> Schema:
    content = operation["responses"][str(status)].get("content", {})
    assert media in content, f"{status} {media} is not described: {list(content)}"
    schema: Schema = content[media]["schema"]
    return schema


def assert_fits(instance: object, schema: Schema) -> None:
    """`instance` is valid against `schema`, whose $refs point into the document."""
    rooted = {**schema, "components": DOCUMENT["components"]}
    OAS31Validator(rooted).validate(instance)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_field_accepts_what_the_document_says(
    client: TestClient, source: str, case: Case
) -> None:
    response, operation = _send(client, case, source)
    described = {int(status) for status in operation["responses"]}
    media = response.headers.get("content-type", "").split(";")[0]
    assert response.status_code in described, (response.status_code, response.text)
    if case.accepted:
        assert 200 <= response.status_code < 300, response.text
        if media == JSON:
            assert_fits(response.json(), _schema_of(operation, response.status_code, media))
        elif response.content:
            _schema_of(operation, response.status_code, media)  # the media type is described
    else:
        assert 400 <= response.status_code < 500, response.text
        assert_fits(response.json(), _schema_of(operation, response.status_code, JSON))
        assert case.field.split(".")[-1] in response.text  # the error names the field


def test_the_cases_cover_every_kind_of_rule() -> None:
    """The generator really reaches enums, booleans, ranges, lengths, items and drops."""
    kinds = {(case.where, type(case.value).__name__) for case in CASES}
    assert ("drop", "NoneType") in kinds and ("query", "int") in kinds
    fields = {case.field for case in CASES}
    assert {"output_format", "alpha_matting_erode_size", "only_mask", "model"} <= fields
    assert {"watermarks.repetition_mode", "quality", "sigma", "name", "take"} <= fields
    assert len(CASES) > 150


# --- defaults ---------------------------------------------------------------------------------

DEFAULTED = (
    "post_v2beta_stable_image_edit_remove_background",
    "post_background_removal",
    "post_api_v5_removebg_mask",
)


def _result(client: TestClient, source: str, case: Case, extra: dict[str, object]) -> object:
    """What a cut-out request answered that its options decide: the image, or for
    ModelsLab (whose image is behind a fresh URL) the effective parameters."""
    response, _ = _send(client, case, source, extra)
    assert response.status_code == 200, response.text
    if case.operation_id == "post_background_removal":
        return response.json()["image_b64"]
    if case.operation_id == "post_api_v5_removebg_mask":
        return response.json()["meta"]
    return response.content


@pytest.mark.parametrize("operation_id", DEFAULTED)
@pytest.mark.parametrize("matting", [False, True])
def test_a_documented_default_is_what_leaving_the_field_out_gives(
    client: TestClient, source: str, operation_id: str, matting: bool
) -> None:
    """Sending a field's documented default answers exactly what leaving it out does,
    with alpha matting off and on (the thresholds only matter with it on)."""
    _, _, operation = _find(operation_id)
    _, schema = _body_schema(operation)
    defaults = {
        name: field["default"] for name, field in schema["properties"].items() if "default" in field
    }
    assert len(defaults) >= 6
    extra: dict[str, object] = {"alpha_matting": True} if matting else {}
    baseline = _result(client, source, Case(operation_id, "", None, True, "none"), extra)
    for name, default in defaults.items():
        if name not in extra:
            sent = _result(client, source, Case(operation_id, name, default, True), extra)
            assert sent == baseline, name


def test_the_document_is_json_serialisable_as_built() -> None:
    assert json.loads(json.dumps(DOCUMENT)) == DOCUMENT


# --- the real model ---------------------------------------------------------------------------


@pytest.mark.model
def test_the_documented_cut_out_requests_work_on_the_real_model(model_client: TestClient) -> None:
    """Each cut-out route's request as the document builds it, with a real photo, on
    IS-Net: 200, and the reply is what the document says it is."""
    photo = fixture_photos()[0].read_bytes()
    encoded = base64.b64encode(photo).decode()
    with Image.open(io.BytesIO(photo)) as opened:
        size = ImageOps.exif_transpose(opened).size
    photos: dict[str, dict[str, object]] = {
        "post_v2beta_stable_image_edit_remove_background": {"image": photo},
        "post_background_removal": {"init_image": encoded},
        "post_api_v1_images_generations": {
            "input_images": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + encoded}}
            ]
        },
    }
    for operation_id, extra in photos.items():
        case = Case(operation_id, "", None, True, "none")
        response, operation = _send(model_client, case, "", extra)
        assert response.status_code == 200, response.text
        media = response.headers["content-type"].split(";")[0]
        if media == JSON:
            reply = response.json()
            assert_fits(reply, _schema_of(operation, 200, JSON))
            image = reply.get("image_b64") or reply["data"][0]["b64_json"]
            data = base64.b64decode(image)
        else:
            _schema_of(operation, 200, media)
            data = response.content
        with Image.open(io.BytesIO(data)) as cutout:
            assert cutout.size == size and cutout.mode == "RGBA", operation_id
