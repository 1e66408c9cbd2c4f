"""OpenID Connect id_token validation against the real provider's JWKS, with tampered tokens made
from a real id_token: edited claims, a foreign signature, a stripped signature, alg none."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from keyturn import InvalidIdToken
from keyturn.protocol.idtoken import KeySetCache, fetch_jwks_flow, validate_id_token_flow
from keyturn.protocol.metadata import ServerMetadata, discover
from keyturn.transport import run
from tests.support.providerfixture import Provider

CLIENT = "public"


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unb64(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Http:
    """Runs flows over real HTTP and remembers every URL fetched."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.client = httpx.Client(trust_env=False, event_hooks={
            "request": [lambda request: self.urls.append(str(request.url))]})

    def run(self, flow: Any) -> Any:
        return run(flow, self.client)


@pytest.fixture(scope="module")
def http() -> Any:
    driver = Http()
    yield driver
    driver.client.close()


@pytest.fixture(scope="module")
def metadata(provider: Provider, http: Http) -> ServerMetadata:
    return http.run(discover(provider.issuer))


@pytest.fixture(scope="module")
def real_id_token(provider: Provider) -> str:
    """An id_token the provider issued to the public client (refresh grant, openid scope)."""
    refresh = provider.mint_refresh_token(CLIENT, scope="openid offline_access")
    response = httpx.post(provider.token_endpoint, trust_env=False, data={
        "grant_type": "refresh_token", "refresh_token": refresh, "client_id": CLIENT})
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])


@pytest.fixture(scope="module")
def own_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "attacker", "alg": "ES256"}, private=True)


def validate(http: Http, token: str, metadata: ServerMetadata, *, keys: KeySetCache | None = None,
             nonce: str | None = None, now: float | None = None, **kwargs: Any) -> dict[str, Any]:
    return http.run(validate_id_token_flow(
        token, metadata=metadata, client_id=CLIENT, now=time.time() if now is None else now,
        nonce=nonce, keys=keys if keys is not None else KeySetCache(), **kwargs))


def resign(token: str, key: Any, alg: str = "ES256", kid: str | None = None,
           **edits: Any) -> str:
    """The token's claims, edited, signed with ``key`` (keeping the provider's kid unless told)."""
    header, payload, _ = token.split(".")
    claims = {**unb64(payload), **edits}
    claims = {k: v for k, v in claims.items() if v is not None}
    new_header = {"alg": alg, "typ": "JWT", "kid": kid or unb64(header)["kid"]}
    return jwt.encode(new_header, claims, key, algorithms=[alg])


def trusting(own_key: ECKey, metadata: ServerMetadata) -> KeySetCache:
    """A key cache that trusts ``own_key`` as the issuer's: to test the claim checks alone."""
    keys = KeySetCache()
    assert metadata.jwks_uri
    keys.put(metadata.jwks_uri, [ECKey.import_key(own_key.as_dict(private=False))])
    return keys


# -- the real token ---------------------------------------------------------------------------------


def test_real_id_token_is_accepted_with_its_claims(http: Http, metadata: ServerMetadata,
                                                   real_id_token: str, provider: Provider) -> None:
    claims = validate(http, real_id_token, metadata)
    assert claims["sub"] == "alice" and claims["aud"] == CLIENT and claims["iss"] == provider.issuer


# -- tampering --------------------------------------------------------------------------------------


def test_edited_claims_break_the_signature(http: Http, metadata: ServerMetadata,
                                           real_id_token: str) -> None:
    header, payload, signature = real_id_token.split(".")
    forged = ".".join([header, b64({**unb64(payload), "sub": "mallory"}), signature])
    with pytest.raises(InvalidIdToken, match="signature"):
        validate(http, forged, metadata)


def test_resigned_with_another_key_is_refused(http: Http, metadata: ServerMetadata,
                                              real_id_token: str, own_key: ECKey) -> None:
    # The kid of the provider's own EC key, so that key is used: the signature fails.
    forged = resign(real_id_token, own_key, alg="ES256", kid=_provider_kid(http, metadata, "EC"))
    with pytest.raises(InvalidIdToken, match="signature"):
        validate(http, forged, metadata)


def _provider_kid(http: Http, metadata: ServerMetadata, kty: str) -> str:
    assert metadata.jwks_uri
    keys = http.run(fetch_jwks_flow(metadata.jwks_uri))
    return str(next(k.kid for k in keys if k.key_type == kty))


def test_stripped_signature_and_alg_none_are_refused(http: Http, metadata: ServerMetadata,
                                                     real_id_token: str) -> None:
    header, payload, _ = real_id_token.split(".")
    with pytest.raises(InvalidIdToken, match="no signature"):
        validate(http, f"{header}.{payload}.", metadata)
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    with pytest.raises(InvalidIdToken, match="'none' is not allowed"):
        validate(http, unsigned, metadata)
    with pytest.raises(InvalidIdToken, match="'none'"):
        validate(http, real_id_token, metadata, algorithms=("RS256", "none"))


