"""Source._revoke_flow stepped offline: the client assertion's audience is the token endpoint in a
fresh process too, when revocation_endpoint= spares the discovery of the revocation endpoint."""

from __future__ import annotations

import itertools
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt

from keyturn import ClientCredentials
from keyturn.protocol.http import HttpRequest, HttpResponse
from keyturn.token import Token

_issuers = itertools.count()
KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()).decode()


def _assertion_audience(request: HttpRequest) -> object:
    [assertion] = [value for name, value in request.form_items() if name == "client_assertion"]
    claims = jwt.decode(assertion, _public_key()).claims
    return claims["aud"]


def _public_key() -> object:
    from joserfc.jwk import ECKey

    return ECKey.import_key(KEY)


def test_the_assertion_audience_is_the_discovered_token_endpoint_in_a_fresh_process() -> None:
    issuer = f"https://rv{next(_issuers)}.example"
    source = ClientCredentials(issuer=issuer, client_id="svc", private_key=KEY,
                               revocation_endpoint=issuer + "/revoke", store=None)
    flow = source._revoke_flow(Token(access_token="at", token_type="Bearer"))
    discovery = next(flow)
    # The revocation endpoint is given, but the assertion names the token endpoint: discovered.
    assert isinstance(discovery, HttpRequest)
    assert discovery.url == issuer + "/.well-known/openid-configuration"
    revoke = flow.send(HttpResponse(200, {"content-type": "application/json"}, json.dumps({
        "issuer": issuer, "token_endpoint": issuer + "/token", "jwks_uri": issuer + "/jwks",
        "authorization_endpoint": issuer + "/authorize",
        "device_authorization_endpoint": issuer + "/device",
        "revocation_endpoint": issuer + "/elsewhere", "userinfo_endpoint": issuer + "/me",
    }).encode(), discovery.url))
    assert isinstance(revoke, HttpRequest) and revoke.url == issuer + "/revoke"
    assert _assertion_audience(revoke) == issuer + "/token"


def test_without_a_token_endpoint_the_audience_is_the_revocation_endpoint() -> None:
    endpoint = "https://rv.example/revoke"
    source = ClientCredentials(token_endpoint="https://rv.example/token", client_id="svc",
                               private_key=KEY, revocation_endpoint=endpoint, store=None)
    revoke = next(source._revoke_flow(Token(access_token="at", token_type="Bearer")))
    assert isinstance(revoke, HttpRequest) and revoke.url == endpoint
    assert _assertion_audience(revoke) == "https://rv.example/token"
