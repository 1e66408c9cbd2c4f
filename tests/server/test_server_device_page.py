"""The verification page /device over HTTP with one cookie jar, as a browser drives it."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.protocol.grants import GRANT_DEVICE_CODE
from keyturn.server.config import ClientConfig, RateLimits
from keyturn.server.device_flow import LETTERS, new_device_grant
from keyturn.server.pages import DevicePages, SignInOption
from keyturn.server.passwords import LocalUsers, User
from keyturn.server.runner import ServerThread
from keyturn.server.service import AuthorizationServer
from keyturn.server.storage.sqlite import SQLiteStorage
from keyturn.server.tokens import load_signer
from tests.support.serverkit import ALICE_PASSWORD, make_config, page_approve, poll, start_device


def test_every_page_is_unframeable_and_not_stored(server):
    page = httpx.get(f"{server.issuer}/device")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_approve_with_a_sloppily_typed_code(server):
    started = start_device(server.issuer, scope="openid profile")
    sloppy = started["user_code"].replace("-", " ").lower()
    result = page_approve(server.issuer, sloppy)
    assert result.status_code == 200 and "Device approved" in result.text
    assert result.headers["x-frame-options"] == "DENY"
    assert poll(server.issuer, started["device_code"]).status_code == 200


def test_consent_page_shows_client_name_and_scopes(server):
    started = start_device(server.issuer, scope="openid email")
    with httpx.Client() as browser:
        page = browser.get(f"{server.issuer}/device", params={"user_code": started["user_code"]})
        assert started["user_code"] in page.text  # verification_uri_complete pre-fills the code
        csrf = re.search(r'name=csrf value="([^"]+)"', page.text).group(1)
        consent = browser.post(f"{server.issuer}/device", data={
            "csrf": csrf, "user_code": started["user_code"], "username": "alice",
            "password": ALICE_PASSWORD})
    assert "Demo CLI" in consent.text and "Your email address" in consent.text
    assert "Approve" in consent.text and "Deny" in consent.text


def test_deny(server):
    started = start_device(server.issuer, scope="openid")
    result = page_approve(server.issuer, started["user_code"], decision="deny")
    assert "Request denied" in result.text
    assert poll(server.issuer, started["device_code"]).json()["error"] == "access_denied"
    # and it cannot be approved afterwards
    again = page_approve(server.issuer, started["user_code"])
    assert again.status_code == 400


def test_the_site_is_named_by_the_issuer_host_by_default(server: ServerThread) -> None:
    # no site_name in the configuration: the host the address bar shows, not the issuer URL
    page = httpx.get(f"{server.issuer}/device").text
    assert "<title>Sign in to a device · 127.0.0.1</title>" in page
    assert "<p class=site>127.0.0.1</p>" in page


def test_a_wrong_code_keeps_the_user_name_not_the_password(server: ServerThread) -> None:
    refused = page_approve(server.issuer, "BBBB-BBBB", username="alice")
    assert refused.status_code == 400 and "not valid" in refused.text
    assert 'id=username name=username value="alice"' in refused.text
    assert ALICE_PASSWORD not in refused.text


def _consent(issuer: str, user_code: str) -> str:
    """The approval page alice gets for ``user_code`` (nothing decided)."""
    with httpx.Client() as browser:
        page = browser.get(f"{issuer}/device", params={"user_code": user_code})
        csrf = re.search(r'name=csrf value="([^"]+)"', page.text)
        assert csrf, page.text
        consent = browser.post(f"{issuer}/device", data={
            "csrf": csrf.group(1), "user_code": user_code, "username": "alice",
            "password": ALICE_PASSWORD})
    assert consent.status_code == 200, consent.text
    return consent.text


_STAYS = "<li>Stay signed in on that device until it goes unused for 30 days</li>"


def test_the_page_says_the_device_stays_signed_in_when_a_refresh_token_is_issued(
        server: ServerThread) -> None:
    """A client allowed the refresh grant gets a refresh token without offline_access too
    (ClientConfig.issues_refresh_tokens): the page says so, with lifetimes.refresh_token."""
    started = start_device(server.issuer, scope="openid")
    consent = _consent(server.issuer, started["user_code"])
    assert _STAYS in consent and consent.count("<li>") == 2  # and "Confirm who you are"
    assert page_approve(server.issuer, started["user_code"]).status_code == 200
    assert "refresh_token" in poll(server.issuer, started["device_code"]).json()


def test_no_stay_signed_in_line_when_no_refresh_token_is_issued(tmp_path: Path) -> None:
    """A client without the refresh grant asking for offline_access gets no refresh token: the
    page neither lists offline_access nor promises to stay signed in."""
    base = make_config()
    once = ClientConfig("once", "One-off tool", (GRANT_DEVICE_CODE,), ("openid", "offline_access"))
    with ServerThread(make_config(clients={**base.clients, "once": once}),
                      data_dir=tmp_path) as running:
        started = start_device(running.issuer, client_id="once", scope="openid offline_access")
        consent = _consent(running.issuer, started["user_code"])
        assert "Stay signed in" not in consent and "offline_access" not in consent
        assert "<li>Confirm who you are</li>" in consent
        assert page_approve(running.issuer, started["user_code"]).status_code == 200
        answer = poll(running.issuer, started["device_code"], client_id="once").json()
    assert "access_token" in answer and "refresh_token" not in answer


def test_wrong_password_and_wrong_code(server):
    started = start_device(server.issuer, scope="openid")
    wrong_password = page_approve(server.issuer, started["user_code"], password="nope")
    assert wrong_password.status_code == 401 and "Wrong user name or password" in wrong_password.text
    unknown_user = page_approve(server.issuer, started["user_code"], username="mallory")
    assert unknown_user.status_code == 401
    wrong_code = page_approve(server.issuer, "BBBB-BBBB")
    assert wrong_code.status_code == 400 and "not valid" in wrong_code.text
    assert poll(server.issuer, started["device_code"]).json()["error"] == "authorization_pending"


def test_forms_without_the_csrf_cookie_are_refused(server):
    started = start_device(server.issuer, scope="openid")
    with httpx.Client() as browser:
        page = browser.get(f"{server.issuer}/device")
        csrf = re.search(r'name=csrf value="([^"]+)"', page.text).group(1)
    # another browser (no cookie) posting the form, as a cross-site request would
    forged = httpx.post(f"{server.issuer}/device", data={
        "csrf": csrf, "user_code": started["user_code"], "username": "alice",
        "password": ALICE_PASSWORD})
    assert forged.status_code == 403
    decision = httpx.post(f"{server.issuer}/device/decision",
                          data={"csrf": csrf, "ticket": "x.y", "decision": "approve"})
    assert decision.status_code == 403


def test_a_ticket_is_bound_to_its_browser(server):
    started = start_device(server.issuer, scope="openid")
    with httpx.Client() as browser:
        page = browser.get(f"{server.issuer}/device")
        csrf = re.search(r'name=csrf value="([^"]+)"', page.text).group(1)
        consent = browser.post(f"{server.issuer}/device", data={
            "csrf": csrf, "user_code": started["user_code"], "username": "alice",
            "password": ALICE_PASSWORD})
        ticket = re.search(r'name=ticket value="([^"]+)"', consent.text).group(1)
    with httpx.Client() as other:
        page = other.get(f"{server.issuer}/device")
        other_csrf = re.search(r'name=csrf value="([^"]+)"', page.text).group(1)
        stolen = other.post(f"{server.issuer}/device/decision",
                            data={"csrf": other_csrf, "ticket": ticket, "decision": "approve"})
        tampered = other.post(f"{server.issuer}/device/decision",
                              data={"csrf": other_csrf, "ticket": ticket[:-2] + "AA",
                                    "decision": "approve"})
    assert stolen.status_code == 400 and tampered.status_code == 400
    assert poll(server.issuer, started["device_code"]).json()["error"] == "authorization_pending"


@pytest.mark.parametrize("scope", ["per_address", "overall"])
def test_wrong_codes_are_rate_limited(tmp_path, scope):
    limits = RateLimits(window=3600, per_address=3 if scope == "per_address" else 100,
                        overall=3 if scope == "overall" else 100)
    with ServerThread(make_config(rate_limits=limits), data_dir=tmp_path) as running:
        started = start_device(running.issuer, scope="openid")
        statuses = [page_approve(running.issuer, "BBBB-BBBB").status_code for _ in range(3)]
        assert statuses == [400, 400, 400]
        # past the limit even the right code is not looked up: guessing stops
        limited = page_approve(running.issuer, started["user_code"])
        assert limited.status_code == 429 and "Too many wrong codes" in limited.text
        assert poll(running.issuer, started["device_code"]).json()["error"] == \
            "authorization_pending"


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_for_counts_only_from_a_configured_proxy(tmp_path, trusted):
    """Behind a proxy named in forwarded_allow_ips, wrong codes count per X-Forwarded-For client;
    otherwise the header is ignored and every request is the proxy's."""
    limits = RateLimits(window=3600, per_address=2, overall=100)
    with ServerThread(make_config(rate_limits=limits), data_dir=tmp_path,
                      forwarded_allow_ips="127.0.0.1" if trusted else None) as running:
        started = start_device(running.issuer, scope="openid")
        with httpx.Client(headers={"X-Forwarded-For": "203.0.113.7"}) as attacker:
            for _ in range(2):
                assert page_approve(running.issuer, "BBBB-BBBB", client=attacker).status_code == 400
        with httpx.Client(headers={"X-Forwarded-For": "198.51.100.1"}) as person:
            result = page_approve(running.issuer, started["user_code"], client=person)
        assert result.status_code == (200 if trusted else 429)


