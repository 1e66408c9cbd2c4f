"""AuthorizationCode end to end: a real Chromium (Debian's, driven by playwright) is the browser
keyturn opens; it signs in on the real provider's dev login and consent pages, and the provider
sends it back to keyturn's loopback listener. Then the error paths, and the listener on its own."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest

from keyturn import (
    AccessDenied,
    AuthorizationCode,
    ConfigError,
    FileStore,
    InvalidResponse,
    LoginRequired,
    OAuthError,
    Token,
)
from keyturn.errors import InvalidTarget, LoginTimeout
from keyturn.interactive.loopback import LoopbackListener
from tests.support.browserfixture import (
    JOB_TIMEOUT,
    BrowserThread,
    Visit,
    chromium_thread,
    provider_sign_in,
    visit_url,
)
from tests.support.providerfixture import (
    Provider,
    complete_authorization,
    make_client,
    start_provider,
)

# Public native clients (loopback redirect with any port, PKCE required), as a CLI registers.
CLIENT = "native"  # 1 h access tokens: nothing expires while a test runs
SHORT = "native-3s"  # 3 s access tokens: the silent refresh


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    with chromium_thread() as browser:
        yield browser


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    grants = ["authorization_code", "refresh_token"]
    provider = start_provider([make_client(CLIENT, "none", grant_types=grants),
                               make_client(SHORT, "none", grant_types=grants, access_token_ttl=3)],
                              tmp_path_factory.mktemp("idp"))
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def fresh_stats(idp: Provider) -> Provider:
    """This module's provider with its token-request counters cleared."""
    idp.reset_stats()
    return idp


class Person:
    """The ``open_browser`` keyturn calls: like ``webbrowser.open`` it returns at once, and the
    browser (Chromium, on its own thread) does ``action(browser, url)`` meanwhile."""

    def __init__(self, chromium: BrowserThread,
                 action: Callable[[Any, str], Visit] | None = None, **sign_in: Any) -> None:
        self.chromium = chromium
        self.action = action or (lambda browser, url: provider_sign_in(browser, url, **sign_in))
        self.urls: list[str] = []
        self.visits: list[Future[Visit]] = []

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        self.visits.append(self.chromium.submit(lambda browser: self.action(browser, url)))
        return True

    def visit(self) -> Visit:
        assert len(self.visits) == 1, f"the browser was opened {len(self.visits)} times"
        return self.visits[0].result(JOB_TIMEOUT)


def make_source(provider: Provider, tmp_path: Path, **kwargs: Any) -> AuthorizationCode:
    args: dict[str, Any] = {"issuer": provider.issuer, "client_id": CLIENT,
                            "store": FileStore(tmp_path / "tokens"), "leeway": 1.0,
                            "login_timeout": JOB_TIMEOUT}
    args.update(kwargs)
    return AuthorizationCode(**args)


def redirect_uri_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["redirect_uri"][0]


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


# -- the happy path -------------------------------------------------------------------------------


def test_browser_login_then_silent_refresh(fresh_stats: Provider, chromium: BrowserThread,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = fresh_stats
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    person = Person(chromium)
    source = AuthorizationCode(issuer=provider.issuer, client_id=SHORT, open_browser=person,
                               leeway=1.0)  # the default store: a FileStore in $XDG_CACHE_HOME
    token = source.get_token()

    # What went to the provider: PKCE S256, a loopback redirect on an OS-assigned port, and
    # prompt=consent because offline_access was asked for.
    query = parse_qs(urlsplit(person.urls[0]).query)
    assert query["code_challenge_method"] == ["S256"] and query["prompt"] == ["consent"]
    assert query["scope"] == ["openid offline_access"]
    redirect = urlsplit(query["redirect_uri"][0])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port and redirect.port > 0

    # What keyturn got: tokens, and a validated id_token whose claims are on the Token.
    assert token.access_token and token.refresh_token and token.id_token
    assert token.claims["sub"] == "alice" and token.claims["nonce"] == query["nonce"][0]
    assert provider.token_requests(SHORT, "authorization_code") == 1

    # What the person saw: keyturn's landing page, never cached, and nothing off loopback.
    visit = person.visit()
    assert visit.url.startswith(query["redirect_uri"][0] + "?code=")
    assert visit.status == 200 and visit.headers["cache-control"] == "no-store"
    assert "Signed in as alice" in visit.text and "close this tab" in visit.text
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in visit.requested), visit.requested

    # The 3 s access token expires; the next call refreshes silently with the refresh token.
    assert token.expires_at is not None
    deadline = time.monotonic() + 30
    while time.time() < token.expires_at:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fresh = source.get_access_token()
    assert fresh != token.access_token
    assert provider.token_requests(SHORT, "refresh_token") == 1
    assert provider.token_requests(SHORT, "authorization_code") == 1
    assert source.get_token().claims["sub"] == "alice"
    assert source.userinfo()["sub"] == "alice"  # the refreshed access token works

    # Saved for every later process: a silent source finds the login, and never a browser.
    assert list((tmp_path / "cache" / "keyturn").glob("*.json"))
    later = AuthorizationCode(issuer=provider.issuer, client_id=SHORT, interactive=False,
                              leeway=1.0)
    assert later.get_token().claims["sub"] == "alice"
    assert len(person.urls) == 1


