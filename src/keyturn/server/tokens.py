"""The server's signing key, and the tokens it signs: JWT access tokens (RFC 9068) and id_tokens.

One key signs both, with the configuration's ``signing_alg``: RS256 by default (OpenID Connect
Discovery §3 requires RS256 among the id_token algorithms, and clients such as openid-client
expect it unless told otherwise), or ES256 (a P-256 key: signing costs about a tenth of RS256's).
The key is made on first start and kept in the storage (a 0600 database, or the replicas' shared
Redis), so every replica signs with the same key and a restart keeps tokens valid; :mod:`.keys`
keeps it (encrypted when so configured) and rotates it. The JWKS publishes only the public halves
of the keys still in use, each with its own ``alg``.

Signing is on the hot path of every token answer, so it is done here with ``cryptography``
directly (the compact JWS of RFC 7515 §7.1 is two base64url parts and a signature), with the
header of each key encoded once; checking tokens (introspection, userinfo, revocation) goes
through joserfc.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws, jwt
from joserfc.errors import JoseError

from .claims import released_claims
from .config import ServerConfig
from .keys import KeyPolicy, Keyring, KeyStore, SigningKey, policy_for
from .storage.base import ServerStorage

__all__ = ["AccessClaims", "Signer", "load_signer"]

#: The default ``signing_alg`` (see the module header).
ALG: Final = "RS256"
#: RFC 9068 §2.1: "Resource servers MUST verify that the "typ" header value is "at+jwt" or
#: "application/at+jwt"".
ACCESS_TOKEN_TYP: Final = "at+jwt"


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says, for introspection."""

    claims: Mapping[str, Any]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _KeySigner:
    """One key's compact JWS signing, with what does not change per token computed once."""

    def __init__(self, key: SigningKey) -> None:
        self.kid = key.kid
        self.alg = key.alg
        self._private: Any = key.key.private_key
        # The header of each typ, already encoded: RFC 7515 §7.1's first part.
        self._headers = {typ: _b64(_json({"alg": self.alg, "typ": typ, "kid": self.kid}))
                         for typ in (ACCESS_TOKEN_TYP, "JWT")}

    def sign(self, typ: str, claims: Mapping[str, Any]) -> str:
        signing_input = self._headers[typ] + b"." + _b64(_json(claims))
        if self.alg == "ES256":
            # RFC 7518 §3.4: the signature is R and S as two 32-byte big-endian integers, not
            # the DER sequence cryptography returns.
            r, s = decode_dss_signature(self._private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self._private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return (signing_input + b"." + _b64(signature)).decode("ascii")


class Signer:
    """Signs and checks the server's JWTs. Its repr shows no key material."""

    def __init__(self, keys: Keyring, issuer: str) -> None:
        self._keys = keys
        self.issuer = issuer
        # The JWKS document for one set of published kids: built once per ring, not per request
        # (and its JSON bytes, for the endpoint).
        self._jwks: tuple[tuple[str, ...], dict[str, Any], bytes] = ((), {"keys": []}, b"")
        self._signer: _KeySigner | None = None

    @property
    def kid(self) -> str:
        """The key that signs now."""
        return self._keys.current.kid

    @property
    def alg(self) -> str:
        """What signs now (the configuration's ``signing_alg`` once the ring has a key of it)."""
        return self._keys.current.alg

    def refresh_due(self) -> bool:
        """Whether signing or the JWKS would re-read the keyring now (a wait on the storage: the
        app then goes to its threadpool)."""
        return self._keys.refresh_due()

    def refresh_if_due(self) -> None:
        """Re-read the keyring now if it is due (call it off the event loop)."""
        self._keys.keys()

    def algs(self) -> list[str]:
        """The algorithms of the published keys, the signing one first (for discovery): as the
        ring was last read (discovery never waits on the storage)."""
        return list(dict.fromkeys(key.alg for key in self._keys.published(refresh=False)))

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn Signer holds a private key and cannot be pickled")

    def jwks(self) -> dict[str, Any]:
        """The public halves of the published keys. The ring is re-read as for signing (every
        REFRESH_SECONDS), not per request: an anonymous GET must not cost a storage read and a
        decode of every private key."""
        return self._jwks_built()[1]

    def jwks_json(self) -> bytes:
        """:meth:`jwks` as the JSON bytes the endpoint sends (encoded once per ring)."""
        return self._jwks_built()[2]

    def _jwks_built(self) -> tuple[tuple[str, ...], dict[str, Any], bytes]:
        keys = self._keys.published()
        kids = tuple(key.kid for key in keys)
        if kids != self._jwks[0]:
            published = []
            for key in keys:
                # Each key's kid is set (keys.py gives every key its thumbprint): as_dict has it.
                public = dict(key.key.as_dict(private=False))
                public.update(use="sig", alg=key.alg)
                published.append(public)
            document = {"keys": published}
            self._jwks = (kids, document, _json(document))
        return self._jwks

    def _sign(self, typ: str, claims: Mapping[str, Any]) -> str:
        current = self._keys.current
        signer = self._signer
        if signer is None or signer.kid != current.kid:
            signer = self._signer = _KeySigner(current)
        return signer.sign(typ, claims)

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
            header = jws.extract_compact(token.encode()).headers()
            kid = header.get("kid")
            if not isinstance(kid, str):
                return None
            # A kid not in the ring: another replica may have rotated in a key and signed
            # with it; re-read the ring (rate-limited) before refusing the token.
            self._keys.knows(kid)
            # The key by the header's kid: tokens signed before a rotation stay valid while their
            # key is published. RFC 8725 §3.1: "each key MUST be used with exactly one
            # algorithm" - the alg of the header must be that key's own.
            key = next((key for key in self._keys.published() if key.kid == kid), None)
            if key is None or header.get("alg") != key.alg:
                return None
            decoded = jwt.decode(token, key.key, algorithms=[key.alg])
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
