"""No secret in a traceback rendered with its locals, against the real provider (issue 9).

The same renderings as tests/unit/test_secrets_in_tracebacks.py — the standard library's
``TracebackException(capture_locals=True)`` and rich's ``show_locals=True``, alone and chained —
of the errors a real OpenID provider makes keyturn raise: a wrong client secret, a refused
refresh token, a private_key_jwt assertion signed with the wrong key, an id_token that fails
validation after a real refresh, and the requests and httpx integrations on a 401.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
import requests
from joserfc.jwk import ECKey

from keyturn import (
    ClientCredentials,
    DeviceCode,
    InvalidClient,
    InvalidGrant,
    InvalidIdToken,
    MemoryStore,
    RefreshToken,
    Token,
)
from tests.support.resource_server import ResourceServer
from tests.support.tracebackcheck import assert_hidden, capture


def basic(client_id: str, secret: str) -> str:
    return base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.mark.parametrize("client_id", ["basic", "post"])
def test_wrong_client_secret(fresh_stats, client_id):
    provider = fresh_stats
    real = provider.clients[client_id]
    wrong = real.client_secret[::-1]  # as long and as random as the real one
    method = "client_secret_basic" if client_id == "basic" else "client_secret_post"
    source = ClientCredentials(issuer=provider.issuer, client_id=client_id, client_secret=wrong,
                               auth_method=method, store=MemoryStore())
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidClient)
    assert provider.token_requests(client_id) == 1  # the provider itself refused it
    assert_hidden(exc, [wrong, real.client_secret, basic(client_id, wrong)])


def test_refused_refresh_token(fresh_stats):
    provider = fresh_stats
    secret = provider.clients["basic"].client_secret
    refresh = provider.mint_refresh_token("basic", scope="api:read")
    provider.fail_next(400, body={"error": "invalid_grant", "error_description": "grant revoked"})
    source = RefreshToken(issuer=provider.issuer, client_id="basic", client_secret=secret,
                          refresh_token=refresh, store=MemoryStore())
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidGrant)
    assert_hidden(exc, [refresh, secret, basic("basic", secret)])


def test_private_key_jwt_signed_with_another_key(fresh_stats):
    provider = fresh_stats
    registered = provider.clients["pk-es256"].private_key
    assert registered is not None
    other = ECKey.generate_key("P-256", parameters={"kid": registered["kid"]}, private=True)
    jwk: dict[str, Any] = dict(other.as_dict(private=True))
    source = ClientCredentials(issuer=provider.issuer, client_id="pk-es256", private_key=jwk,
                               store=MemoryStore())
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidClient)
    assert_hidden(exc, [jwk["d"], registered["d"]])


def test_id_token_refused_after_a_real_refresh(fresh_stats):
    """The provider rotates the refresh token and sends an id_token signed with an algorithm this
    source does not allow: the refresh raises after the exchange, with the old and the new
    tokens in hand."""
    provider = fresh_stats
    refresh = provider.mint_refresh_token("public", scope="openid offline_access")
    store = MemoryStore()
    source = DeviceCode(issuer=provider.issuer, client_id="public", interactive=False,
                        id_token_algorithms=("PS512",), store=store,
                        seed=Token.refresh_only(refresh))
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidIdToken) and "alg" in str(exc)
    kept = store.load(source.cache.key)  # what the provider answered was kept (issue 9, item 1)
    secrets = [refresh]
    if kept is not None:
        secrets += [t for t in (kept.refresh_token, kept.access_token, kept.id_token) if t]
    assert len(secrets) > 1, "the provider's answer was not kept: nothing new to look for"
    assert_hidden(exc, secrets)


def _refusing_api(provider: Any) -> ResourceServer:
    """A protected API that refuses every token (401): the integrations invalidate, refresh and
    retry once, then hand the 401 back."""
    api = ResourceServer(provider.introspection_endpoint, "basic",
                         provider.clients["basic"].client_secret)
    api.always_401 = True
    return api


def _requests_call(source: ClientCredentials, url: str) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.get(url, auth=source, timeout=10).raise_for_status()


def _httpx_call(source: ClientCredentials, url: str) -> None:
    with httpx.Client(auth=source, trust_env=False, timeout=10) as http:
        http.get(url).raise_for_status()


@pytest.mark.parametrize("call", [_requests_call, _httpx_call], ids=["requests", "httpx"])
def test_integration_on_a_401(fresh_stats, call):
    provider = fresh_stats
    api = _refusing_api(provider)
    secret = provider.clients["post"].client_secret
    source = ClientCredentials(issuer=provider.issuer, client_id="post", client_secret=secret,
                               auth_method="client_secret_post", store=MemoryStore())
    first = source.get_token()
    with api.running():
        exc = capture(lambda: call(source, api.url))
    assert isinstance(exc, (requests.HTTPError, httpx.HTTPStatusError))
    assert api.hits == 2  # sent, refused, refreshed, sent again, refused
    retried = source.get_token()
    assert retried.access_token != first.access_token
    # The last frames are the HTTP library's (raise_for_status): the request, its headers.
    assert_hidden(exc, [secret, first.access_token, retried.access_token],
                  frames="raise_for_status")


@pytest.mark.parametrize("call", [_requests_call, _httpx_call], ids=["requests", "httpx"])
def test_integration_on_a_401_whose_refresh_fails(fresh_stats, call):
    """The API refuses the token and the refresh the integration then makes is refused too
    (a wrong client secret): the error comes out of the integration's own frame, which held the
    refused token."""
    provider = fresh_stats
    api = _refusing_api(provider)
    store = MemoryStore()
    wrong = provider.clients["post"].client_secret[::-1]
    source = ClientCredentials(issuer=provider.issuer, client_id="post", client_secret=wrong,
                               auth_method="client_secret_post", store=store)
    cached = ClientCredentials(issuer=provider.issuer, client_id="post",
                               client_secret=provider.clients["post"].client_secret,
                               auth_method="client_secret_post", store=MemoryStore())
    refused = cached.get_token()  # a real token, put where the failing source finds it
    store.save(source.cache.key, refused)
    with api.running():
        exc = capture(lambda: call(source, api.url))
    assert isinstance(exc, InvalidClient)
    assert api.hits == 1
    assert_hidden(exc, [wrong, refused.access_token])