def test_async_browser_login(fresh_stats: Provider, chromium: BrowserThread, tmp_path: Path) -> None:
    person = Person(chromium, login="bob")
    source = make_source(fresh_stats, tmp_path, open_browser=person)
    token = asyncio.run(source.aget_token())
    assert token.claims["sub"] == "bob" and token.refresh_token
    assert "Signed in as bob" in person.visit().text


def test_favicon_and_other_paths_do_not_use_up_the_one_shot(
        fresh_stats: Provider, chromium: BrowserThread, tmp_path: Path) -> None:
    seen: dict[str, int | None] = {}

    def stray_requests_first(browser: Any, url: str) -> Visit:
        base = redirect_uri_of(url).rsplit("/", 1)[0]

        def before(page: Any) -> None:
            for path in ("/favicon.ico", "/", "/callback/x"):
                response = page.goto(base + path)
                seen[path] = response.status if response else None

        return provider_sign_in(browser, url, before=before)

    person = Person(chromium, stray_requests_first)
    token = make_source(fresh_stats, tmp_path, open_browser=person).get_token()
    assert token.claims["sub"] == "alice"
    assert seen == {"/favicon.ico": 404, "/": 404, "/callback/x": 404}
    assert person.visit().status == 200


def test_custom_landing_page(fresh_stats: Provider, chromium: BrowserThread, tmp_path: Path) -> None:
    person = Person(chromium)
    source = make_source(fresh_stats, tmp_path, open_browser=person,
                         landing_page="<title>ACME</title><h1>ACME: $title</h1><p>$outcome</p>")
    source.get_token()
    visit = person.visit()
    assert visit.title == "ACME" and "ACME: Signed in as alice" in visit.text and "success" in visit.text


def test_one_browser_for_two_sources_that_need_a_login_at_once(
        fresh_stats: Provider, chromium: BrowserThread, tmp_path: Path) -> None:
    # The store's lock spans the whole fetch, the interactive login included.
    person = Person(chromium)
    sources = [make_source(fresh_stats, tmp_path, open_browser=person) for _ in range(2)]
    results: list[Token] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.get_token())) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOB_TIMEOUT)
    assert len(results) == 2 and results[0].access_token == results[1].access_token
    assert len(person.urls) == 1
    assert fresh_stats.token_requests(CLIENT, "authorization_code") == 1


# -- the provider says no -----------------------------------------------------------------------


def test_access_denied_is_shown_and_raised(fresh_stats: Provider, chromium: BrowserThread,
                                           tmp_path: Path) -> None:
    person = Person(chromium, abort=True)  # "[ Cancel ]" on the provider's login page
    source = make_source(fresh_stats, tmp_path, open_browser=person)
    with pytest.raises(AccessDenied) as info:
        source.get_token()
    assert info.value.error == "access_denied"
    visit = person.visit()
    assert visit.status == 400 and visit.headers["cache-control"] == "no-store"
    assert "Sign-in failed" in visit.text and "access_denied" in visit.text
    assert fresh_stats.token_requests(CLIENT) == 0
    assert source.cache.store.load(source.cache.key) is None


@pytest.mark.parametrize(("kwargs", "cls", "code"), [
    ({"prompt": "none"}, OAuthError, "login_required"),  # no session, and no interaction allowed
    ({"resource": "https://unknown.example.net/api"}, InvalidTarget, "invalid_target"),
])
def test_refused_requests_are_typed_errors_on_the_page(
        fresh_stats: Provider, chromium: BrowserThread, tmp_path: Path, kwargs: dict[str, Any],
        cls: type[OAuthError], code: str) -> None:
    person = Person(chromium)
    with pytest.raises(cls) as info:
        make_source(fresh_stats, tmp_path, open_browser=person, **kwargs).get_token()
    assert info.value.error == code
    visit = person.visit()
    assert visit.status == 400 and code in visit.text
    assert fresh_stats.token_requests(CLIENT) == 0


