"""`GET /openapi.json`: the OpenAPI 3.1 document, built from the app's own routes and the
descriptions its dialects give of them (server/operations.py).

Only what the app serves is described: each described path and method is matched
against the app's routes as Starlette's router would match a request, and one that
no route answers is left out. The paths come in the order of the routes that answer
them. The document is built once per app, on its first request.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route

from .operations import (
    JSON,
    SERVER_ERROR,
    Api,
    Documented,
    ErrorShape,
    Field,
    Operation,
    Parameter,
    Reply,
    Schema,
    obj,
)

SPEC_PATH = "/openapi.json"
DOCS_PATH = "/docs"
OPENAPI_VERSION = "3.1.0"
_PATH_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")
_RETRY_AFTER = {"description": "seconds to wait", "schema": {"type": "integer"}}


def routes() -> list[BaseRoute]:
    return [Route(SPEC_PATH, openapi_endpoint, methods=["GET"])]


async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(document_of(request.app))


def document_of(app: Starlette) -> Schema:
    """The app's document, built on the first call and kept on the app."""
    cached: Schema | None = getattr(app.state, "openapi", None)
    if cached is None:
        cached = build(app.routes, described(app), _version())
        app.state.openapi = cached
    return cached


def described(app: Starlette) -> list[Api]:
    """The server's own routes, then every dialect the app has that describes itself."""
    dialects: Iterable[object] = getattr(app.state, "dialects", ())
    return [server_api(), *(part.api() for part in dialects if isinstance(part, Documented))]


def build(routes: Sequence[BaseRoute], apis: Sequence[Api], version: str) -> Schema:
    """The OpenAPI document for `apis`, keeping the operations `routes` serve."""
    served: list[tuple[int, int, str, Operation, Api]] = []
    for api in apis:
        for operation in api.operations:
            for path in operation.paths:
                index = route_index(routes, path, operation.method)
                if index is not None:
                    served.append((index, len(served), path, operation, api))
    served.sort(key=lambda entry: entry[:2])
    components: dict[str, dict[str, Schema]] = {"schemas": {}, "securitySchemes": {}}
    paths: dict[str, dict[str, Schema]] = {}
    for _, _, path, operation, api in served:
        methods = paths.setdefault(path, {})
        method = operation.method.lower()
        if method in methods:
            raise ValueError(f"{operation.method} {path} is described twice")
        methods[method] = _operation(path, operation, api, components)
    tags = []
    for api in apis:
        if any(entry[4] is api for entry in served):
            # x-displayName: the title tools such as Redoc show for a tag.
            tags.append(
                {"name": api.name, "x-displayName": api.title, "description": api.description}
            )
            _merge(components["schemas"], api.schemas, "schema")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Matte",
            "version": version,
            "description": "A self-hosted background-removal server speaking several hosted "
            "APIs' dialects. Every response carries `x-request-id`.",
        },
        "tags": tags,
        "paths": paths,
        "components": {name: part for name, part in components.items() if part},
    }


