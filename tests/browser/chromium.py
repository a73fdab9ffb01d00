"""Headless Chromium for the page's tests: Debian's `chromium` and `chromium-driver`,
driven by Selenium through the chromedriver on disk (Selenium Manager is never asked,
so nothing is downloaded), with a throwaway profile and download folder.

Without them the tests are skipped, except under `make test` (which installs them and
sets REQUIRE_SERVICES=1) and in CI (CI=true), where they fail.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1000, 700)  # the README's screenshot is taken at this size
WAIT_S = 120.0  # one cut-out on a busy 2-core machine, with room
POLL_S = 0.1

T = TypeVar("T")


def _unavailable(reason: str) -> NoReturn:
    message = f"chromium and chromedriver are needed for the page's browser tests: {reason}"
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (CI runs them: install chromium chromium-driver)", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def chromium(downloads: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium that saves downloads to `downloads`, quit at the end."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        _unavailable(f"{', '.join(missing)} not found")
    with tempfile.TemporaryDirectory(prefix="matte-chromium-") as profile:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",  # Chromium's sandbox refuses to start as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--force-device-scale-factor=1",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            # Nothing but the test's own server is ever reached.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-features=Translate,OptimizationHints,MediaRouter",
        ):
            options.add_argument(argument)
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
            },
        )
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=str(CHROMEDRIVER))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_script_timeout(WAIT_S)
            # --window-size counts the window's frame: grow it until the page gets WINDOW.
            inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
            outer = driver.get_window_size()
            driver.set_window_size(
                outer["width"] + WINDOW[0] - inner[0], outer["height"] + WINDOW[1] - inner[1]
            )
            yield driver
        finally:
            driver.quit()


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """`check()`'s first truthy value, polled until `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


# An image's pixels as the page has them, drawn on a canvas (the page's CSP lets no
# script fetch a blob: URL, and needs not: images are shown, downloaded or zipped).
_PIXELS = """
const image = arguments[0];
const canvas = document.createElement("canvas");
canvas.width = image.naturalWidth;
canvas.height = image.naturalHeight;
const context = canvas.getContext("2d");
context.drawImage(image, 0, 0);
const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
let text = "";
for (let i = 0; i < data.length; i += 0x8000) {
  text += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
}
return [canvas.width, canvas.height, btoa(text)];
"""


def pixels(driver: webdriver.Chrome, image: WebElement) -> np.ndarray:
    """The RGBA pixels of a shown `image`: its alpha exact, and the colour of its opaque
    pixels (a canvas keeps colour premultiplied, so partly transparent ones may shift)."""
    width, height, data = driver.execute_script(_PIXELS, image)
    flat = np.frombuffer(base64.b64decode(data), dtype=np.uint8)
    return flat.reshape(int(height), int(width), 4)


# A File of the given bytes, handed to the page as a drop or a paste would.
_HAND_OVER = """
const [kind, name, type, data, done] = arguments;
const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type }));
const event = kind === "drop"
  ? new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true })
  : new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true });
const target = kind === "drop" ? document.getElementById("drop") : document.body;
done(target.dispatchEvent(event));
"""


def hand_over(driver: webdriver.Chrome, kind: str, name: str, data: bytes, type_: str) -> bool:
    """Drop (`kind` "drop") or paste ("paste") a file on the page; False when the
    page took it (it cancels the event so the browser does not open the file)."""
    encoded = base64.b64encode(data).decode("ascii")
    dispatched = driver.execute_async_script(_HAND_OVER, kind, name, type_, encoded)
    assert isinstance(dispatched, bool)
    return dispatched


def attribute(element: WebElement, name: str) -> str:
    value = element.get_attribute(name)
    assert value is not None, f"no {name} attribute"
    return value
