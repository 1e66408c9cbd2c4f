"""AuthorizationCode's grant as one flow, stepped offline with next()/send()/throw(): no provider,
no browser. The listener is a real one on 127.0.0.1 (it is the flow's own component); the test
answers the flow's effects — it opens "the browser" by calling the launch, and answers the wait
for the redirect itself, as a browser coming back would."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from keyturn import AuthorizationCode
from keyturn.errors import InvalidGrant, LoginRequired, LoginTimeout
from keyturn.protocol.authcode import GRANT_AUTHORIZATION_CODE
from keyturn.protocol.grants import GRANT_REFRESH_TOKEN
from keyturn.protocol.http import Blocking, Flow, HttpRequest, HttpResponse, Received
from keyturn.secret import Secret
from keyturn.sources.oidc import RefreshRefused
from keyturn.token import Token

AUTHORIZE = "https://as.example/authorize"
TOKEN = "https://as.example/token"
JSON = {"content-type": "application/json"}
TOKENS = {"access_token": "at-new", "token_type": "Bearer", "expires_in": 300,
          "refresh_token": "rt-new", "scope": "openid offline_access"}
SAVED = Token(access_token="at-old", expires_at=0.0, refresh_token="rt-old")


def _answer(request: HttpRequest, body: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(status, JSON, json.dumps(body).encode(), request.url)


def _source(**kwargs: Any) -> tuple[AuthorizationCode, list[str]]:
    opened: list[str] = []

    def open_browser(url: str) -> bool:
        opened.append(url)
        return True

    options: dict[str, Any] = {"open_browser": open_browser, **kwargs}
    source = AuthorizationCode(token_endpoint=TOKEN, authorization_endpoint=AUTHORIZE,
                               client_id="cli", store=None, **options)
    return source, opened


def _form(step: object) -> dict[str, str]:
    assert isinstance(step, HttpRequest)
    return dict(step.form_items())


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _to_the_redirect(flow: Flow[Token], opened: list[str]) -> tuple[Blocking, dict[str, str]]:
    """Step a login to its wait for the browser: that effect and the authorization URL's query."""
    launch = next(flow)
    assert isinstance(launch, Blocking) and launch.what == "open the browser"
    assert not opened  # nothing opens until the driver carries the launch out
    assert launch.call() is None
    (url,) = opened
    assert url.startswith(AUTHORIZE + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    wait = flow.send(None)
    assert isinstance(wait, Blocking) and "browser to come back" in wait.what
    assert _listening(urlsplit(query["redirect_uri"]).port or 0)
    return wait, query


def _close(flow: Flow[Token], step: object, port: int) -> object:
    """Carry out the flow's closing of its listener, and send the flow on."""
    assert isinstance(step, Blocking) and "close" in step.what
    assert _listening(port)
    step.call()
    assert not _listening(port)
    return flow.send(None)


def test_a_saved_login_is_refreshed_without_a_browser() -> None:
    source, opened = _source()
    flow = source._flow(SAVED)
    request = next(flow)
    assert _form(request) == {"grant_type": GRANT_REFRESH_TOKEN, "refresh_token": "rt-old",
                              "client_id": "cli"}
    kept = flow.send(_answer(request, TOKENS))
    assert isinstance(kept, Received) and kept.refresh is True
    with pytest.raises(StopIteration) as stop:
        flow.send(None)
    assert stop.value.value.access_token == "at-new" and not opened


def test_a_login_opens_the_browser_exchanges_the_code_and_closes_the_listener() -> None:
    source, opened = _source()
    flow = source._flow(None)
    _, query = _to_the_redirect(flow, opened)
    assert query["code_challenge_method"] == "S256" and query["client_id"] == "cli"
    port = urlsplit(query["redirect_uri"]).port or 0
    # The browser comes back: the answer to the wait is the redirect's query, as a Secret.
    exchange = flow.send(Secret(urlencode({"code": "the-code", "state": query["state"]})))
    form = _form(exchange)
    assert form["grant_type"] == GRANT_AUTHORIZATION_CODE and form["code"] == "the-code"
    assert form["redirect_uri"] == query["redirect_uri"] and form["code_verifier"]
    assert isinstance(exchange, HttpRequest) and exchange.idempotent is False  # a code is used once
    kept = flow.send(_answer(exchange, TOKENS))
    assert isinstance(kept, Received) and kept.refresh is False
    with pytest.raises(StopIteration) as stop:
        _close(flow, flow.send(None), port)
    assert stop.value.value.refresh_token == "rt-new"


def test_a_refused_code_closes_the_listener_and_raises() -> None:
    source, opened = _source()
    flow = source._flow(None)
    _, query = _to_the_redirect(flow, opened)
    port = urlsplit(query["redirect_uri"]).port or 0
    exchange = flow.send(Secret(urlencode({"code": "used-code", "state": query["state"]})))
    closing = flow.send(_answer(exchange, {"error": "invalid_grant"}, 400))
    with pytest.raises(InvalidGrant):
        _close(flow, closing, port)


def test_a_login_that_times_out_closes_the_listener() -> None:
    """The wait's failure (the driver's LoginTimeout) is thrown into the flow, which cleans up."""
    source, opened = _source(login_timeout=1)
    flow = source._flow(None)
    _, query = _to_the_redirect(flow, opened)
    port = urlsplit(query["redirect_uri"]).port or 0
    closing = flow.throw(LoginTimeout("the browser did not come back"))
    with pytest.raises(LoginTimeout):
        _close(flow, closing, port)


def test_a_dropped_flow_closes_its_listener() -> None:
    source, opened = _source()
    flow = source._flow(None)
    _, query = _to_the_redirect(flow, opened)
    flow.close()
    assert not _listening(urlsplit(query["redirect_uri"]).port or 0)


def test_a_refused_refresh_starts_a_browser_login_for_an_interactive_caller() -> None:
    source, opened = _source()
    flow = source._flow(SAVED)
    refresh = next(flow)
    launch = flow.send(_answer(refresh, {"error": "invalid_grant"}, 400))
    assert isinstance(launch, Blocking) and launch.what == "open the browser"
    flow.close()
    assert not opened


def test_a_refused_refresh_is_refresh_refused_for_a_silent_caller() -> None:
    source, opened = _source(interactive=False)
    flow = source._flow(SAVED)
    refresh = next(flow)
    with pytest.raises(RefreshRefused) as info:
        flow.send(_answer(refresh, {"error": "invalid_grant"}, 400))
    assert isinstance(info.value, LoginRequired) and info.value.error == "invalid_grant"
    assert not opened


def test_no_saved_login_and_a_silent_caller_is_login_required_before_any_request() -> None:
    source, opened = _source(interactive=False)
    with pytest.raises(LoginRequired, match="not interactive"):
        next(source._flow(None))
    assert not opened
