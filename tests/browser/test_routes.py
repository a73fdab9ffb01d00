"""The page's routes over HTTP, on the fake engine (no browser): what is served, under
which headers, without a key, and that the HTML keeps to the page's CSP."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.middleware import PAGE_POLICY
from server.page import STATIC
from server.settings import Settings
from tests.conftest import PATH, ROOT, assert_error, wait_ready
from tests.fakes import BrightnessEngine


class Markup(HTMLParser):
    """What a CSP without 'unsafe-inline' would refuse, and every URL the HTML names."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        for attribute in ("src", "href"):
            value = names.get(attribute)
            if value is not None:
                self.urls.append(value)
        if tag == "style" or "style" in names:
            self.inline.append(f"<{tag}> with a style")
        if tag == "script" and "src" not in names:
            self.inline.append("an inline <script>")
        self.inline.extend(f"{name}= on <{tag}>" for name in names if name.startswith("on"))


def markup(html: str) -> Markup:
    parser = Markup()
    parser.feed(html)
    return parser


def test_the_page_is_served_without_a_key_under_the_strict_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == PAGE_POLICY.decode()
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-cache"
    assert response.text == (STATIC / "index.html").read_text()
    assert client.head("/").status_code == 200


def test_the_html_has_nothing_inline_and_names_only_its_own_files(client: TestClient) -> None:
    page = markup(client.get("/").text)
    assert page.inline == []
    local = [url for url in page.urls if url.startswith("/static/page/")]
    # Everything else: an in-page anchor, the empty data: icon or the API reference.
    assert sorted(set(page.urls) - set(local)) == ["#images-heading", "/docs", "data:,"]
    assert {"/static/page/page.css", "/static/page/page.js"} <= set(local)
    for url in local:
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("page.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("mask.js", "text/javascript"),
        ("zip.js", "text/javascript"),
        ("page.css", "text/css"),
    ],
)
def test_the_static_files_are_served_as_what_they_are(
    client: TestClient, name: str, media_type: str
) -> None:
    response = client.get(f"/static/page/{name}")
    assert response.status_code == 200
    # Python's table or the system's /etc/mime.types: both are JavaScript to a browser.
    served = response.headers["content-type"].split(";")[0]
    assert served == media_type or (media_type, served) == (
        "text/javascript",
        "application/javascript",
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC / name).read_bytes()


def test_every_module_the_scripts_import_is_there() -> None:
    imported = set()
    for script in STATIC.glob("*.js"):
        imported |= set(re.findall(r'from "\./([\w-]+\.js)"', script.read_text()))
    assert imported == {"api.js", "mask.js", "zip.js"}
    assert all((STATIC / name).is_file() for name in imported)


@pytest.mark.parametrize("path", ["/static/page/nothing.js", "/static/page/%2e%2e/page.py"])
def test_what_is_not_a_page_file_is_a_404(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found", "route: not found")


def test_the_page_is_told_a_key_is_needed_when_keys_are_configured(client: TestClient) -> None:
    response = client.get("/page/config")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"needs_key": True, "endpoint": PATH}


def test_with_no_keys_configured_the_page_asks_for_none(tmp_path: Path) -> None:
    app = create_app(Settings(cache_dir=tmp_path), engine=BrightnessEngine())
    with TestClient(app) as client:
        wait_ready(client)
        assert client.get("/page/config").json()["needs_key"] is False


def test_the_installed_package_carries_the_page() -> None:
    """pyproject's package-data must match every file under server/static/page, or an
    installed (not editable) Matte would serve a page without its scripts."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["server"]
    files = [path.relative_to(ROOT / "server") for path in STATIC.rglob("*") if path.is_file()]
    assert files
    for file in files:
        assert any(PurePosixPath(file.as_posix()).match(pattern) for pattern in patterns), file
