"""The page at `/` in a real headless Chromium, against a real Matte process on the real
model, with no keys configured (so the page never asks for one)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.chromium import WINDOW, attribute, hand_over, wait_for
from tests.browser.matte_page import MattePage, assert_clean_console, part
from tests.conftest import FIXTURES, PATH, ROOT, reference_alpha, soft_iou
from tests.matte_process import matte_server

pytestmark = pytest.mark.model

CAR = FIXTURES / "car-1.jpg"
ANIME = FIXTURES / "anime-girl-1.jpg"
ARTIFACTS = ROOT / "artifacts"  # git-ignored; the screenshot lands here
NOT_AN_IMAGE = b"these are notes, not a photo\n"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    # MATTE_API_KEYS empty: any key is accepted, as after a plain `make run`.
    with matte_server(lambda url: {"MATTE_API_KEYS": ""}) as url:
        yield url


@pytest.fixture
def page(browser: webdriver.Chrome, server_url: str, downloads: Path) -> MattePage:
    page = MattePage(browser, server_url, downloads)
    page.console()  # drop what earlier tests left in the log
    page.open()
    return page


def direct(server_url: str, photo: bytes, **fields: str) -> httpx.Response:
    """The same request as the page's, sent by the test itself: the reference."""
    return httpx.post(
        server_url + PATH,
        headers={"authorization": "Bearer sk-reference", "accept": "image/*"},
        files={"image": ("photo", photo, "application/octet-stream")},
        data=fields,
        timeout=120,
    )


def photo_size(photo: Path) -> tuple[int, int]:
    with Image.open(photo) as image:
        size: tuple[int, int] = ImageOps.exif_transpose(image).size
        return size


def test_a_photo_is_cut_out_beside_its_original(page: MattePage, server_url: str) -> None:
    assert not page.by_id("key-section").is_displayed()
    page.choose(CAR)
    [item] = page.settled(1)

    # The server's work was shown as it happened: an indeterminate progress bar.
    seen = page.busy_seen()
    assert any(state["progress"] and "Cutting out" in str(state["text"]) for state in seen), seen
    assert not part(item, ".working").is_displayed()
    assert part(item, ".error").text == ""

    cutout, original = part(item, ".cutout"), part(item, ".original")
    assert page.natural_size(cutout) == photo_size(CAR)
    assert page.natural_size(original) == photo_size(CAR)
    # What the page shows has transparency where the background was.
    shown = page.pixels(cutout)[:, :, 3]
    assert (shown == 0).mean() > 0.5 and (shown >= 250).mean() > 0.15  # the car is ~20%
    assert soft_iou(shown, reference_alpha(CAR)) >= 0.995
    # And its download is exactly what the endpoint answers a client sending the same form.
    saved = page.download(item)
    assert saved == direct(server_url, CAR.read_bytes(), output_format="png").content
    result = Image.open(io.BytesIO(saved))
    assert result.format == "PNG" and result.mode == "RGBA" and result.size == photo_size(CAR)
    np.testing.assert_array_equal(np.asarray(result)[:, :, 3], shown)

    # Beside the original at this width, and over the checkerboard.
    assert original.rect["y"] == cutout.rect["y"] and original.rect["x"] < cutout.rect["x"]
    frame = page.driver.execute_script(
        "return getComputedStyle(arguments[0].parentElement).backgroundImage", cutout
    )
    assert "linear-gradient" in str(frame)
    assert part(item, ".caption").text == "Cut-out, 480 \u00d7 360"
    download = part(item, ".download")
    assert attribute(download, "download") == "car-1.png"
    assert attribute(download, "href") == attribute(cutout, "src")
    assert page.status().startswith("car-1.jpg: done in")

    ARTIFACTS.mkdir(exist_ok=True)
    page.driver.execute_script("window.scrollTo(0, 0)")
    assert page.driver.save_screenshot(str(ARTIFACTS / "page.png"))
    with Image.open(ARTIFACTS / "page.png") as shot:
        assert shot.size == WINDOW
    assert_clean_console(page.console())


def at_point(page: MattePage, cutout: WebElement, fraction: float) -> str:
    """Which image the user sees at `fraction` of the result's width, mid-height."""
    found = page.driver.execute_script(
        """const frame = arguments[0].parentElement.getBoundingClientRect();
        const hit = document.elementFromPoint(frame.left + frame.width * arguments[1],
                                              frame.top + frame.height / 2);
        return hit ? hit.className : null;""",
        cutout,
        fraction,
    )
    return str(found)


