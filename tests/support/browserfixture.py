"""A real Chromium (Debian's ``/usr/bin/chromium``, driven by Python playwright) for browser tests.

playwright's sync API binds a browser to the thread that started it, while the code under test
needs the browser to act *on its own*, as a person's browser does: ``webbrowser.open()`` returns at
once and the browser talks to keyturn's loopback listener while keyturn waits. So Chromium lives in
a :class:`BrowserThread` of its own, and tests hand it jobs (:meth:`BrowserThread.submit`) that
return futures.

One Chromium serves the whole session: the first test that needs it starts it, the others get
the same one, and ``tests/conftest.py`` closes it at the end (:func:`close_session_chromium`).
Its jobs share no state: each one opens a browser context of its own (:func:`provider_sign_in`,
:func:`visit_url`; ``browser.new_page()`` makes one too), so cookies and pages never carry over.

Usage::

    from tests.support.browserfixture import chromium  # noqa: F401  (the fixture)

    def test_x(chromium):
        future = chromium.submit(lambda browser: ...)

:func:`provider_sign_in` plays the person on the test provider's dev login and consent pages.
Never ``playwright install``: the browser is the distribution's, at ``CHROMIUM``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "JOB_TIMEOUT",
    "BrowserThread",
    "Visit",
    "chromium",
    "chromium_thread",
    "close_session_chromium",
    "provider_sign_in",
    "visit_url",
]

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # The browser never leaves loopback; 127.0.0.1 must be excluded explicitly.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE [::1]",
]
#: Upper bound for one browser job (page loads on a busy 2-core machine included).
JOB_TIMEOUT = 60.0


class BrowserThread:
    """One Chromium owned by one thread; other threads give it jobs ``job(browser) -> T``."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[Any], Any], Future[Any]] | None] = queue.Queue()
        self._ready: Future[str] = Future()
        self._thread = threading.Thread(target=self._run, name="chromium", daemon=True)
        self._thread.start()
        self.version = self._ready.result(timeout=JOB_TIMEOUT)

    def _run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                self._ready.set_result(browser.version)
                while (item := self._jobs.get()) is not None:
                    job, future = item
                    if not future.set_running_or_notify_cancel():
                        continue
                    try:
                        future.set_result(job(browser))
                    except BaseException as exc:  # handed to the test through the future
                        future.set_exception(exc)
                browser.close()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    @property
    def alive(self) -> bool:
        """Whether the thread still takes jobs (it ends when Chromium could not go on)."""
        return self._thread.is_alive()

    def submit(self, job: Callable[[Any], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(JOB_TIMEOUT)


#: The session's Chromium (see the module's docstring): a launch costs 1.5-3 s, once per session.
_session: BrowserThread | None = None
_session_lock = threading.Lock()


@contextlib.contextmanager
def chromium_thread() -> Iterator[BrowserThread]:
    """The session's running :class:`BrowserThread` (started on first use, and again if its thread
    ended); skips the test only when Debian's chromium is missing."""
    global _session
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with _session_lock:
        if _session is None or not _session.alive:
            _session = BrowserThread()
        browser = _session
    yield browser


def close_session_chromium() -> None:
    """Close the session's Chromium, if one was started (``tests/conftest.py``, at the end)."""
    global _session
    with _session_lock:
        browser, _session = _session, None
    if browser is not None:
        browser.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    """A real Chromium for the test module (``from browserfixture import *``): the session's."""
    with chromium_thread() as browser:
        yield browser


@dataclass
class Visit:
    """What the browser saw when it came back to the redirect URI."""

    url: str = ""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    title: str = ""
    text: str = ""
    #: Every URL the page loaded, in order (requests to other hosts would show up here).
    requested: list[str] = field(default_factory=list)


def provider_sign_in(
    browser: Any, url: str, *, redirect_prefix: str | None = None, login: str = "alice",
    abort: bool = False, before: Callable[[Any], None] | None = None, max_steps: int = 10,
) -> Visit:
    """Open ``url`` in a fresh browser context and sign in on the test provider's dev pages (any
    login and password work), or with ``abort=True`` press "[ Cancel ]", until the browser lands
    on a URL starting with ``redirect_prefix`` (default: the request's ``redirect_uri``); return
    what it showed there. ``before(page)`` runs first (to visit other URLs with the same page)."""
    if redirect_prefix is None:
        redirect_prefix = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    prefix: str = redirect_prefix
    context = browser.new_context()
    context.set_default_timeout(JOB_TIMEOUT * 1000)
    visit = Visit()
    try:
        page = context.new_page()
        page.on("request", lambda request: visit.requested.append(request.url))

        def landed(response: Any) -> None:
            if response.url.startswith(prefix) and response.request.is_navigation_request():
                visit.status = response.status
                visit.headers = dict(response.headers)

        page.on("response", landed)
        if before is not None:
            before(page)
        page.goto(url)
        for _ in range(max_steps):
            if page.url.startswith(prefix):
                page.wait_for_load_state()
                visit.url, visit.title = page.url, page.title()
                visit.text = page.inner_text("body")
                return visit
            if abort:
                with page.expect_navigation(url=lambda u: u.startswith(prefix)):
                    page.click("text=[ Cancel ]")
                continue
            if page.locator("input[name=login]").count():
                page.fill("input[name=login]", login)
                page.fill("input[name=password]", "any password works here")
            with page.expect_navigation():
                page.click("button[type=submit]")
        raise AssertionError(f"the browser did not reach {prefix} within {max_steps} "
                             f"steps; it is on {page.url}")
    finally:
        context.close()


def visit_url(browser: Any, url: str) -> Visit:
    """Open ``url`` in a fresh context and return what the page showed."""
    context = browser.new_context()
    context.set_default_timeout(JOB_TIMEOUT * 1000)
    try:
        page = context.new_page()
        response = page.goto(url)
        return Visit(url=page.url, status=response.status if response else None,
                     headers=dict(response.headers) if response else {}, title=page.title(),
                     text=page.inner_text("body"), requested=[url])
    finally:
        context.close()