class _SlowLookups(SQLiteStorage):
    """Every look-up of a typed code takes a while, so that requests sent at once are all between
    the rate-limit check and the counting of their wrong code together."""

    def __init__(self, path):
        super().__init__(path)
        self.lookups = 0
        self._count = threading.Lock()

    def device_grant_by_user_code(self, user_code):
        with self._count:
            self.lookups += 1
        time.sleep(0.3)
        return super().device_grant_by_user_code(user_code)


@pytest.mark.parametrize("scope", ["per_address", "overall"])
def test_wrong_codes_sent_at_once_cannot_overrun_the_limit(tmp_path, scope):
    limits = RateLimits(window=3600, per_address=3 if scope == "per_address" else 100,
                        overall=3 if scope == "overall" else 100)
    storage = _SlowLookups(tmp_path / "db.sqlite3")
    issuer = "http://127.0.0.1:1"
    server = AuthorizationServer(make_config(rate_limits=limits), storage,
                                 load_signer(storage, issuer), issuer)
    now = time.time()
    address = (lambda i: "192.0.2.1") if scope == "per_address" else (lambda i: f"192.0.2.{i}")
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda i: server.lookup_user_code("BBBB-BBBB", address(i), now),
                                    range(12)))
        assert storage.lookups == 3
        assert sum(result.limited for result in results) == 9
        if scope == "per_address":
            # another address still gets in, and a right code with the right password gives its
            # try back
            grant = new_device_grant(client_id="demo", scope=("openid",), now=now,
                                     user_codes=LETTERS)[1]
            assert storage.create_device_grant(grant)
            everyone = storage.hit("wrong:*", limits.window, now, 0)
            assert server.lookup_user_code(grant.user_code, "198.51.100.1", now).grant is not None
            server.signed_in("198.51.100.1", now)
            assert storage.hit("wrong:*", limits.window, now, 0) == everyone
            assert storage.hit("wrong:198.51.100.1", limits.window, now, 0) == 0
    finally:
        storage.close()


