"""``account=`` (issue 11.5): a local name for one of several logins at one provider, sent as
``login_hint`` where the login takes one. The real provider shows what it got: its login page
comes with the login field filled in with the hint (oidc-provider's login page does that)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keyturn import AuthorizationCode, ConfigError, DeviceCode, FileStore
from keyturn.protocol.device import DeviceVerification
from tests.support.providerfixture import Provider, _Browser, _next_form, _submit

TIMEOUT = 60.0


def _log_in(provider: Provider, url: str, login: str) -> tuple[str | None, str | None]:
    """Log in as ``login`` through the provider's pages from ``url`` (an authorization URL, or a
    device verification URL); the value its login page filled in the login field, and the
    redirect it ended with (None for a device login)."""
    prefilled: str | None = None
    with _Browser(provider) as browser:
        response = browser.go("GET", url)
        for _ in range(12):
            if browser.left_to is not None:
                return prefilled, browser.left_to
            page, form = _next_form(browser, response)
            if "Sign-in Success" in page.title:
                return prefilled, None
            assert form is not None, response.text[:500]
            fields = dict(form["fields"])
            if "login" in fields or fields.get("prompt") == "login":
                prefilled = fields.get("login")
                fields.update(login=login, password="secret")
            response = _submit(browser, response, form, fields)
    raise AssertionError(f"the login from {url} did not end")


class Person:
    """open_browser= / prompt=: looks at the login page, then logs in as ``login``, in a thread."""

    def __init__(self, provider: Provider, login: str) -> None:
        self.provider, self.login = provider, login
        self.urls: list[str] = []
        self.prefilled: list[str | None] = []
        self.errors: list[BaseException] = []

    def _run(self, job: Any) -> None:
        def guarded() -> None:
            try:
                job()
            except BaseException as exc:  # reported by the test, not lost in the thread
                self.errors.append(exc)
        threading.Thread(target=guarded, daemon=True).start()

    def browser(self, url: str) -> bool:
        self.urls.append(url)

        def visit() -> None:
            prefilled, redirect = _log_in(self.provider, url, self.login)
            self.prefilled.append(prefilled)
            assert redirect is not None
            httpx.get(redirect, trust_env=False, timeout=TIMEOUT)
        self._run(visit)
        return True

    def device(self, verification: DeviceVerification) -> None:
        url = verification.verification_uri_complete
        assert url is not None
        self.urls.append(url)

        def approve() -> None:
            self.prefilled.append(_log_in(self.provider, url, self.login)[0])
        self._run(approve)


def test_a_browser_login_sends_the_account_as_login_hint(provider: Provider, tmp_path: Path) -> None:
    person = Person(provider, "alice")
    source = AuthorizationCode(issuer=provider.issuer, client_id="public", account="alice",
                               open_browser=person.browser, store=FileStore(tmp_path),
                               login_timeout=TIMEOUT)
    token = source.get_token()
    assert person.errors == []
    assert parse_qs(urlsplit(person.urls[0]).query)["login_hint"] == ["alice"]
    assert person.prefilled == ["alice"]  # the provider got it
    assert token.claims is not None and token.claims["sub"] == "alice"


def test_a_device_login_sends_the_account_as_login_hint(provider: Provider, tmp_path: Path) -> None:
    provider.set_device_knobs(interval=1)
    try:
        person = Person(provider, "bob")
        source = DeviceCode(issuer=provider.issuer, client_id="public", account="bob",
                            prompt=person.device, store=FileStore(tmp_path))
        token = source.get_token()
    finally:
        provider.set_device_knobs(interval=None)
    assert person.errors == []
    assert person.prefilled == ["bob"]  # the provider got the hint with the device request
    assert token.claims is not None and token.claims["sub"] == "bob"


def test_without_an_account_no_login_hint(provider: Provider, tmp_path: Path) -> None:
    person = Person(provider, "alice")
    source = AuthorizationCode(issuer=provider.issuer, client_id="public",
                               open_browser=person.browser, store=FileStore(tmp_path),
                               login_timeout=TIMEOUT)
    source.get_token()
    assert person.errors == []
    assert "login_hint" not in parse_qs(urlsplit(person.urls[0]).query)
    assert person.prefilled == [""] or person.prefilled == [None]


def test_an_explicit_login_hint_in_extra_params_wins(provider: Provider, tmp_path: Path) -> None:
    person = Person(provider, "carol")
    source = AuthorizationCode(issuer=provider.issuer, client_id="public", account="work",
                               extra_params={"login_hint": "carol@example.org"},
                               open_browser=person.browser, store=FileStore(tmp_path),
                               login_timeout=TIMEOUT)
    source.get_token()
    assert parse_qs(urlsplit(person.urls[0]).query)["login_hint"] == ["carol@example.org"]


@pytest.mark.parametrize("account", ["", "  ", "a\nb", "tab\there", "esc\x1b[31m", 5])
def test_a_bad_account_is_a_config_error(account: Any) -> None:
    with pytest.raises(ConfigError, match="account="):
        DeviceCode(issuer="https://id.example.org", client_id="public", account=account)
