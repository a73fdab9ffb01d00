"""An API's operations described as data: the fields each reads, what it answers, how
it is keyed and the shape of its errors.

A dialect that describes itself has an `api()` method returning an `Api` (the
`Documented` protocol). The fields come from the tables its parsers read, so the
description cannot drift from the behaviour; server/openapi.py turns every `Api` into
the OpenAPI document served at /openapi.json, and server/reference.py renders that
document as the /docs page. Schemas are JSON Schema (2020-12, as OpenAPI 3.1 has it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Schema = dict[str, Any]
Location = Literal["path", "query", "header"]

JSON = "application/json"
MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class Field:
    """One named value a request carries: a body field, or a path, query or header
    parameter. `schema` holds its type, range and default."""

    name: str
    schema: Schema
    description: str = ""
    required: bool = False

    @property
    def default(self) -> object:
        return self.schema.get("default")


def boolean(name: str, description: str, default: bool | None = None) -> Field:
    return Field(name, _with_default({"type": "boolean"}, default), description)


def integer(
    name: str,
    description: str,
    low: int | None = None,
    high: int | None = None,
    default: int | None = None,
    required: bool = False,
) -> Field:
    return Field(name, _with_default(int_schema(low, high), default), description, required)


def number(
    name: str,
    description: str,
    low: float | None = None,
    high: float | None = None,
    default: float | None = None,
    required: bool = False,
) -> Field:
    schema: Schema = {"type": "number"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return Field(name, _with_default(schema, default), description, required)


def choice(
    name: str,
    values: Sequence[str],
    description: str,
    default: str | None = None,
    required: bool = False,
) -> Field:
    schema: Schema = {"type": "string", "enum": list(values)}
    return Field(name, _with_default(schema, default), description, required)


def text(
    name: str,
    description: str,
    required: bool = False,
    max_length: int | None = None,
    pattern: str | None = None,
    nullable: bool = False,
) -> Field:
    schema: Schema = {"type": ["string", "null"] if nullable else "string"}
    if max_length is not None:
        schema["maxLength"] = max_length
    if pattern is not None:
        schema["pattern"] = pattern
    return Field(name, schema, description, required)


def upload(name: str, description: str, required: bool = True) -> Field:
    """A multipart file part (its bytes)."""
    return Field(name, {"type": "string", "format": "binary"}, description, required)


def int_schema(low: int | None = None, high: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def obj(properties: Mapping[str, Schema], required: Sequence[str] = (), **more: Any) -> Schema:
    """A JSON object schema (extra keywords, `description` say, in `more`)."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    return {**schema, **more}


def _with_default(schema: Schema, default: object) -> Schema:
    return schema if default is None else {**schema, "default": default}


@dataclass(frozen=True)
class Parameter:
    """A field that travels in the path, the query string or a header."""

    where: Location
    field: Field


@dataclass(frozen=True)
class Body:
    """A request body: a JSON object or a multipart form, each field a property.
    `rules` say what no single field's schema can (one of two fields needed, say)."""

    media_type: str
    fields: tuple[Field, ...]
    required: bool = True
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reply:
    """A successful answer: its media types and their schemas (none: no body), and
    the headers it carries (name: what it says)."""

    status: int
    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyScheme:
    """How a caller presents its API key: an OpenAPI security scheme."""

    name: str
    scheme: Schema


BEARER = KeyScheme(
    "bearer",
    {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>`. With no keys configured any "
        "non-empty key is accepted.",
    },
)
API_KEY_HEADER = KeyScheme(
    "apiKeyHeader",
    {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "`x-api-key: <key>`. With no keys configured any non-empty key is accepted.",
    },
)


@dataclass(frozen=True)
class ErrorShape:
    """The body a dialect renders every error as, and the one it uses instead for some
    statuses (OctoAI's 422 list, say)."""

    name: str
    schema: Schema
    media_type: str = JSON
    by_status: Mapping[int, ErrorShape] = field(default_factory=dict)

    def for_status(self, status: int) -> ErrorShape:
        return self.by_status.get(status, self)


@dataclass(frozen=True)
class Operation:
    """One method on one or more paths (the same handler answers each path).
    `errors` maps each status the operation can answer in its API's error shape to
    when it does; `auth` lists the ways to present a key (empty: none is needed, or
    it comes as the body field `key_field`, which no OpenAPI security scheme can say)."""

    method: str
    paths: tuple[str, ...]
    summary: str
    description: str = ""
    parameters: tuple[Parameter, ...] = ()
    body: Body | None = None
    replies: tuple[Reply, ...] = ()
    errors: Mapping[int, str] = field(default_factory=dict)
    auth: tuple[KeyScheme, ...] = ()
    auth_optional: bool = False
    key_field: str | None = None


@dataclass(frozen=True)
class Api:
    """What a dialect says about itself: its name (the document's tag), a title, a
    description of the rules its operations share, its error shape and operations.
    `schemas` are shared ones its operations refer to (`#/components/schemas/<name>`)."""

    name: str
    title: str
    description: str
    errors: ErrorShape
    operations: tuple[Operation, ...]
    schemas: Mapping[str, Schema] = field(default_factory=dict)


@runtime_checkable
class Documented(Protocol):
    """A dialect (or any part of the app) that describes its routes."""

    def api(self) -> Api: ...


# What most routes can answer besides their own errors, worded once for every API.
KEY_ERRORS: Mapping[int, str] = {
    401: "the key is missing or not accepted",
    429: "over the rate limit (or the key's own concurrency); `Retry-After` says when to retry",
}
BODY_ERRORS: Mapping[int, str] = {
    408: "the body paused too long or arrived too slowly",
    413: "the body is over the size limit (10 MiB by default), refused while it streams in",
}
MODEL_ERRORS: Mapping[int, str] = {
    503: "the model is loading, the server is full or the request waited too long in line; "
    "with `Retry-After`",
}
SERVER_ERROR: Mapping[int, str] = {
    500: "an unexpected error; the cause is logged under the request id, never shown",
}
