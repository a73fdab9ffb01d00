"""/docs: the API reference page, rendered on the server from /openapi.json. Offline (every
asset it names is Matte's own and served), no script and no inline style (the page CSP
allows neither), every text escaped, and every operation with its fields, types,
defaults and error shape on it."""

from __future__ import annotations

import copy
import html
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server import reference
from server.app import create_app
from server.operations import Schema
from server.settings import Settings
from tests.conftest import KEY, wait_ready
from tests.fakes import BrightnessEngine

# Elements with no end tag.
VOID = {"meta", "link", "br", "img", "input", "hr", "wbr", "source", "col"}
# Elements whose edges separate words, as a browser shows them.
BLOCKS = {"p", "li", "td", "th", "tr", "caption", "h1", "h2", "h3", "h4", "pre", "div", "ul"}


class Page(HTMLParser):
    """The page's tags, attributes and text, checking that every element is closed."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in BLOCKS:
            self.text.append(" ")
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        if tag in BLOCKS:
            self.text.append(" ")

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def words(self) -> str:
        return " ".join("".join(self.text).split())


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # Keys configured: the page must still need none.
    settings = Settings(cache_dir=tmp_path_factory.mktemp("docs"), api_keys=frozenset({KEY}))
    with TestClient(create_app(settings, engine=BrightnessEngine())) as running:
        wait_ready(running)
        yield running


@pytest.fixture(scope="module")
def page(client: TestClient) -> str:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    text: str = response.text
    return text


@pytest.fixture(scope="module")
def document(client: TestClient) -> Schema:
    document: Schema = client.get("/openapi.json").json()
    return document


def test_the_page_gets_the_strict_policy_and_needs_no_key(client: TestClient) -> None:
    response = client.get("/docs")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_no_script_no_inline_style_and_nothing_from_elsewhere(
    client: TestClient, page: str
) -> None:
    parsed = Page(page)
    names = {tag for tag, _ in parsed.tags}
    assert "script" not in names and "style" not in names and "iframe" not in names
    for tag, attrs in parsed.tags:
        assert "style" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("href", "src"):
            link = attrs.get(name)
            if link is not None:
                # Same-origin paths and anchors only: it works offline.
                assert link.startswith(("/", "#")) and not link.startswith("//"), link
                if link.startswith("/"):
                    assert client.get(link).status_code == 200, link


def test_the_stylesheet_is_served(client: TestClient) -> None:
    response = client.get("/docs/reference.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert b"@media" in response.content and b"url(" not in response.content


def test_every_anchor_link_has_its_target(page: str) -> None:
    parsed = Page(page)
    ids = {attrs["id"] for _, attrs in parsed.tags if attrs.get("id")}
    anchors = {
        str(attrs["href"])[1:]
        for tag, attrs in parsed.tags
        if tag == "a" and str(attrs.get("href", "")).startswith("#")
    }
    assert anchors and anchors <= ids


def _operations(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    paths = document["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_operation_is_on_the_page_with_its_fields(page: str, document: Schema) -> None:
    words = Page(page).words()
    for path, _, operation in _operations(document):
        assert path in words, path
        assert operation["summary"] in words, path
        body = operation.get("requestBody")
        if body is None:
            continue
        for media, content in body["content"].items():
            assert media in words
            for name, schema in content["schema"]["properties"].items():
                assert name in words, (path, name)
                if "default" in schema:
                    assert json.dumps(schema["default"]) in words, (path, name)


def test_types_ranges_and_defaults_read_as_words(page: str) -> None:
    words = Page(page).words()
    # Stability's form, from server/options.py's parsers and defaults.
    assert "alpha_matting_erode_size integer 0-100 10 " in words
    assert 'output_format one of png, webp "png" ' in words
    # OctoAI's own default; a JSON list field; a ModelsLab default.
    assert "post_process_mask boolean true " in words
    assert "bgcolor list of integer 0-255 (3-4 items)" in words
    assert "alpha_matting_background_threshold integer 0-255 20 " in words
    # Recorded from the IMG Processing transforms' parsers.
    assert 'fit one of fill, contain, cover "fill" ' in words
    assert "watermarks[].repetition_mode one of no_repeat, repeat, repeat_x, repeat_y" in words
    assert "The body must set width, height or both." in words


def test_each_error_shape_is_shown_with_an_example(page: str, document: Schema) -> None:
    words = Page(page).words()
    components = document["components"]
    for name in (
        "StabilityError",
        "OmixaError",
        "OctoAIError",
        "OctoAIValidationError",
        "ModelsLabError",
        "ImgProcessingError",
    ):
        assert f"Error shape: {name}" in words
        example = components["schemas"][name].get("examples", [None])[0]
        if example is not None:
            assert html.escape(json.dumps(example, indent=2)) in page


def test_the_keys_each_operation_takes(page: str) -> None:
    words = Page(page).words()
    assert "Key: `x-api-key: <key>`" not in words  # the marks become <code>
    assert "Key: x-api-key: <key>." in words
    assert "Key: Authorization: Bearer <key>." in words
    assert "Not needed while no keys are configured." in words
    assert "Key: the body's key field." in words  # ModelsLab's
    assert "Key: none" in words


def test_every_text_is_escaped() -> None:
    hostile = '<script>alert(1)</script>" onload="x'
    document = {
        "openapi": "3.1.0",
        "info": {"title": hostile, "version": hostile, "description": f"`{hostile}` **b**"},
        "tags": [{"name": hostile, "description": hostile}],
        "paths": {
            f"/a/{hostile}": {
                "post": {
                    "tags": [hostile],
                    "summary": hostile,
                    "operationId": hostile,
                    "description": hostile,
                    "requestBody": {
                        "content": {
                            hostile: {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        hostile: {
                                            "enum": [hostile],
                                            "default": hostile,
                                            "description": hostile,
                                        }
                                    },
                                }
                            }
                        }
                    },
                    "responses": {"200": {"description": hostile}},
                    "security": [],
                }
            }
        },
    }
    rendered = reference.render(copy.deepcopy(document))
    parsed = Page(rendered)
    assert "<script>" not in rendered
    # The quote stayed text: no attribute was opened by it.
    assert all(
        set(attrs)
        <= {
            "id",
            "href",
            "class",
            "rel",
            "lang",
            "charset",
            "name",
            "content",
            "scope",
            "aria-label",
        }
        for _, attrs in parsed.tags
    )
    assert {tag for tag, _ in parsed.tags} >= {"code", "strong"}
    assert hostile in parsed.words()


def test_the_page_of_the_installed_package_finds_its_stylesheet() -> None:
    assert reference.STYLESHEET.is_file()
    assert reference.STYLESHEET.parent == Path(reference.__file__).parent / "static" / "docs"
