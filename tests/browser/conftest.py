"""One headless Chromium for all the page's tests (each server is its own origin, so
each has its own localStorage), and the folder its downloads land in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests.browser.chromium import chromium


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads: Path) -> Iterator[webdriver.Chrome]:
    with chromium(downloads) as driver:
        yield driver
