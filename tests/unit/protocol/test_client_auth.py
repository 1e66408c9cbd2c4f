"""keyturn.protocol.client_auth and keyturn.protocol.jwt: how a client proves who it is."""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwk, jwt

from keyturn.errors import ConfigError
from keyturn.protocol.client_auth import AUTH_METHODS, ClientAuth, basic_credentials
from keyturn.protocol.jwt import ASSERTION_LIFETIME, SigningKey, load_signing_key

TOKEN_ENDPOINT = "https://as.example/oauth2/token"
NOW = 1_700_000_000.75
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SECRET = "s3cr3t-Pa55word-never-shown"

# joserfc >= 1.6 warns that RFC 9864 deprecates the name "EdDSA" (keyturn's default for Ed25519).
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


# -- keys ------------------------------------------------------------------------------------------


def _pem(private: Any) -> tuple[str, bytes]:
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, public


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[str, bytes, str, str]]:
    """kind -> (private PEM, public PEM, joserfc key type, expected default alg)."""
    rsa_pem, rsa_pub = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_pem, ec_pub = _pem(ec.generate_private_key(ec.SECP256R1()))
    ec384_pem, ec384_pub = _pem(ec.generate_private_key(ec.SECP384R1()))
    ed_pem, ed_pub = _pem(ed25519.Ed25519PrivateKey.generate())
    return {
        "rsa": (rsa_pem, rsa_pub, "RSA", "RS256"),
        "ec256": (ec_pem, ec_pub, "EC", "ES256"),
        "ec384": (ec384_pem, ec384_pub, "EC", "ES384"),
        "ed25519": (ed_pem, ed_pub, "OKP", "EdDSA"),
    }


def _jwk_dict(pem: str, kty: str, kid: str | None = None) -> dict[str, Any]:
    data = dict(jwk.import_key(pem, kty).as_dict(private=True))  # type: ignore[call-overload]
    if kid is not None:
        data["kid"] = kid
    return data


def _verify(assertion: str, public_pem: bytes, kty: str, alg: str) -> jwt.Token:
    public = jwk.import_key(public_pem, kty)  # type: ignore[call-overload]
    return jwt.decode(assertion, public, algorithms=[alg])


def _apply(auth: ClientAuth, now: float = NOW) -> tuple[dict[str, Any], dict[str, str]]:
    form: dict[str, Any] = {"grant_type": "client_credentials"}
    headers: dict[str, str] = {}
    auth.apply(form, headers, audience=TOKEN_ENDPOINT, now=now)
    return form, headers


# -- client_secret_basic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "secret", "encoded"),
    [
        ("plain", "secret", "plain:secret"),
        # RFC 6749 §2.3.1: both parts are form-urlencoded before the Basic encoding, so a ':' in the
        # id cannot be mistaken for the separator, '+' is %2B, ' ' is '+', '%' is %25.
        ("my:client id+1%", "pa:ss w+rd%", "my%3Aclient+id%2B1%25:pa%3Ass+w%2Brd%25"),
        ("clïent", "pässwörd€", "cl%C3%AFent:p%C3%A4ssw%C3%B6rd%E2%82%AC"),
        ("a/b?c=d&e", "x#y\"z", "a%2Fb%3Fc%3Dd%26e:x%23y%22z"),
        ("%20", "+", "%2520:%2B"),
    ],
)
def test_client_secret_basic_form_encodes_before_base64(client_id: str, secret: str, encoded: str) -> None:
    expected = "Basic " + base64.b64encode(encoded.encode("ascii")).decode("ascii")
    assert basic_credentials(client_id, secret) == expected

    auth = ClientAuth.create(client_id=client_id, client_secret=secret, auth_method="client_secret_basic")
    form, headers = _apply(auth)
    assert headers == {"Authorization": expected}
    # Basic puts nothing of the client in the body.
    assert form == {"grant_type": "client_credentials"}


def test_client_secret_basic_is_the_default_with_a_secret() -> None:
    auth = ClientAuth.create(client_id="c", client_secret="s")
    assert auth.method == "client_secret_basic"
    _, headers = _apply(auth)
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"c:s").decode()


# -- client_secret_post, none, tls_client_auth ----------------------------------------------------------


