"""Signing keys and JWT client assertions (RFC 7523), with joserfc.

Only this module imports joserfc, so a source that needs no JWT never pays for it.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..secret import Secret
from ..strictjson import JsonError, loads

__all__ = ["SigningKey", "build_assertion", "load_secret_key", "load_signing_key"]

#: The algorithm used for each kind of key when none is named.
_DEFAULT_ALG = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
    ("EC", "P-521"): "ES512",
    ("OKP", "Ed25519"): "EdDSA",
    ("oct", None): "HS256",
}

# joserfc warns on every signature with "EdDSA" since RFC 9864 named "Ed25519"; servers still
# expect "EdDSA" (oidc-provider, Keycloak), so the name stays and the warning goes.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")

#: Seconds an assertion is valid: RFC 7523 §3 wants an exp; a short one limits replay.
ASSERTION_LIFETIME = 60


class SigningKey:
    """A private (or shared) key and the JWS algorithm to sign with. Its repr shows no key material."""

    __slots__ = ("_key", "alg", "kid")

    def __init__(self, key: Any, alg: str, kid: str | None) -> None:
        self._key = key
        self.alg = alg
        self.kid = kid

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn SigningKey holds a secret and cannot be pickled")

    def sign(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        from joserfc import jwt

        full_header = {"alg": self.alg, "typ": "JWT", **header}
        if self.kid:
            full_header.setdefault("kid", self.kid)
        return jwt.encode(full_header, dict(claims), self._key, algorithms=[self.alg])


def _key_type(data: Any) -> tuple[str, str | None]:
    if isinstance(data, Mapping):
        kty = str(data.get("kty", ""))
        return kty, (str(data["crv"]) if "crv" in data else None)
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem = data.encode() if isinstance(data, str) else data
    try:
        private = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "private_key is neither a JWK nor an unencrypted PEM private key"
        ) from None
    if isinstance(private, rsa.RSAPrivateKey):
        return "RSA", None
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return "EC", {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
            private.curve.name
        )
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return "OKP", "Ed25519"
    raise ConfigError("private_key must be an RSA, EC or Ed25519 key")


def load_signing_key(private_key: Any, *, alg: str | None = None) -> SigningKey:
    """Load a private key from PEM (str or bytes), a JWK (dict or JSON string) or a joserfc key."""
    from joserfc import jwk

    data: Any = private_key
    if isinstance(data, str) and data.lstrip().startswith("{"):
        try:
            data = loads(data)
        except JsonError as exc:
            raise ConfigError(f"private_key looks like JSON but does not parse as a JWK "
                              f"({exc.reason})") from None
    if isinstance(data, (jwk.RSAKey, jwk.ECKey, jwk.OKPKey, jwk.OctKey)):
        key: Any = data
        kty = data.key_type
        curve = data.as_dict(private=False).get("crv")
        crv = curve if isinstance(curve, str) else None
    else:
        kty, crv = _key_type(data)
        if kty not in ("RSA", "EC", "OKP", "oct"):
            raise ConfigError(f"private_key has unsupported key type {kty!r}")
        try:
            key = jwk.import_key(data, kty)  # type: ignore[call-overload]
        except Exception as exc:  # joserfc raises several types for bad key data
            raise ConfigError(f"private_key could not be loaded ({exc.__class__.__name__})") from None
    if kty != "oct" and not key.is_private:
        raise ConfigError("private_key holds only a public key: the private part is needed to sign")
    chosen = alg or _DEFAULT_ALG.get((kty, crv if kty in ("EC", "OKP") else None))
    if chosen is None:
        raise ConfigError(f"no default signing algorithm for a {kty} {crv} key: pass alg=")
    kid = key.kid if isinstance(key.kid, str) else None
    return SigningKey(key, chosen, kid)


def load_secret_key(private_key: Any, *, alg: str | None = None) -> SigningKey:
    """:func:`load_signing_key` for a key given as a :class:`~keyturn.secret.Secret` (or not yet
    wrapped), whose ConfigError shows no key material in a traceback with locals.

    The loader's frames hold the PEM or the JWK itself. Its error is raised again, as a new
    ConfigError with the same message, from this frame — which holds only the Secret — once those
    frames are gone: they are not in the traceback, nor in a ``__context__``.
    """
    private_key = Secret.wrap(private_key)
    loaded = _load_or_message(private_key, alg)
    if isinstance(loaded, str):
        raise ConfigError(loaded)
    return loaded


def _load_or_message(private_key: Secret[Any], alg: str | None) -> SigningKey | str:
    try:
        return load_signing_key(private_key.reveal(), alg=alg)
    except ConfigError as exc:
        return exc.message
    except Exception as exc:  # an error of the key libraries: a typed one, without their frames
        return f"private_key could not be loaded ({type(exc).__name__})"


def secret_signing_key(secret: Secret[str], *, alg: str = "HS256") -> SigningKey:
    """The client secret as an HMAC key, for client_secret_jwt."""
    from joserfc import jwk

    return SigningKey(jwk.OctKey.import_key(secret.reveal().encode()), alg, None)


def build_assertion(
    key: SigningKey, *, issuer: str, subject: str, audience: str, now: float,
    lifetime: int = ASSERTION_LIFETIME, extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT for client authentication or the JWT bearer grant (RFC 7523 §3).

    "The JWT MUST contain a "jti" (JWT ID) claim" is required by OIDC Core §9 for client
    authentication and makes every assertion unique, so a server that refuses replays accepts it.
    """
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_urlsafe(24),
    }
    if extra_claims:
        claims.update(extra_claims)
    return key.sign({}, claims)
