"""JwtBearer against the test provider's (test-only) RFC 7523 grant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from keyturn import JwtBearer
from keyturn.errors import InvalidGrant
from keyturn.protocol.grants import GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE
from tests.support.mode import Mode
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


def test_jwt_bearer_gets_a_token_once(grants_provider: Provider, trusted_key: ECKey, mode: Mode) -> None:
    grants_provider.reset_stats()
    source = _source(grants_provider, trusted_key)
    first = mode.access_token(source)
    assert mode.access_token(source) == first
    assert grants_provider.token_requests(JWT_CLIENT, GRANT_JWT_BEARER) == 1
    assert first not in repr(source)


def test_jwt_bearer_single_flight_async(grants_provider: Provider, trusted_key: ECKey) -> None:
    grants_provider.reset_stats()
    source = _source(grants_provider, trusted_key, subject="bob")

    async def both() -> list[str]:
        return list(await asyncio.gather(source.aget_access_token(), source.aget_access_token()))

    a, b = asyncio.run(both())
    assert a == b
    assert grants_provider.token_requests(JWT_CLIENT, GRANT_JWT_BEARER) == 1


def test_jwt_bearer_untrusted_key_is_invalid_grant(grants_provider: Provider, mode: Mode) -> None:
    stranger = ECKey.generate_key("P-256", private=True)
    source = _source(grants_provider, stranger)
    with pytest.raises(InvalidGrant) as caught:
        mode.access_token(source)
    assert "invalid assertion" in str(caught.value)


def test_jwt_bearer_replayed_assertion_is_refused(grants_provider: Provider,
                                                  trusted_key: ECKey) -> None:
    from keyturn.protocol.jwt import build_assertion, load_signing_key

    assertion = build_assertion(load_signing_key(trusted_key.as_dict(private=True)),
                                issuer="svc-signer", subject="carol",
                                audience=f"{grants_provider.issuer}/token", now=time.time())
    first = _source(grants_provider, None, assertion_key=None, assertion_issuer=None,
                    subject=None, assertion=assertion, store=None)
    first.get_access_token()
    again = _source(grants_provider, None, assertion_key=None, assertion_issuer=None,
                    subject=None, assertion=assertion, store=None)
    with pytest.raises(InvalidGrant) as caught:
        again.get_access_token()
    assert assertion not in str(caught.value) and assertion not in repr(caught.value)
