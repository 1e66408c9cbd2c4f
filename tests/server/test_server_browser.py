"""The verification page in real Chromium (Debian's /usr/bin/chromium via Python playwright):
approve and deny as a person would, and check the page cannot be framed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.serverkit import ALICE_PASSWORD, poll, start_device

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # never leave loopback
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE [::1]",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright import sync_api
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


def sign_in(page, issuer: str, user_code: str, *, typed: str | None = None) -> None:
    page.goto(f"{issuer}/device")
    page.fill("#user_code", typed if typed is not None else user_code)
    page.fill("#username", "alice")
    page.fill("#password", ALICE_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=It asks for:")


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_approve_in_chromium(server, page):
    started = start_device(server.issuer, scope="openid profile")
    sign_in(page, server.issuer, started["user_code"], typed=started["user_code"].lower())
    assert page.is_visible("text=Demo CLI") and page.is_visible("li >> text=Your name and user name")
    page.click("button[value=approve]")
    page.wait_for_selector("h1:has-text('Device approved')")
    assert poll(server.issuer, started["device_code"]).status_code == 200


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_deny_in_chromium(server, page):
    started = start_device(server.issuer, scope="openid")
    sign_in(page, server.issuer, started["user_code"])
    page.click("button[value=deny]")
    page.wait_for_selector("h1:has-text('Request denied')")
    assert poll(server.issuer, started["device_code"]).json()["error"] == "access_denied"


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_verification_uri_complete_fills_the_code(server, page):
    started = start_device(server.issuer, scope="openid")
    complete = f"{server.issuer}/device?user_code={started['user_code']}"
    page.goto(complete)
    assert page.input_value("#user_code") == started["user_code"]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_page_refuses_to_be_framed(server, page):
    # set_content waits for the load event, which waits for both iframes to finish (or fail).
    page.set_content(f'<iframe name=page src="{server.issuer}/device"></iframe>'
                     f'<iframe name=control src="{server.issuer}/health"></iframe>', wait_until="load")
    framed = page.frame(name="page")
    control = page.frame(name="control")
    assert control is not None and "ok" in control.content()  # framing itself works here...
    assert framed is not None and framed.query_selector("#user_code") is None  # ...but not /device
