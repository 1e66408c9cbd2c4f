"""The verification page as people see it: a real Chromium at desktop (1280x800) and phone
(375x667) sizes walks the page of a real server (code, a wrong password, the approval question,
the result) and measures what a person would notice. Screenshots of every step are saved (the
directory is printed; set KEYTURN_PAGE_SHOTS to keep them somewhere of your choosing)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from keyturn.protocol.grants import GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN
from keyturn.server.config import ClientConfig
from keyturn.server.pages import DevicePages, SignInOption
from keyturn.server.runner import ServerThread
from tests.support.browserfixture import (
    JOB_TIMEOUT,
    BrowserThread,
    chromium,  # noqa: F401  (the fixture)
)
from tests.support.serverkit import ALICE_PASSWORD, make_config, poll, start_device

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 667}}
SITE = "Example Lab"
#: The longest approval question a test client can ask: every built-in scope (one of them with
#: the site's own words), one the site describes, one nobody does (shown by its name), and a
#: long client name.
SCOPES = "openid profile email offline_access api api:read"

# Every input that is not hidden, and what labels it (its <label>, visible and not empty).
_UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden])')]
  .filter(i => !i.labels.length || !i.labels[0].offsetParent || !i.labels[0].innerText.trim())
  .map(i => i.name)"""
# WCAG 2.1 contrast of each element's text against the first opaque background behind it.
_CONTRAST = """() => {
  const rgb = s => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(c => { c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const background = el => { for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor; const v = rgb(c);
      if (v.length < 4 || v[3] > 0) return v.slice(0, 3); } return [255, 255, 255]; };
  return [...document.querySelectorAll('body *')]
    .filter(el => el.offsetParent && [...el.childNodes].some(n => n.nodeType === 3 && n.data.trim()))
    .map(el => { const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
      return [el.tagName + '.' + el.className, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; });
}"""


@dataclass
class Step:
    name: str
    title: str = ""
    scroll_width: int = 0
    inner_width: int = 0
    unlabelled: list[str] = field(default_factory=list)
    contrast: list[tuple[str, float]] = field(default_factory=list)
    focused: str = ""