def _pages(tmp_path: Path, **options: Any) -> tuple[SQLiteStorage, DevicePages]:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    issuer = "http://127.0.0.1:1"
    config = make_config()
    server = AuthorizationServer(config, storage, load_signer(storage, issuer), issuer)
    return storage, DevicePages(server, LocalUsers(config.users), "", **options)


def test_sign_in_options_are_buttons_posting_the_code_to_their_route(tmp_path: Path) -> None:
    """The hook of issue 12 §1: one button per upstream, each posting the form (csrf, user_code)
    to its own path; the password fields only when local users exist."""
    corp = SignInOption(name="corp", display_name="Corp <SSO>", action="/device/upstream/corp")
    storage, pages = _pages(tmp_path, sign_in_options=[corp], local_passwords=False)
    try:
        html = bytes(pages.code_form("csrf-value", user_code="BCDF-GHJK").body).decode()
        assert 'formaction="/device/upstream/corp"' in html and 'value="corp"' in html
        assert "Sign in with Corp &lt;SSO&gt;" in html
        assert 'name=password' not in html and 'name=username' not in html
        assert 'name=csrf value="csrf-value"' in html and 'value="BCDF-GHJK"' in html
    finally:
        storage.close()
    storage, pages = _pages(tmp_path, sign_in_options=[corp])
    try:
        html = bytes(pages.code_form("csrf-value").body).decode()
        # the local Continue comes first: Enter in a field signs in with the password
        assert html.index("name=password") < html.index(">Continue<") < html.index("formaction=")
    finally:
        storage.close()


def test_the_question_names_the_user_name_not_an_opaque_subject(tmp_path: Path) -> None:
    """After an upstream sign-in with subject_claim = "oid", the subject is an id nobody knows:
    the question shows preferred_username and the name (escaped), not the subject."""
    storage, pages = _pages(tmp_path)
    try:
        now = time.time()
        _, grant = new_device_grant(client_id="demo", scope=("openid",), now=now,
                                    user_codes=LETTERS)
        user = User(subject="3f2a9c4e-0b1d-4c7e-9a55-opaque",
                    claims={"preferred_username": "jane", "name": "Jane <Doe>"})
        html = bytes(pages.consent(csrf="c", grant=grant, user=user, now=now).body).decode()
        question = re.search(r"<p>Allow .*?</p>", html)
        assert question and question.group(0) == (
            "<p>Allow <b>Demo CLI</b> to sign in to <b>127.0.0.1</b> as <b>jane</b> "
            "(Jane &lt;Doe&gt;)?</p>")
    finally:
        storage.close()


def test_a_page_with_no_way_to_sign_in_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="configure local users or an upstream"):
        _pages(tmp_path, local_passwords=False)