# -- forged and tampered redirects ----------------------------------------------------------------


def test_wrong_state_is_refused_and_the_login_goes_on(fresh_stats: Provider, chromium: BrowserThread,
                                                      tmp_path: Path) -> None:
    forged: dict[str, Visit] = {}

    def forge_then_sign_in(browser: Any, url: str) -> Visit:
        # A page elsewhere sends the browser to the callback with its own code and state (CSRF),
        # before the person signs in.
        query = urlencode({"code": "attackers-code", "state": "forged", "iss": fresh_stats.issuer})
        forged["visit"] = visit_url(browser, f"{redirect_uri_of(url)}?{query}")
        return provider_sign_in(browser, url)

    person = Person(chromium, forge_then_sign_in)
    token = make_source(fresh_stats, tmp_path, open_browser=person).get_token()
    assert token.claims["sub"] == "alice"  # the forged redirect did not end the login
    assert forged["visit"].status == 400 and "belongs to another login" in forged["visit"].text
    assert person.visit().status == 200
    # Only the genuine code was exchanged: one request, which succeeded.
    assert fresh_stats.token_requests(CLIENT, "authorization_code") == 1


def test_listener_spends_its_shot_only_on_an_accepted_callback(listener: LoopbackListener) -> None:
    listener.accept = lambda query: "state=mine" in query
    refused = httpx.get(listener.redirect_uri + "?code=c&state=forged", timeout=30)
    assert refused.status_code == 400 and "another login" in refused.text
    answer: Future[httpx.Response] = Future()
    threading.Thread(target=lambda: answer.set_result(
        httpx.get(listener.redirect_uri + "?code=c&state=mine", timeout=30))).start()
    assert listener.wait(timeout=30) == "code=c&state=mine"
    listener.respond(200, {}, b"ok")
    assert answer.result(30).status_code == 200


@pytest.mark.parametrize("iss", [None, "http://127.0.0.1:1"])
def test_missing_or_wrong_iss_is_refused(fresh_stats: Provider, chromium: BrowserThread,
                                         tmp_path: Path, iss: str | None) -> None:
    # The provider advertises authorization_response_iss_parameter_supported (RFC 9207).
    assert fresh_stats.discovery()["authorization_response_iss_parameter_supported"] is True

    def tamper(browser: Any, url: str) -> Visit:
        real = urlsplit(complete_authorization(fresh_stats, url))  # the genuine redirect
        params = {k: v[0] for k, v in parse_qs(real.query).items()}
        assert params["iss"] == fresh_stats.issuer and params["state"] == state_of(url)
        params.pop("iss")
        if iss is not None:
            params["iss"] = iss
        return visit_url(browser, f"{redirect_uri_of(url)}?{urlencode(params)}")

    person = Person(chromium, tamper)
    with pytest.raises(InvalidResponse, match="no iss" if iss is None else "mix-up"):
        make_source(fresh_stats, tmp_path, open_browser=person).get_token()
    assert person.visit().status == 400
    assert fresh_stats.token_requests(CLIENT) == 0  # a genuine code, never exchanged


# -- time, ports, and who may log in ------------------------------------------------------------


def test_timeout_is_a_clear_error(fresh_stats: Provider, tmp_path: Path) -> None:
    opened: list[str] = []
    source = make_source(fresh_stats, tmp_path, open_browser=opened.append, login_timeout=0.2)
    with pytest.raises(LoginTimeout, match="did not come back"):
        source.get_token()
    assert len(opened) == 1
    # The listener is gone: its port no longer answers.
    with pytest.raises(httpx.ConnectError):
        httpx.get(redirect_uri_of(opened[0]), timeout=5)


