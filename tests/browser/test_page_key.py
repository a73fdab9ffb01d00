"""The page against a server with keys configured (MATTE_API_KEYS): it asks for the key,
sends it in the Authorization header, keeps it in localStorage and never in a URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.keys import Keys

from tests.browser.chromium import wait_for
from tests.browser.matte_page import MattePage, assert_clean_console, part
from tests.conftest import FIXTURES, KEY, PATH
from tests.matte_process import matte_server

pytestmark = pytest.mark.model

CAR = FIXTURES / "car-1.jpg"
STORED = "matte.apiKey"
WRONG = "sk-not-this-one"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with matte_server() as url:  # MATTE_API_KEYS is the suite's KEY
        yield url


@pytest.fixture
def page(browser: webdriver.Chrome, server_url: str, downloads: Path) -> MattePage:
    page = MattePage(browser, server_url, downloads)
    page.console()
    page.open()
    page.driver.execute_script("window.localStorage.clear()")
    page.open()
    return page


def unauthorized_message(server_url: str) -> str:
    answer = httpx.post(
        server_url + PATH,
        headers={"authorization": f"Bearer {WRONG}"},
        files={"image": ("car-1.jpg", CAR.read_bytes(), "image/jpeg")},
        timeout=60,
    )
    assert answer.status_code == 401
    [message] = answer.json()["errors"]
    return str(message)


def endpoint_requests(page: MattePage) -> int:
    return sum(url.endswith(PATH) for url in page.resource_urls())


def enter_key(page: MattePage, key: str) -> None:
    field = page.by_id("key")
    field.clear()
    field.send_keys(key, Keys.ENTER)  # the form is submitted from the keyboard


def test_the_key_is_asked_for_sent_and_kept_out_of_urls(page: MattePage, server_url: str) -> None:
    assert page.by_id("key-section").is_displayed()
    assert page.by_id("key-state").text == "No key is saved yet."
    assert page.storage(STORED) is None

    # Without a key nothing is sent: the image waits and the key field has the focus.
    page.choose(CAR)
    [item] = page.items()
    wait_for("the key prompt", lambda: page.status() == "Enter the API key to start.")
    assert page.driver.switch_to.active_element.get_attribute("id") == "key"
    assert item.get_attribute("aria-busy") == "true"
    assert endpoint_requests(page) == 0

    # A wrong key: the server's own 401 message, and the prompt stays.
    enter_key(page, WRONG)
    [item] = page.settled(1)
    assert part(item, ".error").text == unauthorized_message(server_url)
    assert page.by_id("key-section").is_displayed()
    assert page.driver.switch_to.active_element.get_attribute("id") == "key"
    assert page.storage(STORED) == WRONG

    # The right key: the image is sent again by itself and cut out.
    enter_key(page, KEY)
    wait_for("the retry", lambda: part(item, ".error").text == "")
    [item] = page.settled(1)
    assert part(item, ".cutout").is_displayed()
    assert page.result(item).mode == "RGBA"
    assert page.storage(STORED) == KEY
    assert page.by_id("key").get_attribute("value") == ""  # not left in the field
    assert page.by_id("key-state").text == "A key is saved in this browser."
    assert endpoint_requests(page) == 2
    assert not any(KEY in url or WRONG in url for url in page.resource_urls())
    assert_clean_console(page.console(), allowed_statuses=[401])


def test_a_saved_key_is_used_after_a_reload_until_it_is_forgotten(page: MattePage) -> None:
    enter_key(page, KEY)
    wait_for("the key to be saved", lambda: page.storage(STORED) == KEY)

    page.open()  # a new visit: the key is still there and used without asking
    assert page.by_id("key-state").text == "A key is saved in this browser."
    page.choose(CAR)
    [item] = page.settled(1)
    assert part(item, ".error").text == ""
    assert page.result(item).mode == "RGBA"

    page.by_id("forget-key").click()
    assert page.storage(STORED) is None
    assert page.by_id("key-state").text == "No key is saved yet."
    assert not page.by_id("forget-key").is_enabled()
    part(item, ".retry").click()
    wait_for("the key prompt", lambda: page.status() == "Enter the API key to start.")
    assert not any(KEY in url for url in page.resource_urls())
    assert_clean_console(page.console())