def route_index(routes: Sequence[BaseRoute], path: str, method: str) -> int | None:
    """Which of `routes` answers `method` on `path` (a template: its `{name}` parts
    match as any segment would), as the router picks: the first full match."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method.upper()}
    for index, route in enumerate(routes):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return index
    return None


def _operation(
    path: str, operation: Operation, api: Api, components: dict[str, dict[str, Schema]]
) -> Schema:
    result: Schema = {
        "tags": [api.name],
        "summary": operation.summary,
        "operationId": _operation_id(operation.method, path),
    }
    if operation.description:
        result["description"] = operation.description
    parameters = _parameters(path, operation.parameters)
    if parameters:
        result["parameters"] = parameters
    if operation.body is not None:
        body = operation.body
        schema = obj(
            {field.name: property_schema(field) for field in body.fields},
            [field.name for field in body.fields if field.required],
        )
        if body.rules:
            schema["description"] = " ".join(f"The body {rule}." for rule in body.rules)
        result["requestBody"] = {
            "required": body.required,
            "content": {body.media_type: {"schema": schema}},
        }
    responses: Schema = {str(reply.status): _reply(reply) for reply in operation.replies}
    for status, when in sorted({**operation.errors, **SERVER_ERROR}.items()):
        shape = api.errors.for_status(status)
        _merge(components["schemas"], {shape.name: shape.schema}, "schema")
        responses[str(status)] = _error(status, when, shape)
    result["responses"] = responses
    security: list[Schema] = []
    for key in operation.auth:
        _merge(components["securitySchemes"], {key.name: key.scheme}, "security scheme")
        security.append({key.name: []})
    if operation.auth and operation.auth_optional:
        security.append({})
    result["security"] = security
    if operation.key_field is not None:
        result["x-key-field"] = operation.key_field
    return result


def property_schema(field: Field) -> Schema:
    """The field's schema with its description (its own first, then the schema's)."""
    notes = [note for note in (field.description, field.schema.get("description")) if note]
    return {**field.schema, "description": " ".join(notes)} if notes else dict(field.schema)


def _parameters(path: str, declared: Sequence[Parameter]) -> list[Schema]:
    names = {parameter.field.name for parameter in declared if parameter.where == "path"}
    implicit = [
        Parameter("path", Field(name, {"type": "string"}, required=True))
        for name in _PATH_PARAMETER.findall(path)
        if name not in names
    ]
    result = []
    for parameter in (*declared, *implicit):
        field = parameter.field
        entry: Schema = {
            "name": field.name,
            "in": parameter.where,
            "required": field.required or parameter.where == "path",
            "schema": field.schema,
        }
        if field.description:
            entry["description"] = field.description
        result.append(entry)
    return result


def _reply(reply: Reply) -> Schema:
    result: Schema = {"description": reply.description}
    if reply.headers:
        result["headers"] = {
            name: {"description": note, "schema": {"type": "string"}}
            for name, note in reply.headers.items()
        }
    if reply.content:
        result["content"] = {media: {"schema": schema} for media, schema in reply.content.items()}
    return result


def _error(status: int, when: str, shape: ErrorShape) -> Schema:
    result: Schema = {
        "description": when,
        "content": {shape.media_type: {"schema": {"$ref": f"#/components/schemas/{shape.name}"}}},
    }
    if status in (429, 503):
        result["headers"] = {"Retry-After": _RETRY_AFTER}
    return result


def _operation_id(method: str, path: str) -> str:
    return method.lower() + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def _merge(into: dict[str, Schema], more: Any, what: str) -> None:
    for name, value in more.items():
        if into.setdefault(name, value) != value:
            raise ValueError(f"two different {what}s are both called {name!r}")


def _version() -> str:
    try:
        return importlib.metadata.version("matte")
    except importlib.metadata.PackageNotFoundError:  # run from a bare checkout
        return "0.0.0"


# --- the server's own routes ----------------------------------------------------------------

_STATUS = obj({"status": {"const": "ok"}}, ["status"])
_READY = obj(
    {
        "status": {"enum": ["loading", "ready", "failed", "draining", "stopping"]},
        "provider": {"type": ["string", "null"], "examples": ["cpu", "cuda"]},
        "engine": {"type": ["string", "null"], "examples": ["openvino", "onnxruntime"]},
        "precision": {"type": ["string", "null"], "examples": ["fp32", "bf16", "fp16", "int8"]},
        "model_file": {"type": ["string", "null"], "description": "the file's name, no path"},
        "warm_up_s": {"type": ["number", "null"]},
    },
    ["status", "provider", "engine", "precision", "model_file", "warm_up_s"],
)
_SERVER_ERROR = ErrorShape(
    "ServerError",
    obj(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
        ["id", "name", "errors"],
    ),
)


def server_api() -> Api:
    """The routes every Matte serves whatever its dialects: health, readiness, metrics,
    and this document with its reference page."""
    text = {"text/plain": {"type": "string"}}
    return Api(
        "server",
        "Server",
        "Health, readiness and metrics for operators, and this document. No key needed.",
        _SERVER_ERROR,
        (
            Operation(
                "GET",
                ("/healthz",),
                "Liveness",
                "200 while the process is alive.",
                replies=(Reply(200, "Alive.", {JSON: _STATUS}),),
            ),
            Operation(
                "GET",
                ("/readyz",),
                "Readiness",
                "200 once the model is loaded and warmed up; 503 (same body) before, after "
                "a failed load, and while draining after a SIGTERM.",
                replies=(
                    Reply(200, "Ready.", {JSON: _READY}),
                    Reply(503, "Not ready.", {JSON: _READY}),
                ),
            ),
            Operation(
                "GET",
                ("/metrics",),
                "Prometheus metrics",
                replies=(Reply(200, "Prometheus' text format.", text),),
            ),
            Operation(
                "GET",
                (SPEC_PATH,),
                "This document",
                replies=(Reply(200, "OpenAPI 3.1.", {JSON: {"type": "object"}}),),
            ),
            Operation(
                "GET",
                (DOCS_PATH,),
                "The API reference page",
                "This document as an HTML page (no scripts; it works offline).",
                replies=(Reply(200, "HTML.", {"text/html": {"type": "string"}}),),
            ),
        ),
    )