def test_the_slider_and_the_mask_view_work_from_the_keyboard(page: MattePage) -> None:
    page.choose(CAR)
    [item] = page.settled(1)
    cutout, slider = part(item, ".cutout"), part(item, ".compare")
    toggle = part(item, ".mask-toggle")
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cutout)
    assert at_point(page, cutout, 0.5) == "cutout"

    slider.send_keys(Keys.END)  # all original
    assert slider.get_attribute("value") == "100"
    assert at_point(page, cutout, 0.1) == "overlay"
    assert at_point(page, cutout, 0.9) == "overlay"
    for _ in range(50):
        slider.send_keys(Keys.ARROW_LEFT)
    assert slider.get_attribute("value") == "50"
    assert slider.get_attribute("aria-valuetext") == "50% original"
    assert at_point(page, cutout, 0.25) == "overlay"
    assert at_point(page, cutout, 0.75) == "cutout"
    slider.send_keys(Keys.HOME)
    assert at_point(page, cutout, 0.1) == "cutout"

    alpha = page.pixels(cutout)[:, :, 3]
    cutout_url = attribute(cutout, "src")
    toggle.send_keys(Keys.SPACE)
    wait_for("the mask view", lambda: toggle.get_attribute("aria-pressed") == "true")
    assert attribute(cutout, "src") != cutout_url
    mask = np.asarray(page.result(item).convert("RGBA"))
    np.testing.assert_array_equal(page.pixels(cutout), mask)  # what is shown is what is saved
    # White where the subject is, black where the background was: the cut-out's alpha.
    np.testing.assert_array_equal(mask[:, :, 0], alpha)
    np.testing.assert_array_equal(mask[:, :, 1], alpha)
    np.testing.assert_array_equal(mask[:, :, 2], alpha)
    assert (mask[:, :, 3] == 255).all()
    assert attribute(part(item, ".download"), "download") == "car-1-mask.png"
    assert part(item, ".caption").text.startswith("Mask")

    toggle.send_keys(Keys.SPACE)
    wait_for("the cut-out again", lambda: toggle.get_attribute("aria-pressed") == "false")
    assert attribute(cutout, "src") == cutout_url
    assert_clean_console(page.console())


def test_the_chosen_options_are_sent(page: MattePage, server_url: str) -> None:
    page.by_id("format-webp").click()
    page.by_id("alpha-matting").click()
    page.driver.execute_script(
        """const colour = document.getElementById("bgcolor");
        colour.value = "#ff0000";
        colour.dispatchEvent(new Event("input", { bubbles: true }));"""
    )
    assert page.by_id("use-bgcolor").is_selected()  # picking a colour turns it on
    page.choose(CAR)
    [item] = page.settled(1)
    result = page.result(item)
    expected = Image.open(
        io.BytesIO(
            direct(
                server_url,
                CAR.read_bytes(),
                output_format="webp",
                alpha_matting="true",
                bgcolor="255,0,0",
            ).content
        )
    )
    assert result.format == "WEBP" and expected.format == "WEBP"
    np.testing.assert_array_equal(np.asarray(result), np.asarray(expected))
    assert attribute(part(item, ".download"), "download") == "car-1.webp"

    # Over a colour there is no alpha to read: the mask view asks the server for it.
    toggle = part(item, ".mask-toggle")
    toggle.click()
    wait_for("the mask view", lambda: toggle.get_attribute("aria-pressed") == "true")
    mask = page.result(item)
    assert mask.mode == "L"
    assert (np.asarray(mask) == 0).mean() > 0.2

    page.by_id("only-mask").click()
    page.by_id("format-png").click()  # a mask in PNG stays one channel
    part(item, ".retry").click()
    [item] = page.settled(1)
    only = page.result(item)
    assert only.mode == "L" and only.size == photo_size(CAR)
    assert not part(item, ".mask-toggle").is_displayed()  # the result is the mask
    assert attribute(part(item, ".download"), "download") == "car-1-mask.png"
    assert_clean_console(page.console())


def test_a_file_that_is_not_an_image_shows_the_servers_message(
    page: MattePage, server_url: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOT_AN_IMAGE)
    answer = direct(server_url, NOT_AN_IMAGE)
    assert answer.status_code == 400
    [message] = answer.json()["errors"]

    page.choose(notes)
    [item] = page.settled(1)
    error = part(item, ".error")
    assert error.is_displayed() and error.text == message
    assert page.status() == f"notes.txt: {message}."
    assert not part(item, ".controls").is_displayed()
    assert not page.by_id("download-all").is_enabled()
    assert part(item, ".retry").is_enabled()
    assert_clean_console(page.console(), allowed_statuses=[400])


def test_dropped_and_pasted_images_are_cut_out(page: MattePage) -> None:
    photo = ANIME.read_bytes()
    # False: the page cancelled the event, so the browser did not open the file itself.
    assert hand_over(page.driver, "drop", "dropped.jpg", photo, "image/jpeg") is False
    assert hand_over(page.driver, "paste", "image.png", CAR.read_bytes(), "image/png") is False
    dropped, pasted = page.settled(2)
    assert part(dropped, ".name").text == "dropped.jpg"
    assert page.result(dropped).size == photo_size(ANIME)
    assert part(pasted, ".name").text == "image.png"
    assert page.result(pasted).size == photo_size(CAR)
    assert_clean_console(page.console())


