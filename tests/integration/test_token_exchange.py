"""TokenExchange against the test provider's (test-only) RFC 8693 grant: the subject token is a
real access token the provider issued (through the test-only jwt-bearer grant)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from keyturn import JwtBearer, TokenExchange
from keyturn.errors import InvalidGrant
from keyturn.protocol.grants import GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE
from tests.support.providerfixture import Provider, make_client, start_provider

JWT_CLIENT = "jwt-svc"
EXCHANGER = "exchanger"


@pytest.fixture(scope="module")
def trusted_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True)


@pytest.fixture(scope="module")
def grants_provider(tmp_path_factory: pytest.TempPathFactory,
                    trusted_key: ECKey) -> Iterator[Provider]:
    clients = [
        make_client(JWT_CLIENT, grant_types=[GRANT_JWT_BEARER]),
        make_client(EXCHANGER, grant_types=[GRANT_TOKEN_EXCHANGE]),
    ]
    public = trusted_key.as_dict(private=False)
    p = start_provider(clients, Path(tmp_path_factory.mktemp("grants")),
                       jwt_bearer_keys={"svc-signer": public})
    try:
        yield p
    finally:
        p.stop()


def _source(p: Provider, key: Any, **kwargs: Any) -> JwtBearer:
    info = p.clients[JWT_CLIENT]
    args: dict[str, Any] = {
        "issuer": p.issuer, "client_id": JWT_CLIENT, "client_secret": info.client_secret,
        "allow_insecure_http": True,
        "assertion_key": None if key is None else key.as_dict(private=True),
        "assertion_issuer": "svc-signer", "subject": "alice", "scope": "openid",
    }
    args.update(kwargs)
    return JwtBearer(**args)


def test_token_exchange_of_a_real_token(grants_provider: Provider, trusted_key: ECKey) -> None:
    grants_provider.reset_stats()
    upstream = _source(grants_provider, trusted_key, subject="dave")
    info = grants_provider.clients[EXCHANGER]
    exchange = TokenExchange(issuer=grants_provider.issuer, client_id=EXCHANGER,
                             client_secret=info.client_secret, allow_insecure_http=True,
                             subject_token=upstream, scope="openid")
    token = exchange.get_token()
    assert token.extra["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert token.access_token != upstream.get_access_token()
    assert exchange.get_access_token() == token.access_token
    assert asyncio.run(exchange.aget_access_token()) == token.access_token
    assert grants_provider.token_requests(EXCHANGER, GRANT_TOKEN_EXCHANGE) == 1
    assert grants_provider.token_requests(JWT_CLIENT, GRANT_JWT_BEARER) == 1


def test_token_exchange_async_path(grants_provider: Provider, trusted_key: ECKey) -> None:
    upstream = _source(grants_provider, trusted_key, subject="erin")
    info = grants_provider.clients[EXCHANGER]
    exchange = TokenExchange(issuer=grants_provider.issuer, client_id=EXCHANGER,
                             client_secret=info.client_secret, allow_insecure_http=True,
                             subject_token=upstream, store=None)
    token = asyncio.run(exchange.aget_token())
    assert token.extra["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"


def test_token_exchange_bogus_subject_is_invalid_grant(grants_provider: Provider) -> None:
    info = grants_provider.clients[EXCHANGER]
    exchange = TokenExchange(issuer=grants_provider.issuer, client_id=EXCHANGER,
                             client_secret=info.client_secret, allow_insecure_http=True,
                             subject_token="not-a-token-the-provider-issued", store=None)
    with pytest.raises(InvalidGrant) as caught:
        exchange.get_access_token()
    assert "not-a-token" not in str(caught.value)