@dataclass
class Walk:
    """What the browser saw on one walk through the page."""

    size: str
    steps: dict[str, Step] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    kept_username: str = ""
    kept_password: str = ""
    warning: str = ""
    question: str = ""
    scopes: list[str] = field(default_factory=list)
    approve_box: dict[str, float] = field(default_factory=dict)
    title_after_enter: str = ""
    focused_by_tab: str = ""
    posted: list[str] = field(default_factory=list)
    device_code: str = ""
    shown_code: str = ""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    base = make_config()
    lab = ClientConfig("lab", "Lab cluster command line (hpc-login-01)",
                       (GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN), tuple(SCOPES.split()))
    config = replace(base, clients={**base.clients, "lab": lab}, site_name=SITE,
                     scope_descriptions={"api": "run jobs on the cluster for you",
                                         "email": "your address at the lab"})
    running = ServerThread(config, data_dir=tmp_path_factory.mktemp("look"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("KEYTURN_PAGE_SHOTS") or tmp_path_factory.mktemp("page-shots"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"screenshots of the verification page: {where}")
    return where


def _step(page: Any, name: str, shots: Path, size: str) -> Step:
    page.screenshot(path=str(shots / f"{size}-{name}.png"), full_page=True)
    return Step(name=name, title=page.title(),
                scroll_width=page.evaluate("document.documentElement.scrollWidth"),
                inner_width=page.evaluate("window.innerWidth"),
                unlabelled=page.evaluate(_UNLABELLED), contrast=page.evaluate(_CONTRAST),
                focused=page.evaluate("document.activeElement.id || document.activeElement.tagName"))


def _walk(browser: Any, issuer: str, user_code: str, size: str, shots: Path) -> Walk:
    walk = Walk(size=size)
    context = browser.new_context(viewport=SIZES[size])
    context.set_default_timeout(JOB_TIMEOUT * 1000)
    try:
        page = context.new_page()
        page.on("request", lambda request: walk.requested.append(request.url))
        page.on("request", lambda request: walk.posted.append(request.url)
                if request.method == "POST" else None)
        page.on("console", lambda message: walk.console.append(message.text))
        page.goto(f"{issuer}/device")
        walk.steps["code"] = _step(page, "code", shots, size)
        page.fill("#user_code", user_code.lower().replace("-", " "))
        page.fill("#username", "alice")
        page.fill("#password", "not her password")
        with page.expect_navigation():
            page.press("#password", "Enter")
        walk.steps["wrong"] = _step(page, "wrong-password", shots, size)
        walk.kept_username = page.input_value("#username")
        walk.kept_password = page.input_value("#password")
        page.fill("#password", ALICE_PASSWORD)
        with page.expect_navigation():
            page.press("#password", "Enter")  # Enter: the primary action, Continue
        walk.steps["consent"] = _step(page, "consent", shots, size)
        page.screenshot(path=str(shots / f"{size}-consent-first-screen.png"))  # no scrolling
        walk.warning = page.inner_text(".warning")
        walk.question = page.inner_text(".card p")
        walk.scopes = page.locator(".scopes li").all_inner_texts()
        walk.approve_box = page.evaluate("""() => { const r = document.querySelector(
            'button[value=approve]').getBoundingClientRect();
            return {top: r.top, bottom: r.bottom, height: innerHeight, scrolled: scrollY}; }""")
        # Enter on arrival approves nothing: no text field, so no implicit submission, and no
        # button has the focus (a second POST to /device/decision would be counted in posted)
        page.keyboard.press("Enter")
        walk.title_after_enter = page.title()
        page.keyboard.press("Tab")  # from the top of the page: the first thing to act on
        walk.focused_by_tab = page.evaluate("document.activeElement.value || ''")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        walk.steps["done"] = _step(page, "approved", shots, size)
    finally:
        context.close()
    return walk


@pytest.fixture(scope="module", params=list(SIZES))
def walk(request: pytest.FixtureRequest, server: ServerThread, chromium: BrowserThread,  # noqa: F811
         shots: Path) -> Walk:
    started = start_device(server.issuer, client_id="lab", scope=SCOPES)
    seen = chromium.submit(lambda browser: _walk(browser, server.issuer, started["user_code"],
                                                 request.param, shots)).result(JOB_TIMEOUT * 4)
    seen.device_code = started["device_code"]
    seen.shown_code = started["user_code"]
    return seen


def test_no_page_scrolls_sideways(walk: Walk) -> None:
    for step in walk.steps.values():
        assert step.scroll_width <= step.inner_width, (walk.size, step)


def test_the_approve_button_is_on_the_first_screen(walk: Walk) -> None:
    box = walk.approve_box
    assert box["scrolled"] == 0 and box["top"] >= 0 and box["bottom"] <= box["height"], box


def test_enter_alone_approves_nothing_and_tab_then_enter_approves(server: ServerThread,
                                                                   walk: Walk) -> None:
    # Enter on arrival did nothing (the page stayed, one decision was posted in the whole walk);
    # Approve is the first thing Tab reaches, and Tab then Enter approved the device.
    assert walk.title_after_enter == f"Approve this sign-in? · {SITE}"
    assert [url for url in walk.posted if url.endswith("/device/decision")] == [
        f"{server.issuer}/device/decision"]
    assert walk.focused_by_tab == "approve"
    assert walk.steps["done"].title == f"Device approved · {SITE}"
    assert poll(server.issuer, walk.device_code, client_id="lab").status_code == 200


def test_every_input_has_a_visible_label(walk: Walk) -> None:
    for step in walk.steps.values():
        assert step.unlabelled == [], (walk.size, step.name)


def test_text_has_aa_contrast(walk: Walk) -> None:
    # WCAG 2.1 AA asks 4.5:1 for body text (3:1 only for large text; all is held to 4.5 here)
    for step in walk.steps.values():
        assert step.contrast, step
        low = [(what, round(ratio, 2)) for what, ratio in step.contrast if ratio < 4.5]
        assert low == [], (walk.size, step.name, low)


def test_the_question_names_client_site_and_user_and_the_scopes_in_words(walk: Walk) -> None:
    # her user name, then her name claim (the subject may be an opaque id after an upstream)
    assert walk.question == (f"Allow Lab cluster command line (hpc-login-01) to sign in to {SITE} "
                             "as alice (Alice Example)?")
    # the site's words replace the built-in ones for email; offline_access is the last line,
    # as the client is allowed the refresh grant (30 days: lifetimes.refresh_token)
    assert walk.scopes == ["Confirm who you are", "Your name and user name",
                           "Your address at the lab", "Run jobs on the cluster for you",
                           "api:read", "Stay signed in on that device until it goes unused for "
                           "30 days"]


def test_the_remote_phishing_warning_is_shown(walk: Walk) -> None:
    assert walk.warning.startswith("Approve only a sign-in you started yourself, on a device you "
                                   "have in front of you")
    assert "If someone sent you this code or asked you to enter it, choose Deny." in walk.warning
    # the code itself, to compare with the device (verification_uri_complete: nobody typed it)
    assert f"only if it shows the code {walk.shown_code}." in walk.warning


def test_a_wrong_password_keeps_the_name_not_the_password(walk: Walk) -> None:
    assert walk.kept_username == "alice" and walk.kept_password == ""
    assert walk.steps["wrong"].focused == "password"  # where the person goes on typing


def test_the_site_name_is_in_every_title_and_the_empty_code_field_has_focus(walk: Walk) -> None:
    assert all(step.title.endswith(f" · {SITE}") for step in walk.steps.values())
    assert walk.steps["code"].focused == "user_code"


def test_nothing_is_loaded_from_elsewhere_and_the_policy_blocks_nothing(server: ServerThread,
                                                                      walk: Walk) -> None:
    # default-src 'none' with the one stylesheet pinned by its hash: a style or resource the
    # policy refused would be a console error ("Refused to apply inline style ...").
    assert walk.requested and all(url.startswith(f"{server.issuer}/") for url in walk.requested)
    assert not [line for line in walk.console if "Content Security Policy" in line]


def test_upstream_buttons_fit_a_phone(server: ServerThread, chromium: BrowserThread,  # noqa: F811
                                      shots: Path) -> None:
    """The code form with two "Sign in with" buttons and the local fields (rendered by the
    server's DevicePages, shown in Chromium as it would be served)."""
    pages = DevicePages(server.app.state.server, _NoUsers(), "", sign_in_options=[
        SignInOption(name="corp", display_name="Example Corporation single sign-on",
                     action="/device/upstream/corp"),
        SignInOption(name="edu", display_name="eduGAIN", action="/device/upstream/edu")])
    html = bytes(pages.code_form("csrf-value").body).decode()

    def look(browser: Any) -> tuple[int, list[str], list[float]]:
        page = browser.new_page(viewport=SIZES["phone"])
        try:
            page.set_content(html)
            page.screenshot(path=str(shots / "phone-upstreams.png"), full_page=True)
            widths = page.evaluate("[...document.querySelectorAll('.stack button')]"
                                   ".map(b => b.getBoundingClientRect().width)")
            return page.evaluate("document.documentElement.scrollWidth"), \
                page.evaluate(_UNLABELLED), widths
        finally:
            page.close()

    scroll_width, unlabelled, widths = chromium.submit(look).result(JOB_TIMEOUT)
    assert scroll_width <= SIZES["phone"]["width"] and unlabelled == []
    # one button per row, the card's width
    assert len(widths) == 2 and widths[0] == widths[1] and widths[0] > 250


class _NoUsers:
    def authenticate(self, username: str, password: str) -> None:
        return None


def test_a_prefilled_code_starts_at_the_user_name(server: ServerThread,
                                                  chromium: BrowserThread) -> None:  # noqa: F811
    """verification_uri_complete fills the code in: the person goes on with the user name."""
    started = start_device(server.issuer, scope="openid")

    def look(browser: Any) -> tuple[str, str]:
        page = browser.new_page(viewport=SIZES["phone"])
        try:
            page.goto(started["verification_uri_complete"])
            return page.input_value("#user_code"), page.evaluate("document.activeElement.id")
        finally:
            page.close()

    assert chromium.submit(look).result(JOB_TIMEOUT) == (started["user_code"], "username")


def test_a_digits_code_gets_the_number_pad_and_its_hint(tmp_path: Path, chromium: BrowserThread,  # noqa: F811
                                                        shots: Path) -> None:
    with ServerThread(make_config(user_code_type="digits", site_name=SITE),
                      data_dir=tmp_path) as running:
        def look(browser: Any) -> tuple[str, str, int]:
            page = browser.new_page(viewport=SIZES["phone"])
            try:
                page.goto(f"{running.issuer}/device")
                page.screenshot(path=str(shots / "phone-digits-code.png"), full_page=True)
                return (page.evaluate("document.getElementById('user_code').inputMode"),
                        page.inner_text("#user_code_hint"),
                        page.evaluate("document.documentElement.scrollWidth"))
            finally:
                page.close()

        mode, hint, width = chromium.submit(look).result(JOB_TIMEOUT)
    assert mode == "numeric" and hint == "11 digits, like 0123-4567-890"
    assert width <= SIZES["phone"]["width"]
