"""The whole chain in a real Chromium (issue 12 §1): keyturn's own client (``DeviceCode``, in a
thread, as a program on a login node) → ``keyturn serve``'s /device → "Sign in with Campus" → the
upstream oidc-provider's login and consent pages → keyturn's Approve → the client's token, whose
id_token and userinfo carry the mapped subject and the copied claims."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyturn import DeviceCode, MemoryStore
from keyturn.token import Token
from tests.server.test_server_upstream import Setup, claims_of, running_setup
from tests.support.browserfixture import JOB_TIMEOUT, BrowserThread
from tests.support.browserfixture import chromium as chromium


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """keyturn on http://localhost, the upstream on http://127.0.0.1: two sites, as a real
    provider is, so the browser sends no SameSite=Strict cookie on the way back from it."""
    yield from running_setup(tmp_path_factory.mktemp("upstream-browser"), host="localhost")


def sign_in_through_the_upstream(browser: Any, url: str, issuer: str) -> dict[str, Any]:
    """Play the person: the code page (filled in by verification_uri_complete), the upstream's
    button, the provider's dev login (any name) and consent, then Approve. What was seen."""
    context = browser.new_context()
    context.set_default_timeout(JOB_TIMEOUT * 1000)
    try:
        page = context.new_page()
        hosts: set[str] = set()
        page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
        page.goto(url)
        # The button's page sends the browser on to the upstream by itself.
        with page.expect_navigation(url=lambda u: not u.startswith(issuer)):
            page.click("button:has-text('Sign in with Campus')")
        for _ in range(6):  # the provider's login, then its consent
            if page.url.startswith(f"{issuer}/device/callback"):
                break
            if page.locator("input[name=login]").count():
                page.fill("input[name=login]", "alice")
                page.fill("input[name=password]", "any password works here")
            with page.expect_navigation():
                page.click("button[type=submit]")
        assert page.url.startswith(f"{issuer}/device/callback"), page.url
        consent = page.inner_text("body")
        with page.expect_navigation():
            page.click("button[value=approve]")
        return {"consent": consent, "result": page.inner_text("body"), "hosts": hosts}
    finally:
        context.close()


def test_a_device_login_through_the_upstream_in_chromium(setup: Setup,
                                                         chromium: BrowserThread) -> None:
    issuer = setup.keyturn.issuer
    shown: queue.Queue[Any] = queue.Queue()
    got: dict[str, Token | BaseException] = {}
    source = DeviceCode(issuer=issuer, client_id="demo", store=MemoryStore(),
                        prompt=shown.put, scope="openid profile email offline_access")

    def log_in() -> None:
        try:
            got["token"] = source.get_token()
        except BaseException as exc:  # handed to the test
            got["token"] = exc

    client = threading.Thread(target=log_in, daemon=True)
    client.start()
    verification = shown.get(timeout=JOB_TIMEOUT)
    seen = chromium.submit(lambda browser: sign_in_through_the_upstream(
        browser, verification.verification_uri_complete, issuer)).result(JOB_TIMEOUT)
    client.join(JOB_TIMEOUT)
    token = got["token"]
    assert isinstance(token, Token), token
    assert issuer.startswith("http://localhost:")
    assert "alice" in seen["consent"] and "Approve" in seen["consent"]
    assert "approved" in seen["result"].lower()
    # The browser went to keyturn and to the upstream, nowhere else.
    assert seen["hosts"] == {issuer.split("/")[2], setup.provider.issuer.split("/")[2]}
    # keyturn's client validated the local id_token; the mapped sub and copied claims are there.
    assert token.claims["sub"] == "alice" and token.claims["iss"] == issuer
    assert token.claims["email"] == "alice@example.test" and token.claims["name"] == "Alice"
    assert claims_of(token.id_token or "")["email"] == "alice@example.test"
    info = httpx.get(f"{issuer}/userinfo",
                     headers={"Authorization": f"Bearer {token.access_token}"}).json()
    assert info == {"sub": "alice", "name": "Alice", "email": "alice@example.test"}