def test_busy_port_is_a_clear_error(fresh_stats: Provider, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        opened: list[str] = []
        source = make_source(fresh_stats, tmp_path, open_browser=opened.append, redirect_port=port)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: the port is in use"):
            source.get_token()
    assert opened == []


def test_explicit_free_port_is_used(fresh_stats: Provider, chromium: BrowserThread,
                                    tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    person = Person(chromium)
    make_source(fresh_stats, tmp_path, open_browser=person, redirect_port=port).get_token()
    assert redirect_uri_of(person.urls[0]) == f"http://127.0.0.1:{port}/callback"


def test_silent_caller_without_a_login_gets_login_required(fresh_stats: Provider,
                                                           tmp_path: Path) -> None:
    opened: list[str] = []
    source = make_source(fresh_stats, tmp_path, open_browser=opened.append, interactive=False)
    with pytest.raises(LoginRequired, match="keyturn login"):
        source.get_access_token()
    assert opened == []


def _dead_login(source: AuthorizationCode) -> None:
    """A saved login whose access token expired and whose refresh token the provider refuses."""
    source.cache.store.save(source.cache.key, Token(
        access_token="expired", expires_at=time.time() - 60, issued_at=time.time() - 120,
        refresh_token="refused-refresh-token"))


def test_refused_refresh_token_asks_a_person_again(fresh_stats: Provider, chromium: BrowserThread,
                                                   tmp_path: Path) -> None:
    person = Person(chromium)
    source = make_source(fresh_stats, tmp_path, open_browser=person)
    _dead_login(source)
    token = source.get_token()
    assert token.refresh_token and token.refresh_token != "refused-refresh-token"
    assert len(person.urls) == 1
    assert fresh_stats.token_requests(CLIENT, "refresh_token") == 1
    assert fresh_stats.token_requests(CLIENT, "authorization_code") == 1


def test_refused_refresh_token_and_a_silent_caller(fresh_stats: Provider, tmp_path: Path) -> None:
    opened: list[str] = []
    source = make_source(fresh_stats, tmp_path, open_browser=opened.append, interactive=False)
    _dead_login(source)
    with pytest.raises(LoginRequired, match="log in again"):
        source.get_access_token()
    assert opened == []
    stored = source.cache.store.load(source.cache.key)
    assert stored is None or stored.refresh_token is None  # never sent again


# -- the loopback listener on its own -----------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[LoopbackListener]:
    with LoopbackListener() as opened:
        yield opened


def test_listener_binds_loopback_only(listener: LoopbackListener) -> None:
    assert listener._server.server_address[0] == "127.0.0.1"
    assert listener.redirect_uri == f"http://127.0.0.1:{listener.port}/callback"


def test_listener_holds_the_callback_until_the_page_is_ready(listener: LoopbackListener,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    answer: Future[httpx.Response] = Future()
    threading.Thread(target=lambda: answer.set_result(
        httpx.get(listener.redirect_uri + "?code=secret-code&state=s", timeout=30))).start()
    assert listener.wait(timeout=30) == "code=secret-code&state=s"
    assert not answer.done()
    listener.respond(200, {"Content-Type": "text/plain"}, b"done")
    response = answer.result(30)
    assert (response.status_code, response.text) == (200, "done")
    assert response.headers["cache-control"] == "no-store"
    # A second callback gets nothing.
    second = httpx.get(listener.redirect_uri + "?code=again&state=s", timeout=30)
    assert second.status_code == 404 and "already finished" in second.text
    assert "secret-code" not in capfd.readouterr().err  # no request line logged


def test_listener_refuses_other_hosts_methods_and_paths_without_spending_the_shot(
        listener: LoopbackListener) -> None:
    uri = listener.redirect_uri + "?code=c&state=s"
    # DNS rebinding: a page on another name pointed at 127.0.0.1 sends its own Host.
    assert httpx.get(uri, headers={"Host": f"evil.example:{listener.port}"}).status_code == 400
    assert httpx.post(uri).status_code == 405
    assert httpx.get(f"http://127.0.0.1:{listener.port}/favicon.ico").status_code == 404
    answer: Future[httpx.Response] = Future()
    threading.Thread(target=lambda: answer.set_result(httpx.get(uri, timeout=30))).start()
    assert listener.wait(timeout=30) == "code=c&state=s"
    listener.respond(200, {}, b"ok")
    assert answer.result(30).status_code == 200


def test_closing_answers_a_waiting_browser(listener: LoopbackListener) -> None:
    answer: Future[httpx.Response] = Future()
    threading.Thread(target=lambda: answer.set_result(
        httpx.get(listener.redirect_uri + "?state=s", timeout=30))).start()
    listener.wait(timeout=30)
    listener.close()  # the caller failed before it could render a page
    response = answer.result(30)
    assert response.status_code == 500 and "stopped waiting" in response.text


def test_listener_timeout(listener: LoopbackListener) -> None:
    with pytest.raises(LoginTimeout, match=r"within 0 s"):
        listener.wait(timeout=0.05)


def test_listener_busy_port() -> None:
    with LoopbackListener() as first, pytest.raises(ConfigError, match="in use"):
        LoopbackListener(port=first.port)


def test_url_is_printed_when_no_browser_opens(fresh_stats: Provider, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    source = make_source(fresh_stats, tmp_path, open_browser=lambda url: False, login_timeout=0.1)
    with pytest.raises(LoginTimeout):
        source.get_token()
    err = capsys.readouterr().err
    assert "open this page in a browser on this machine" in err
    assert quote("http://127.0.0.1:", safe="") in err  # the redirect_uri inside the shown URL