def test_hmac_signed_with_the_public_key_is_refused(http: Http, metadata: ServerMetadata,
                                                    real_id_token: str) -> None:
    # The classic key-confusion attack: HS256 with the issuer's public key as the secret.
    assert metadata.jwks_uri
    public = httpx.get(metadata.jwks_uri, trust_env=False).content
    forged = resign(real_id_token, OctKey.import_key(public), alg="HS256")
    with pytest.raises(InvalidIdToken, match="'HS256' is not allowed"):
        validate(http, forged, metadata)


@pytest.mark.parametrize(("edits", "nonce", "message"), [
    ({"aud": "someone-else"}, None, "aud"),
    ({"aud": ["public", "someone-else"], "azp": "public"}, None, "audiences"),
    ({"iss": "https://evil.example"}, None, "iss"),
    ({"exp": 1_000_000}, None, "expired"),
    ({"iat": 4_000_000_000}, None, "future"),
    ({"sub": None}, None, "sub"),
    ({"nonce": "n-1"}, "n-2", "nonce"),
    ({}, "n-1", "nonce"),  # a nonce was sent, the token has none
    ({"azp": "someone-else"}, None, "azp"),
])
def test_claims_are_checked(http: Http, metadata: ServerMetadata, real_id_token: str,
                            own_key: ECKey, edits: dict[str, Any], nonce: str | None,
                            message: str) -> None:
    forged = resign(real_id_token, own_key, kid="attacker", **edits)
    with pytest.raises(InvalidIdToken, match=message):
        validate(http, forged, metadata, keys=trusting(own_key, metadata), nonce=nonce)


def test_claims_checks_pass_when_right(http: Http, metadata: ServerMetadata, real_id_token: str,
                                       own_key: ECKey) -> None:
    keys = trusting(own_key, metadata)
    token = resign(real_id_token, own_key, kid="attacker", nonce="n-1")
    assert validate(http, token, metadata, keys=keys, nonce="n-1")["nonce"] == "n-1"
    assert validate(http, token, metadata, keys=keys)["sub"] == "alice"  # no nonce was sent
    # Several audiences are fine when this client is the authorized party and the others trusted.
    several = resign(real_id_token, own_key, kid="attacker", aud=["public", "api"], azp="public")
    assert validate(http, several, metadata, keys=keys, trusted_audiences=("api",))["azp"] == "public"
    # A little clock skew is tolerated, and it is configurable.
    exp = unb64(real_id_token.split(".")[1])["exp"]
    assert validate(http, token, metadata, keys=keys, now=exp + 10)["sub"] == "alice"
    with pytest.raises(InvalidIdToken, match="expired"):
        validate(http, token, metadata, keys=keys, now=exp + 10, clock_skew=5)


# -- key rotation -------------------------------------------------------------------------------------


def test_unknown_kid_refetches_the_jwks_once(http: Http, metadata: ServerMetadata,
                                             real_id_token: str, own_key: ECKey) -> None:
    assert metadata.jwks_uri
    stale = trusting(own_key, metadata)  # the cached set predates the provider's current key
    before = http.urls.count(metadata.jwks_uri)
    assert validate(http, real_id_token, metadata, keys=stale)["sub"] == "alice"
    assert http.urls.count(metadata.jwks_uri) == before + 1
    # Now cached: no fetch at all.
    assert validate(http, real_id_token, metadata, keys=stale)["sub"] == "alice"
    assert http.urls.count(metadata.jwks_uri) == before + 1
    # A kid nobody knows: one refetch, then refused (never a fetch per attempt beyond that).
    made_up = resign(real_id_token, own_key, kid="no-such-kid")
    with pytest.raises(InvalidIdToken, match="no key"):
        validate(http, made_up, metadata, keys=stale)
    assert http.urls.count(metadata.jwks_uri) == before + 2


def test_messages_never_show_the_token(http: Http, metadata: ServerMetadata,
                                       real_id_token: str) -> None:
    header, payload, signature = real_id_token.split(".")
    forged = ".".join([header, b64({**unb64(payload), "aud": "x"}), signature])
    with pytest.raises(InvalidIdToken) as caught:
        validate(http, forged, metadata)
    for part in (payload, signature):
        assert part not in str(caught.value) and part not in repr(caught.value)


def test_a_server_cannot_plant_claims_without_an_id_token(provider: Provider) -> None:
    from keyturn import DeviceCode, Token
    from keyturn.protocol.http import run_offline

    source = DeviceCode(issuer=provider.issuer, client_id=CLIENT, store=None, interactive=False)
    planted = Token(access_token="at", extra={"id_token_claims": {"sub": "root"}, "x": 1})
    token = run_offline(source._claims_flow(planted, None), {})
    assert token.claims == {} and token.extra == {"x": 1}
