"""The server's signing key, and the tokens it signs: JWT access tokens (RFC 9068) and id_tokens.

One RSA key signs both, with RS256: OpenID Connect Discovery §3 requires RS256 among the id_token
algorithms, and clients such as openid-client expect it by default. The key is made on first start
and kept in the storage (a 0600 database, or the replicas' shared Redis), so every replica signs
with the same key and a restart keeps tokens valid; :mod:`.keys` keeps it (encrypted when so
configured) and rotates it. The JWKS publishes only the public halves of the keys still in use.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws, jwt
from joserfc.errors import JoseError

from .claims import released_claims
from .config import ServerConfig
from .keys import KeyPolicy, Keyring, KeyStore, policy_for
from .storage.base import ServerStorage

__all__ = ["AccessClaims", "Signer", "load_signer"]

ALG: Final = "RS256"
#: RFC 9068 §2.1: "Resource servers MUST verify that the "typ" header value is "at+jwt" or
#: "application/at+jwt"".
ACCESS_TOKEN_TYP: Final = "at+jwt"


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says, for introspection."""

    claims: Mapping[str, Any]


class Signer:
    """Signs and checks the server's JWTs. Its repr shows no key material."""

    def __init__(self, keys: Keyring, issuer: str) -> None:
        self._keys = keys
        self.issuer = issuer
        # The JWKS document for one set of published kids: built once per ring, not per request.
        self._jwks: tuple[tuple[str, ...], dict[str, Any]] = ((), {"keys": []})

    @property
    def kid(self) -> str:
        """The key that signs now."""
        return self._keys.current.kid

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn Signer holds a private key and cannot be pickled")

    def jwks(self) -> dict[str, Any]:
        """The public halves of the published keys. The ring is re-read as for signing (every
        REFRESH_SECONDS), not per request: an anonymous GET must not cost a storage read and a
        decode of every private key."""
        keys = self._keys.verification_keys().keys
        kids = tuple(str(key.kid) for key in keys)
        built_for, document = self._jwks
        if kids != built_for:
            published = []
            for key in keys:
                # Each key's kid is set (keys.py gives every key its thumbprint): as_dict has it.
                public = dict(key.as_dict(private=False))
                public.update(use="sig", alg=ALG)
                published.append(public)
            document = {"keys": published}
            self._jwks = (kids, document)
        return document

    def _sign(self, typ: str, claims: Mapping[str, Any]) -> str:
        current = self._keys.current
        header = {"alg": ALG, "typ": typ, "kid": current.kid}
        return jwt.encode(header, dict(claims), current.key, algorithms=[ALG])

    def access_token(
        self, *, subject: str, client_id: str, audience: str, scope: tuple[str, ...], now: float,
        lifetime: int, auth_time: float | None = None, family_id: str | None = None,
    ) -> tuple[str, str]:
        """A JWT access token (RFC 9068 §2.2) and its jti."""
        jti = secrets.token_urlsafe(16)
        # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat and jti are REQUIRED.
        claims: dict[str, Any] = {
            "iss": self.issuer, "exp": int(now) + lifetime, "aud": audience, "sub": subject,
            "client_id": client_id, "iat": int(now), "jti": jti,
        }
        if scope:
            claims["scope"] = " ".join(scope)
        if auth_time is not None:
            claims["auth_time"] = int(auth_time)
        if family_id is not None:
            # The login session the token belongs to: revoking it (reuse of a rotated refresh
            # token, RFC 7009 revocation of the refresh token) ends this token too.
            claims["sid"] = family_id
        return self._sign(ACCESS_TOKEN_TYP, claims), jti

    def id_token(
        self, *, subject: str, client_id: str, now: float, lifetime: int, auth_time: float | None,
        claims: Mapping[str, str], scope: tuple[str, ...],
    ) -> str:
        """OpenID Connect Core §2: iss, sub, aud, exp, iat (and auth_time, azp)."""
        body: dict[str, Any] = {
            "iss": self.issuer, "sub": subject, "aud": client_id, "azp": client_id,
            "iat": int(now), "exp": int(now) + lifetime,
        }
        if auth_time is not None:
            body["auth_time"] = int(auth_time)
        # OIDC Core §5.4: the profile and email scopes ask for those claims (one mapping, as
        # userinfo's).
        body.update(released_claims(claims, scope))
        return self._sign("JWT", body)

    def check_access_token(self, token: str, now: float) -> dict[str, Any] | None:
        """The claims of a token this server signed and that has not expired; None otherwise."""
        if token.count(".") != 2 or len(token) > 8192:
            return None
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid")
            if isinstance(kid, str):
                # A kid not in the ring: another replica may have rotated in a key and signed
                # with it; re-read the ring (rate-limited) before refusing the token.
                self._keys.knows(kid)
            # The KeySet picks the key by the header's kid: tokens signed before a rotation
            # stay valid while their key is published.
            decoded = jwt.decode(token, self._keys.verification_keys(), algorithms=[ALG])
        # joserfc parses the header with json.loads: RecursionError for one nested deep enough
        # (today its 512-byte header limit comes first; a token is the caller's input either way).
        except (JoseError, ValueError, TypeError, RecursionError):
            return None
        if decoded.header.get("typ") != ACCESS_TOKEN_TYP:
            return None
        claims = dict(decoded.claims)
        exp = claims.get("exp")
        if claims.get("iss") != self.issuer or not isinstance(exp, int) or exp <= now:
            return None
        return claims


def load_signer(storage: ServerStorage, issuer: str, config: ServerConfig | None = None) -> Signer:
    """The persisted signing keys (made on the first start: first replica wins), sealed and
    rotated as ``config`` says; a wrong or missing key-encryption key fails here, at start."""
    policy = policy_for(config) if config is not None else KeyPolicy()
    return Signer(Keyring(KeyStore(storage, policy)), issuer)