def test_download_all_is_one_zip_of_every_result(
    page: MattePage, downloads: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOT_AN_IMAGE)
    twin = tmp_path / "car-1.jpg"  # a second file of the same name
    twin.write_bytes(CAR.read_bytes())
    page.choose(CAR, notes, ANIME, twin)
    items = page.settled(4)
    expected = {
        "car-1.png": page.download(items[0]),
        "anime-girl-1.png": page.download(items[2]),
        "car-1 (2).png": page.download(items[3]),
    }
    target = downloads / "matte-cutouts.zip"
    target.unlink(missing_ok=True)
    page.by_id("download-all").click()
    wait_for("the zip to be saved", lambda: target.is_file() and zip_complete(target))
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None  # every entry's CRC-32 checks out
        assert archive.namelist() == list(expected)
        for name, data in expected.items():
            assert archive.read(name) == data
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED
    assert page.status() == "3 images in matte-cutouts.zip."
    assert_clean_console(page.console(), allowed_statuses=[400])


def zip_complete(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def test_every_control_is_labelled_reachable_and_legible(page: MattePage, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOT_AN_IMAGE)
    page.choose(notes)  # an item, so its controls are checked too
    page.settled(1)
    driver = page.driver
    assert driver.execute_script("return document.documentElement.lang") == "en"
    unlabelled = driver.execute_script(
        """return Array.from(document.querySelectorAll("input, button, a[href]"))
          .filter((el) => {
            const labels = Array.from(el.labels || []).map((l) => l.textContent).join("");
            const name = labels.trim() || el.getAttribute("aria-label")
              || (el.tagName === "INPUT" ? "" : el.textContent.trim());
            return !name;
          }).map((el) => el.outerHTML.slice(0, 80));"""
    )
    assert unlabelled == []

    # The keyboard reaches the file input (the drop zone's label), which shows focus.
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    reached = []
    for _ in range(30):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        reached.append(driver.execute_script("return document.activeElement.id"))
        if reached[-1] == "file":
            break
    assert reached[-1] == "file", reached
    outline = driver.execute_script(
        "return getComputedStyle(document.getElementById('drop')).outlineStyle"
    )
    assert outline == "solid"

    low = [
        (text, ratio) for text, ratio, needed in contrast_of_visible_text(driver) if ratio < needed
    ]
    assert low == []
    assert_clean_console(page.console(), allowed_statuses=[400])


# Each visible element's own text, its colour and the first opaque background behind it.
_TEXT_COLOURS = """
const opaque = (colour) => colour !== "transparent" && !/rgba\\(.*,\\s*0\\)$/.test(colour);
const found = [];
for (const el of document.querySelectorAll("body *")) {
  if (!el.checkVisibility({ visibilityProperty: true })) continue;
  const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  let background = "rgb(255, 255, 255)";
  for (let node = el; node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (opaque(colour)) { background = colour; break; }
  }
  const style = getComputedStyle(el);
  found.push([el.textContent.trim().slice(0, 40), style.color, background,
              parseFloat(style.fontSize), Number(style.fontWeight)]);
}
return found;
"""


def contrast_of_visible_text(driver: webdriver.Chrome) -> list[tuple[str, float, float]]:
    """(text, WCAG contrast ratio, the ratio AA asks of text of its size)."""
    rows = driver.execute_script(_TEXT_COLOURS)
    assert isinstance(rows, list) and rows
    measured = []
    for text, colour, background, size, weight in rows:
        ratio = contrast(rgb(colour), rgb(background))
        large = size >= 24 or (size >= 18.66 and weight >= 700)
        measured.append((str(text), ratio, 3.0 if large else 4.5))
    return measured


def rgb(css: str) -> tuple[float, float, float]:
    inside = css[css.index("(") + 1 : css.index(")")]
    red, green, blue = (float(value) for value in inside.replace(",", " ").split()[:3])
    return red, green, blue


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    def luminance(colour: tuple[float, float, float]) -> float:
        channels = [value / 255 for value in colour]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_is_measured_as_wcag_defines_it() -> None:
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast((119, 119, 119), (255, 255, 255)) == pytest.approx(4.48, abs=0.01)
    assert rgb("rgba(10, 88, 168, 1)") == (10.0, 88.0, 168.0)


def test_a_phone_sized_screen_gets_one_column(page: MattePage) -> None:
    driver = page.driver
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        page.open()
        page.choose(CAR)
        [item] = page.settled(1)
        original, cutout = part(item, ".original"), part(item, ".cutout")
        assert original.rect["x"] == cutout.rect["x"]
        assert original.rect["y"] + original.rect["height"] <= cutout.rect["y"]
        widths = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert widths[1] == 390 and widths[0] <= widths[1]  # nothing scrolls sideways
        assert cutout.rect["width"] <= 390
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert_clean_console(page.console())


def test_the_page_and_its_files_come_from_this_server(page: MattePage, server_url: str) -> None:
    page.choose(CAR)
    page.settled(1)
    urls = [url for url in page.resource_urls() if not url.startswith(("blob:", "data:"))]
    assert urls and all(url.startswith(server_url + "/") for url in urls), urls
    assert_clean_console(page.console())
