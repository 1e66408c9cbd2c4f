"""JwtBearer and TokenExchange: the requests they build, stepped offline (no I/O)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from keyturn import JwtBearer, StaticToken, TokenExchange, transport
from keyturn.errors import ConfigError, InvalidGrant
from keyturn.protocol.grants import GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE
from keyturn.protocol.http import HttpRequest, HttpResponse, Received, TokenOf, token_of
from keyturn.secret import Secret
from keyturn.token import Token

ENDPOINT = "https://as.example/oauth2/token"
JSON = {"content-type": "application/json"}


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _step(flow: Any, body: dict[str, Any], status: int = 200) -> tuple[HttpRequest, Any]:
    """Run the flow to its one request, answer it, return the request and the result or error."""
    request = next(flow)
    assert isinstance(request, HttpRequest)
    try:
        step = flow.send(HttpResponse(status, JSON, json.dumps(body).encode(), request.url))
        if isinstance(step, Received):  # a non-idempotent grant hands its answer to be kept
            flow.send(None)
    except StopIteration as stop:
        return request, stop.value
    except Exception as exc:  # the typed error the flow raised
        return request, exc
    raise AssertionError("the flow made a second request")


OK = {"access_token": "AT-secret", "token_type": "Bearer", "expires_in": 300}


# -- JwtBearer -------------------------------------------------------------------------------------


def test_jwt_bearer_signs_an_rfc7523_assertion() -> None:
    pem = _pem()
    source = JwtBearer(token_endpoint=ENDPOINT, client_id="svc", auth_method="none",
                       assertion_key=pem, assertion_issuer="svc-iss", subject="user-42",
                       scope="api", store=None)
    request, token = _step(source._flow(None), OK)
    form = dict(request.form_items())
    assert form["grant_type"] == GRANT_JWT_BEARER
    assert form["scope"] == "api"
    assert request.idempotent is False
    claims = jwt.decode(form["assertion"], ECKey.import_key(pem)).claims
    assert claims["iss"] == "svc-iss" and claims["sub"] == "user-42"
    assert claims["aud"] == ENDPOINT  # RFC 7523 §3: the token endpoint by default
    assert claims["exp"] > claims["iat"] and claims["jti"]
    assert isinstance(token, Token) and token.access_token == "AT-secret"
    # Each request signs a new assertion (a fresh jti).
    again = dict(next(source._flow(None)).form_items())["assertion"]
    assert jwt.decode(again, ECKey.import_key(pem)).claims["jti"] != claims["jti"]


def test_jwt_bearer_given_assertion_and_callable() -> None:
    fixed = JwtBearer(token_endpoint=ENDPOINT, client_id="c", auth_method="none",
                      assertion="a.b.c", store=None)
    assert dict(next(fixed._flow(None)).form_items())["assertion"] == "a.b.c"
    made = iter(["x.1.y", "x.2.y"])
    fresh = JwtBearer(token_endpoint=ENDPOINT, client_id="c", auth_method="none",
                      assertion=lambda: next(made), store=None)
    assert dict(next(fresh._flow(None)).form_items())["assertion"] == "x.1.y"
    assert dict(next(fresh._flow(None)).form_items())["assertion"] == "x.2.y"


def test_jwt_bearer_audience_override_and_client_auth() -> None:
    pem = _pem()
    source = JwtBearer(token_endpoint=ENDPOINT, client_id="c", client_secret="s3cret",
                       assertion_key=pem, assertion_issuer="i", subject="s",
                       assertion_audience="https://as.example", store=None)
    request = next(source._flow(None))
    form = dict(request.form_items())
    assert jwt.decode(form["assertion"], ECKey.import_key(pem)).claims["aud"] == "https://as.example"
    assert "authorization" in {k.lower() for k in request.headers}  # client_secret_basic


def test_jwt_bearer_cache_key_includes_subject() -> None:
    pem = _pem()
    a = JwtBearer(token_endpoint=ENDPOINT, client_id="c", auth_method="none", assertion_key=pem,
                  assertion_issuer="i", subject="alice", store=None)
    b = JwtBearer(token_endpoint=ENDPOINT, client_id="c", auth_method="none", assertion_key=pem,
                  assertion_issuer="i", subject="bob", store=None)
    assert a.cache.key != b.cache.key
    assert pem not in repr(a) and "PRIVATE" not in repr(a)


def test_jwt_bearer_error_is_typed_and_secret_free() -> None:
    source = JwtBearer(token_endpoint=ENDPOINT, client_id="c", auth_method="none",
                       assertion="hdr.secret-assertion.sig", store=None)
    _, error = _step(source._flow(None), {"error": "invalid_grant",
                                          "error_description": "bad assertion"}, status=400)
    assert isinstance(error, InvalidGrant)
    assert "secret-assertion" not in str(error) and "secret-assertion" not in repr(error)
    assert "secret-assertion" not in repr(source)


@pytest.mark.parametrize("kwargs", [
    {},
    {"assertion": "a.b.c", "assertion_key": "k"},
    {"assertion_key": "pem-without-issuer"},
])
def test_jwt_bearer_config_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        JwtBearer(token_endpoint=ENDPOINT, client_id="c", auth_method="none", **kwargs)


# -- TokenExchange ---------------------------------------------------------------------------------


def test_token_exchange_builds_rfc8693_request() -> None:
    source = TokenExchange(token_endpoint=ENDPOINT, client_id="gw", client_secret="s",
                           subject_token="subject-secret", actor_token="actor-secret",
                           actor_token_type="urn:ietf:params:oauth:token-type:jwt",
                           requested_token_type="urn:ietf:params:oauth:token-type:access_token",
                           audience="orders", resource="https://orders.example/api",
                           scope="read write", store=None)
    request, token = _step(source._exchange_flow("subject-secret", "actor-secret"),
                           {**OK, "issued_token_type":
                            "urn:ietf:params:oauth:token-type:access_token"})
    form = dict(request.form_items())
    assert form == {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "subject_token": "subject-secret",
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "actor_token": "actor-secret",
        "actor_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "audience": "orders",
        "resource": "https://orders.example/api",
        "scope": "read write",
    }
    assert token.extra["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"


def test_token_exchange_cache_key_fingerprints_the_subject() -> None:
    a = TokenExchange(token_endpoint=ENDPOINT, client_id="gw", auth_method="none",
                      subject_token="subject-one", store=None)
    b = TokenExchange(token_endpoint=ENDPOINT, client_id="gw", auth_method="none",
                      subject_token="subject-two", store=None)
    assert a.cache.key != b.cache.key
    assert "subject-one" not in a.cache.key and "subject-one" not in repr(a)


def test_token_exchange_source_subject_is_looked_up_sync_and_async() -> None:
    upstream = StaticToken("upstream-token")
    source = TokenExchange(token_endpoint=ENDPOINT, client_id="gw", auth_method="none",
                           subject_token=upstream, store=None)
    # The flow asks for the upstream source's current token as an effect ...
    flow = source._flow(None)
    effect = next(flow)
    assert isinstance(effect, TokenOf) and effect.source is upstream
    # ... answered as a Secret: the exchange's frames hold the subject token only as a tag.
    request = flow.send(Secret("upstream-token"))
    assert isinstance(request, HttpRequest)
    assert dict(request.form_items())["subject_token"] == "upstream-token"
    # Both drivers look it up into a Secret (no request is made: the client stays unused).
    with httpx.Client() as client:
        assert transport.run(token_of(upstream), client) == Secret("upstream-token")

    async def lookup() -> Secret[str]:
        async with httpx.AsyncClient() as client:
            return await transport.arun(token_of(upstream), client)

    assert asyncio.run(lookup()) == Secret("upstream-token")
    assert "upstream-token" not in source.cache.key


def test_token_exchange_actor_needs_type() -> None:
    with pytest.raises(ConfigError):
        TokenExchange(token_endpoint=ENDPOINT, client_id="gw", auth_method="none",
                      subject_token="s", actor_token="a")
