"""OpenIDSource.userinfo as one flow, stepped offline: the current token, the endpoint asked with it,
and after a 401 (RFC 6750 §3.1) the token forgotten and the call made once more with a fresh one."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from keyturn import DeviceCode
from keyturn.errors import OAuthError
from keyturn.protocol.http import CurrentToken, Flow, HttpRequest, HttpResponse, Invalidate
from keyturn.token import Token

JSON = {"content-type": "application/json"}
OLD = Token(access_token="at-old", token_type="Bearer")
NEW = Token(access_token="at-new", token_type="Bearer")
_issuers = itertools.count()


def _source() -> tuple[DeviceCode, str]:
    # An issuer of its own per test: discovered metadata is cached for the whole process.
    issuer = f"https://id{next(_issuers)}.example"
    return DeviceCode(issuer=issuer, client_id="cli", store=None), issuer


def _answer(url: str, body: dict[str, Any], status: int = 200,
            headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, {**JSON, **(headers or {})}, json.dumps(body).encode(), url)


def _refused(url: str, error: str = "invalid_token", status: int = 401) -> HttpResponse:
    return _answer(url, {}, status, {"www-authenticate": f'Bearer error="{error}"'})


def _to_userinfo(flow: Flow[dict[str, Any]], source: DeviceCode, issuer: str,
                 token: Token) -> HttpRequest:
    """Step the call to its request to the userinfo endpoint, presenting ``token``."""
    ask = next(flow)
    assert isinstance(ask, CurrentToken) and ask.source is source
    discovery = flow.send(token)
    assert isinstance(discovery, HttpRequest)
    assert discovery.url == issuer + "/.well-known/openid-configuration"
    # A document that names every endpoint keyturn uses: discovery asks for no other one.
    request = flow.send(_answer(discovery.url, {
        "issuer": issuer, "token_endpoint": issuer + "/token",
        "authorization_endpoint": issuer + "/authorize",
        "device_authorization_endpoint": issuer + "/device",
        "revocation_endpoint": issuer + "/revoke", "jwks_uri": issuer + "/jwks",
        "userinfo_endpoint": issuer + "/me"}))
    assert isinstance(request, HttpRequest) and request.url == issuer + "/me"
    assert request.headers["Authorization"] == "Bearer at-old"
    return request


def _done(flow: Flow[dict[str, Any]], answer: HttpResponse) -> dict[str, Any]:
    with pytest.raises(StopIteration) as stop:
        flow.send(answer)
    claims: dict[str, Any] = stop.value.value
    return claims


def test_the_claims_for_the_current_token() -> None:
    source, issuer = _source()
    flow = source._userinfo_call_flow()
    request = _to_userinfo(flow, source, issuer, OLD)
    assert _done(flow, _answer(request.url, {"sub": "alice"})) == {"sub": "alice"}


def test_a_401_forgets_the_token_and_asks_once_more_with_a_fresh_one() -> None:
    source, issuer = _source()
    flow = source._userinfo_call_flow()
    request = _to_userinfo(flow, source, issuer, OLD)
    forget = flow.send(_refused(request.url))
    # Forgotten only if still current: the driver has the source compare (source.invalidate).
    assert isinstance(forget, Invalidate) and forget.source is source and forget.token is OLD
    ask = flow.send(None)
    assert isinstance(ask, CurrentToken) and ask.source is source
    again = flow.send(NEW)  # the metadata is known now: straight to the endpoint
    assert isinstance(again, HttpRequest) and again.url == issuer + "/me"
    assert again.headers["Authorization"] == "Bearer at-new"
    assert _done(flow, _answer(again.url, {"sub": "alice"})) == {"sub": "alice"}


def test_a_second_401_is_the_answer() -> None:
    source, issuer = _source()
    flow = source._userinfo_call_flow()
    request = _to_userinfo(flow, source, issuer, OLD)
    assert isinstance(flow.send(_refused(request.url)), Invalidate)
    flow.send(None)
    again = flow.send(NEW)
    assert isinstance(again, HttpRequest)
    with pytest.raises(OAuthError) as info:
        flow.send(_refused(again.url))
    assert info.value.status == 401 and info.value.error == "invalid_token"
    assert info.value.__context__ is None  # not raised while handling the first refusal


@pytest.mark.parametrize(("status", "error"), [(403, "insufficient_scope"), (500, "server_error")])
def test_other_refusals_are_not_retried(status: int, error: str) -> None:
    source, issuer = _source()
    flow = source._userinfo_call_flow()
    request = _to_userinfo(flow, source, issuer, OLD)
    with pytest.raises(OAuthError) as info:
        flow.send(_refused(request.url, error, status))
    assert info.value.status == status and info.value.error == error