def test_client_secret_post_puts_id_and_secret_in_the_body() -> None:
    auth = ClientAuth.create(client_id="my client", client_secret=SECRET, auth_method="client_secret_post")
    form, headers = _apply(auth)
    assert headers == {}
    # Unencoded here: the transport form-encodes the body once.
    assert form == {"grant_type": "client_credentials", "client_id": "my client", "client_secret": SECRET}


def test_none_puts_only_the_client_id() -> None:
    auth = ClientAuth.create(client_id="public-cli", auth_method="none")
    form, headers = _apply(auth)
    assert headers == {}
    assert form == {"grant_type": "client_credentials", "client_id": "public-cli"}


def test_none_is_the_default_without_credentials() -> None:
    assert ClientAuth.create(client_id="cli").method == "none"


def test_none_ignores_a_secret_it_was_given() -> None:
    auth = ClientAuth.create(client_id="cli", client_secret=SECRET, auth_method="none")
    form, headers = _apply(auth)
    assert SECRET not in json.dumps(form) + json.dumps(headers)


def test_tls_client_auth_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="cert="):
        ClientAuth.create(client_id="c", auth_method="tls_client_auth")
    auth = ClientAuth.create(client_id="c", auth_method="tls_client_auth", has_client_cert=True)
    form, headers = _apply(auth)
    assert form == {"grant_type": "client_credentials", "client_id": "c"}
    assert headers == {}


def test_tls_client_auth_is_the_default_with_only_a_certificate() -> None:
    assert ClientAuth.create(client_id="c", has_client_cert=True).method == "tls_client_auth"


# -- client_secret_jwt --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", [None, "HS384", "HS512"])
def test_client_secret_jwt_assertion(alg: str | None) -> None:
    secret = "a-shared-secret-long-enough-for-hmac-512-0123456789abcdefghijklmnopqrstuvwxyz"
    auth = ClientAuth.create(
        client_id="svc", client_secret=secret, auth_method="client_secret_jwt", signing_alg=alg
    )
    form, headers = _apply(auth)
    assert headers == {}
    assert form["client_id"] == "svc"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert "client_secret" not in form
    assert secret not in form["client_assertion"]
    expected_alg = alg or "HS256"
    token = jwt.decode(form["client_assertion"], jwk.OctKey.import_key(secret.encode()),
                       algorithms=[expected_alg])
    assert token.header["alg"] == expected_alg
    _check_claims(token.claims, client_id="svc")


def test_client_secret_jwt_with_the_wrong_secret_does_not_verify() -> None:
    secret = "the-right-secret-0123456789-0123456789"
    auth = ClientAuth.create(client_id="svc", client_secret=secret, auth_method="client_secret_jwt")
    form, _ = _apply(auth)
    with pytest.raises(Exception):
        jwt.decode(form["client_assertion"], jwk.OctKey.import_key(b"another-secret-0123456789-012345"),
                   algorithms=["HS256"])


def _check_claims(claims: dict[str, Any], *, client_id: str) -> None:
    # RFC 7523 §3: iss and sub are the client_id; aud is the token endpoint.
    assert claims["iss"] == client_id
    assert claims["sub"] == client_id
    assert claims["aud"] == TOKEN_ENDPOINT
    assert claims["iat"] == int(NOW)
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert claims["exp"] - claims["iat"] == ASSERTION_LIFETIME
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


# -- private_key_jwt ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec256", "ec384", "ed25519"])
@pytest.mark.parametrize("form_of_key", ["pem_str", "pem_bytes", "jwk_dict", "jwk_json"])
def test_private_key_jwt_assertion_verifies_with_the_public_key(
    keys: dict[str, tuple[str, bytes, str, str]], kind: str, form_of_key: str
) -> None:
    pem, public, kty, alg = keys[kind]
    private_key: Any = {
        "pem_str": pem,
        "pem_bytes": pem.encode(),
        "jwk_dict": _jwk_dict(pem, kty),
        "jwk_json": json.dumps(_jwk_dict(pem, kty)),
    }[form_of_key]
    auth = ClientAuth.create(client_id="robot-1", private_key=private_key)
    assert auth.method == "private_key_jwt"
    form, headers = _apply(auth)
    assert headers == {}
    assert form["client_id"] == "robot-1"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert "client_secret" not in form
    token = _verify(form["client_assertion"], public, kty, alg)
    assert token.header["alg"] == alg
    assert token.header.get("typ") == "JWT"
    _check_claims(token.claims, client_id="robot-1")


