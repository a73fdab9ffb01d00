"""`GET /docs`: the API reference, rendered on the server from the OpenAPI document.

One HTML page and one stylesheet served by Matte itself: no script, nothing from
another origin, so it works offline and under the strict Content-Security-Policy
every HTML response gets (server/middleware.py). Every text from the document is
escaped; the descriptions' `code` and **bold** marks are the only markup honoured.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from .openapi import DOCS_PATH, SPEC_PATH, document_of
from .operations import Schema

STYLESHEET = Path(__file__).parent / "static" / "docs" / "reference.css"
STYLESHEET_PATH = DOCS_PATH + "/reference.css"
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_REF = "#/components/schemas/"


def routes() -> list[BaseRoute]:
    return [
        Route(DOCS_PATH, reference_page, methods=["GET"]),
        Route(STYLESHEET_PATH, stylesheet, methods=["GET"]),
    ]


async def reference_page(request: Request) -> Response:
    return HTMLResponse(page_of(request.app), headers={"cache-control": "no-cache"})


async def stylesheet(request: Request) -> Response:
    return FileResponse(STYLESHEET, media_type="text/css", headers={"cache-control": "no-cache"})


def page_of(app: Starlette) -> str:
    cached: str | None = getattr(app.state, "reference_page", None)
    if cached is None:
        cached = render(document_of(app))
        app.state.reference_page = cached
    return cached


def render(document: Schema) -> str:
    """The whole page for an OpenAPI document."""
    info = document["info"]
    sections = list(_sections(document))
    contents = "".join(
        f'<li><a href="#{_anchor(tag["name"])}">{_text(_title(tag))}</a><ul>'
        + "".join(
            f'<li><a href="#{_anchor(group[0][2]["operationId"])}">'
            f"{_text(group[0][2]['summary'])}</a></li>"
            for group in groups
        )
        + "</ul></li>"
        for tag, groups in sections
    )
    body = "".join(_section(tag, groups, document) for tag, groups in sections)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(info['title'])} API reference</title>"
        f'<link rel="stylesheet" href="{STYLESHEET_PATH}"></head><body>'
        f"<header><h1>{_text(info['title'])} API reference</h1>"
        f"<p>{_prose(info.get('description', ''))}</p>"
        f"<p>Version {_text(info['version'])}. The same as OpenAPI {_text(document['openapi'])}: "
        f'<a href="{SPEC_PATH}">{SPEC_PATH}</a>.</p></header>'
        f'<nav aria-label="Contents"><h2>Contents</h2><ul>{contents}</ul></nav>'
        f"<main>{body}</main></body></html>\n"
    )


Entry = tuple[str, str, Schema]  # path, method, operation
Group = list[Entry]


def _sections(document: Schema) -> Iterator[tuple[Schema, list[Group]]]:
    """Each tag with its operations; one handler on several paths (the same operation
    but for its id) is one group, shown once with all its paths."""
    entries: list[Entry] = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    for tag in document.get("tags", []):
        groups: list[Group] = []
        for entry in entries:
            if tag["name"] not in entry[2]["tags"]:
                continue
            same = [group for group in groups if _same(group[0], entry)]
            if same:
                same[0].append(entry)
            else:
                groups.append([entry])
        yield tag, groups


def _same(first: Entry, other: Entry) -> bool:
    def key(entry: Entry) -> tuple[str, dict[str, Any]]:
        rest = {name: value for name, value in entry[2].items() if name != "operationId"}
        return entry[1], rest

    return key(first) == key(other)


def _section(tag: Schema, groups: list[Group], document: Schema) -> str:
    name = tag["name"]
    shapes: dict[str, None] = {}  # the error shapes, in order of first use
    for group in groups:
        for status, response in group[0][2]["responses"].items():
            ref = _ref_of(response)
            if ref is not None and int(status) >= 400:
                shapes[ref] = None
    errors = "".join(_error_shape(ref, document) for ref in shapes)
    operations = "".join(_operation(group, document) for group in groups)
    return (
        f'<section id="{_anchor(name)}"><h2>{_text(_title(tag))}</h2>'
        f"<p>{_prose(tag.get('description', ''))}</p>{errors}{operations}</section>"
    )


def _ref_of(response: Schema) -> str | None:
    for media in response.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref.startswith(_REF):
            return str(ref[len(_REF) :])
    return None


def _error_shape(name: str, document: Schema) -> str:
    schema = document["components"]["schemas"][name]
    example = ""
    if schema.get("examples"):
        example = f"<pre><code>{_text(json.dumps(schema['examples'][0], indent=2))}</code></pre>"
    return (
        f'<div class="shape" id="{_anchor(name)}"><h3>Error shape: {_text(name)}</h3>'
        f"{_rows_table(_rows(schema, document), 'Fields')}{example}</div>"
    )


def _operation(group: Group, document: Schema) -> str:
    _, method, operation = group[0]
    paths = "".join(f"<li><code>{_text(entry[0])}</code></li>" for entry in group)
    parts = [
        f'<article id="{_anchor(operation["operationId"])}">',
        f"<h3>{_text(operation['summary'])}</h3>",
        f'<p class="route"><span class="method">{_text(method.upper())}</span></p>',
        f'<ul class="paths">{paths}</ul>',
    ]
    if operation.get("description"):
        parts.append(f"<p>{_prose(operation['description'])}</p>")
    parts.append(f"<p><strong>Key:</strong> {_key(operation, document)}</p>")
    parameters = operation.get("parameters", [])
    if parameters:
        rows = [
            (
                f"{parameter['name']} ({parameter['in']})",
                parameter["schema"],
                bool(parameter.get("required")),
                parameter.get("description", ""),
            )
            for parameter in parameters
        ]
        parts.append(_rows_table(rows, "Parameters"))
    body = operation.get("requestBody")
    if body is not None:
        for media, content in body["content"].items():
            schema = content["schema"]
            parts.append(f"<h4>Body: <code>{_text(media)}</code></h4>")
            if schema.get("description"):
                parts.append(f"<p>{_prose(schema['description'])}</p>")
            parts.append(_rows_table(_rows(schema, document), "Fields"))
    parts.append(_responses(operation))
    parts.append("</article>")
    return "".join(parts)


def _key(operation: Schema, document: Schema) -> str:
    schemes = document.get("components", {}).get("securitySchemes", {})
    ways = []
    optional = False
    for requirement in operation.get("security", []):
        if not requirement:
            optional = True
        for name in requirement:
            ways.append(_prose(schemes[name].get("description", name)))
    if operation.get("x-key-field"):
        ways.append(f"the body's <code>{_text(operation['x-key-field'])}</code> field.")
    if not ways:
        return "none"
    text = " or ".join(ways)
    return text + " Not needed while no keys are configured." if optional else text


Row = tuple[str, Schema, bool, str]  # name, schema, required, description


def _rows(schema: Schema, document: Schema, prefix: str = "") -> list[Row]:
    """An object's properties as table rows; nested objects (and lists of them) add
    their own properties under dotted names."""
    schema = _resolved(schema, document)
    required = set(schema.get("required", []))
    rows: list[Row] = []
    for name, value in schema.get("properties", {}).items():
        label = prefix + name
        rows.append((label, value, name in required, value.get("description", "")))
        items = value.get("items", {})
        if items.get("properties"):
            rows.extend(_rows(items, document, label + "[]."))
        elif value.get("properties"):
            rows.extend(_rows(value, document, label + "."))
    return rows


def _rows_table(rows: list[Row], caption: str) -> str:
    if not rows:
        return ""
    cells = "".join(
        f"<tr><td><code>{_text(name)}</code></td><td>{_type(schema)}</td>"
        f"<td>{'yes' if required else ''}</td><td>{_default(schema)}</td>"
        f"<td>{_prose(description)}</td></tr>"
        for name, schema, required, description in rows
    )
    return (
        f'<table><caption>{_text(caption)}</caption><thead><tr><th scope="col">name</th>'
        '<th scope="col">type</th><th scope="col">required</th><th scope="col">default</th>'
        f'<th scope="col">description</th></tr></thead><tbody>{cells}</tbody></table>'
    )


def _responses(operation: Schema) -> str:
    rows = []
    for status, response in operation["responses"].items():
        media = ", ".join(
            _ref_of({"content": {kind: value}}) or kind
            for kind, value in response.get("content", {}).items()
        )
        headers = ", ".join(response.get("headers", {}))
        rows.append(
            f"<tr><td>{_text(str(status))}</td><td>{_text(media)}</td>"
            f"<td>{_prose(response['description'])}</td><td>{_text(headers)}</td></tr>"
        )
    return (
        '<table class="responses"><caption>Responses</caption><thead><tr>'
        '<th scope="col">status</th><th scope="col">body</th><th scope="col">when</th>'
        f'<th scope="col">headers</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _type(schema: Schema) -> str:
    """A schema in a few words: `integer 0-255`, `one of png, webp`, `list of ...`."""
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix(_REF)
        return f'<a href="#{_anchor(name)}">{_text(name)}</a>'
    if "const" in schema:
        return f"<code>{_text(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{_text(str(v))}</code>" for v in schema["enum"])
    kinds = schema.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = " or ".join(_text(str(kind)) for kind in kinds)
    if schema.get("format") == "binary":
        words = "file"
    elif schema.get("contentEncoding") == "base64":
        words = "base64 " + words
    bounds = _bounds(schema, "minimum", "maximum", "")
    if bounds:
        words += " " + bounds
    length = _bounds(schema, "minLength", "maxLength", " characters")
    if length:
        words += ", " + length
    if "pattern" in schema:
        words += f" matching <code>{_text(schema['pattern'])}</code>"
    if "array" in kinds:
        count = _bounds(schema, "minItems", "maxItems", " items").replace("1 items", "1 item")
        items = schema.get("items", {})
        inner = "objects" if items.get("properties") else _type(items)
        words = f"list of {inner}" + (f" ({count})" if count else "")
    if schema.get("examples"):
        shown = " or ".join(
            f"<code>{_text(_json(example))}</code>" for example in schema["examples"]
        )
        words += f", like {shown}"
    return words


def _json(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _bounds(schema: Mapping[str, Any], low_key: str, high_key: str, unit: str) -> str:
    low, high = schema.get(low_key), schema.get(high_key)
    if low is not None and high is not None:
        return f"{low}-{high}{unit}" if low != high else f"{low}{unit}"
    if low is not None:
        return f"at least {low}{unit}"
    if high is not None:
        return f"at most {high}{unit}"
    return ""


def _default(schema: Schema) -> str:
    if "default" not in schema:
        return ""
    return f"<code>{_text(json.dumps(schema['default']))}</code>"


def _resolved(schema: Schema, document: Schema) -> Schema:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        resolved: Schema = document["components"]["schemas"][ref[len(_REF) :]]
        return resolved
    return schema


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _prose(value: str) -> str:
    """Escaped text with the descriptions' `code` and **bold** marks as HTML."""
    escaped = _text(value)
    escaped = _CODE.sub(lambda match: f"<code>{match.group(1)}</code>", escaped)
    return _BOLD.sub(lambda match: f"<strong>{match.group(1)}</strong>", escaped)


def _title(tag: Schema) -> str:
    return str(tag.get("x-displayName") or tag["name"])


def _anchor(name: str) -> str:
    return "x-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)
