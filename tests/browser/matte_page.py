"""The page as a test sees it: open it, hand it files, wait for its results and read
them back (the bytes behind each blob: URL), and what its console said."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.chromium import attribute, pixels, wait_for

# Records, for every item, what it showed while it was busy: the working text and
# whether an indeterminate <progress> was visible. Installed after each load.
_WATCH = """
window.busySeen = [];
new MutationObserver(() => {
  for (const item of document.querySelectorAll("#results > li[aria-busy='true']")) {
    const progress = item.querySelector("progress");
    window.busySeen.push({
      text: item.querySelector(".working-text").textContent,
      progress: progress !== null && !progress.hasAttribute("value") && progress.checkVisibility(),
    });
  }
}).observe(document.getElementById("results"),
           { subtree: true, childList: true, attributes: true, characterData: true });
"""


@dataclass
class MattePage:
    driver: webdriver.Chrome
    url: str
    downloads: Path  # where the browser saves what the page's links download

    def open(self) -> None:
        self.driver.get(self.url + "/")
        wait_for(
            "the page to read its settings",
            lambda: self.driver.execute_script(
                "return document.documentElement.dataset.ready === 'true'"
            ),
        )
        self.driver.execute_script(_WATCH)

    def by_id(self, name: str) -> WebElement:
        return self.driver.find_element(By.ID, name)

    def choose(self, *paths: Path) -> None:
        """Files picked in the file input (Selenium types their paths into it)."""
        self.by_id("file").send_keys("\n".join(str(path) for path in paths))

    def items(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#results > li")

    def settled(self, count: int) -> list[WebElement]:
        """The `count` items, once none of them is waiting or working."""

        def check() -> list[WebElement] | None:
            items = self.items()
            idle = all(item.get_attribute("aria-busy") == "false" for item in items)
            return items if len(items) == count and idle else None

        return wait_for(f"{count} finished item(s)", check)

    def busy_seen(self) -> list[dict[str, object]]:
        seen = self.driver.execute_script("return window.busySeen")
        assert isinstance(seen, list)
        return seen

    def status(self) -> str:
        return self.by_id("status").text

    def storage(self, name: str) -> str | None:
        value = self.driver.execute_script("return window.localStorage.getItem(arguments[0])", name)
        assert value is None or isinstance(value, str)
        return value

    def pixels(self, image: WebElement) -> np.ndarray:
        return pixels(self.driver, image)

    def download(self, item: WebElement) -> bytes:
        """What the item's download link saves (the image it shows, as the server sent
        it or as the page drew it)."""
        link = part(item, ".download")
        target = self.downloads / attribute(link, "download")
        target.unlink(missing_ok=True)
        link.click()
        # Chromium writes to a .crdownload file and renames it when it is complete.
        wait_for(f"{target.name} to be saved", target.is_file)
        return target.read_bytes()

    def natural_size(self, image: WebElement) -> tuple[int, int]:
        size = self.driver.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image
        )
        assert isinstance(size, list)
        return int(size[0]), int(size[1])

    def result(self, item: WebElement) -> Image.Image:
        """The image the item shows, as its download link saves it."""
        image = Image.open(io.BytesIO(self.download(item)))
        image.load()
        return image

    def resource_urls(self) -> list[str]:
        """Every URL the page has requested (navigation and fetches)."""
        names = self.driver.execute_script(
            """return [...performance.getEntriesByType("navigation"),
                       ...performance.getEntriesByType("resource")].map((entry) => entry.name)"""
        )
        assert isinstance(names, list)
        return [str(name) for name in names] + [self.driver.current_url]

    def console(self) -> list[str]:
        """The console's messages since the last call."""
        # Selenium leaves get_log untyped; it answers a list of {"level", "message", ...}.
        entries = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry["message"]) for entry in entries]


def part(item: WebElement, selector: str) -> WebElement:
    return item.find_element(By.CSS_SELECTOR, selector)


def assert_clean_console(messages: Sequence[str], allowed_statuses: Sequence[int] = ()) -> None:
    """No CSP refusal nor script error; a failed request only when the test caused it
    (Chromium logs the endpoint's 4xx answers as failed resources)."""
    for message in messages:
        if "Failed to load resource" in message:
            assert any(f"status of {status}" in message for status in allowed_statuses), message
            continue
        assert "Content Security Policy" not in message, message
        assert "Refused" not in message and "Uncaught" not in message, message
        raise AssertionError(f"unexpected console message: {message}")