def test_private_key_jwt_does_not_verify_with_another_key(
    keys: dict[str, tuple[str, bytes, str, str]],
) -> None:
    auth = ClientAuth.create(client_id="c", private_key=keys["ec256"][0])
    form, _ = _apply(auth)
    other_public = _pem(ec.generate_private_key(ec.SECP256R1()))[1]
    with pytest.raises(Exception):
        _verify(form["client_assertion"], other_public, "EC", "ES256")


def test_jti_is_unique_and_iat_follows_now(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    pem, public, kty, alg = keys["ec256"]
    auth = ClientAuth.create(client_id="c", private_key=pem, auth_method="private_key_jwt")
    first = _verify(_apply(auth, now=NOW)[0]["client_assertion"], public, kty, alg).claims
    second = _verify(_apply(auth, now=NOW + 30)[0]["client_assertion"], public, kty, alg).claims
    assert first["jti"] != second["jti"]
    assert first["iat"] == int(NOW)
    assert second["iat"] == int(NOW + 30)
    assert second["exp"] == int(NOW + 30) + ASSERTION_LIFETIME


def test_jwk_kid_goes_into_the_header(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    pem, public, kty, alg = keys["rsa"]
    auth = ClientAuth.create(client_id="c", private_key=_jwk_dict(pem, kty, kid="key-2024"))
    token = _verify(_apply(auth)[0]["client_assertion"], public, kty, alg)
    assert token.header["kid"] == "key-2024"


def test_signing_alg_overrides_the_default(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    pem, public, kty, _ = keys["rsa"]
    auth = ClientAuth.create(client_id="c", private_key=pem, signing_alg="PS256")
    token = _verify(_apply(auth)[0]["client_assertion"], public, kty, "PS256")
    assert token.header["alg"] == "PS256"


def test_a_joserfc_key_object_is_accepted(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    pem, public, kty, alg = keys["ec256"]
    key = jwk.ECKey.import_key(pem)
    signing = load_signing_key(key)
    assert signing.alg == "ES256"
    auth = ClientAuth.create(client_id="c", private_key=key)
    _verify(_apply(auth)[0]["client_assertion"], public, kty, alg)


# -- configuration errors never show the secret ------------------------------------------------------


def _assert_secret_free(exc: BaseException, *secrets: str) -> None:
    text = str(exc) + repr(exc) + repr(exc.args)
    for secret in secrets:
        assert secret not in text


def test_missing_client_id() -> None:
    with pytest.raises(ConfigError, match="client_id"):
        ClientAuth.create(client_id=None, client_secret=SECRET)
    with pytest.raises(ConfigError, match="client_id"):
        ClientAuth.create(client_id="", client_secret=SECRET)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "client_secret_jwt"])
@pytest.mark.parametrize("secret", [None, ""])
def test_missing_secret(method: str, secret: str | None) -> None:
    with pytest.raises(ConfigError, match="client_secret="):
        ClientAuth.create(client_id="c", client_secret=secret, auth_method=method)


def test_private_key_jwt_without_a_key() -> None:
    with pytest.raises(ConfigError, match="private_key="):
        ClientAuth.create(client_id="c", client_secret=SECRET, auth_method="private_key_jwt")


@pytest.mark.parametrize("method", ["client_secret", "basic", "CLIENT_SECRET_BASIC", "private_key_jwt "])
def test_unknown_method(method: str) -> None:
    with pytest.raises(ConfigError, match="auth_method") as info:
        ClientAuth.create(client_id="c", client_secret=SECRET, auth_method=method)
    _assert_secret_free(info.value, SECRET)
    for known in AUTH_METHODS:
        assert known in str(info.value)


def test_public_only_pem_key(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    for kind in ("rsa", "ec256", "ed25519"):
        with pytest.raises(ConfigError):
            ClientAuth.create(client_id="c", private_key=keys[kind][1].decode())


@pytest.mark.parametrize("kind", ["rsa", "ec256", "ed25519"])
def test_public_only_jwk(keys: dict[str, tuple[str, bytes, str, str]], kind: str) -> None:
    pem, _, kty, _ = keys[kind]
    public = dict(jwk.import_key(pem, kty).as_dict(private=False))  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="public key"):
        ClientAuth.create(client_id="c", private_key=public)
    with pytest.raises(ConfigError, match="public key"):
        ClientAuth.create(client_id="c", private_key=json.dumps(public))


GARBAGE_SECRET = "TOPSECRETKEYMATERIAL"


@pytest.mark.parametrize(
    "garbage",
    [
        GARBAGE_SECRET,
        GARBAGE_SECRET.encode(),
        f"-----BEGIN PRIVATE KEY-----\n{GARBAGE_SECRET}\n-----END PRIVATE KEY-----\n",
        "{" + GARBAGE_SECRET,
        {"kty": "RSA", "n": GARBAGE_SECRET, "e": "AQAB", "d": GARBAGE_SECRET},
        {"kty": "EC", "crv": "P-256", "x": GARBAGE_SECRET, "y": GARBAGE_SECRET, "d": GARBAGE_SECRET},
        {"kty": "oct-x", "k": GARBAGE_SECRET},
        {"d": GARBAGE_SECRET},
        12345,
    ],
    ids=["text", "bytes", "pem", "bad-json", "bad-rsa-jwk", "bad-ec-jwk", "bad-kty", "no-kty", "int"],
)
def test_garbage_key_is_a_config_error_without_the_key(garbage: Any) -> None:
    with pytest.raises(ConfigError) as info:
        ClientAuth.create(client_id="c", private_key=garbage, auth_method="private_key_jwt")
    _assert_secret_free(info.value, GARBAGE_SECRET)
    # Nothing of the key hides in the chained exception either.
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_encrypted_pem_is_refused(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    private = serialization.load_pem_private_key(keys["ec256"][0].encode(), password=None)
    encrypted = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(ConfigError, match="PEM"):
        ClientAuth.create(client_id="c", private_key=encrypted)


# -- no secret in repr or pickle --------------------------------------------------------------------


def _all_auths(keys: dict[str, tuple[str, bytes, str, str]]) -> list[ClientAuth]:
    return [
        ClientAuth.create(client_id="c", client_secret=SECRET, auth_method="client_secret_basic"),
        ClientAuth.create(client_id="c", client_secret=SECRET, auth_method="client_secret_post"),
        ClientAuth.create(client_id="c", client_secret=SECRET, auth_method="client_secret_jwt"),
        ClientAuth.create(client_id="c", private_key=keys["rsa"][0]),
    ]


def test_client_auth_repr_shows_no_secret(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    pem = keys["rsa"][0]
    body = "".join(pem.splitlines()[1:-1])
    for auth in _all_auths(keys):
        text = repr(auth) + str(auth) + f"{auth!r}"
        assert SECRET not in text
        assert body[:40] not in text and "PRIVATE" not in text
        assert "client_id='c'" in text and auth.method in text


def test_client_auth_cannot_be_pickled(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    for auth in _all_auths(keys):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError, match="cannot be pickled") as info:
                pickle.dumps(auth, protocol=protocol)
            assert SECRET not in str(info.value)


def test_signing_key_repr_and_pickle(keys: dict[str, tuple[str, bytes, str, str]]) -> None:
    signing_keys = [
        load_signing_key(keys["rsa"][0]),
        load_signing_key(_jwk_dict(keys["ed25519"][0], "OKP", kid="k1")),
        ClientAuth.create(client_id="c", client_secret=SECRET, auth_method="client_secret_jwt")._key,
    ]
    for key in signing_keys:
        assert isinstance(key, SigningKey)
        text = repr(key)
        assert text.startswith("SigningKey(alg=")
        assert SECRET not in text and "PRIVATE" not in text
        with pytest.raises(TypeError):
            pickle.dumps(key)
    assert repr(signing_keys[1]) == "SigningKey(alg='EdDSA', kid='k1')"
