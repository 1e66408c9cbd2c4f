"""OpenID Connect ID Token validation (OpenID Connect Core 1.0 §3.1.3.7, §2), with joserfc.

:func:`validate_id_token_flow` checks, in this order, and refuses the token at the first failure:
the ``alg`` against an allow-list (``none`` is never accepted), the signature against the issuer's
JWKS (fetched through the flow, and fetched again once when the token names a ``kid`` the cached
set lacks: the provider rotated its keys), then ``iss``, ``aud`` and ``azp``, ``exp`` and ``iat``
with a small clock-skew tolerance, ``sub``, and ``nonce`` when one was sent. It returns the claims.

The JWKS cache is an object the caller keeps (:class:`KeySetCache`), so this module holds no state
and does no I/O; time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import threading
import warnings
from collections.abc import Collection, Mapping
from typing import Any, Final

from ..errors import InvalidIdToken, InvalidResponse
from ..secret import Secret
from ..strictjson import JsonError, loads
from .http import Flow, HttpRequest, send
from .metadata import ServerMetadata
from .tenants import iss_matches

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_CLOCK_SKEW",
    "KeySetCache",
    "check_at_hash",
    "fetch_jwks_flow",
    "validate_id_token_flow",
]

#: Asymmetric algorithms only: an HMAC-signed ID Token is signed with the client secret, which a
#: public client does not have, and accepting HS* next to RS* invites key-confusion attacks.
DEFAULT_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                             "ES256", "ES384", "ES512", "EdDSA", "Ed25519")
#: Seconds of disagreement between our clock and the provider's that ``exp`` and ``iat`` tolerate.
DEFAULT_CLOCK_SKEW: Final = 30.0

warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")


class KeySetCache:
    """The issuers' public keys (JWKS documents) by ``jwks_uri``, shared by the sources that use them."""

    def __init__(self) -> None:
        self._sets: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> list[Any] | None:
        with self._lock:
            return self._sets.get(uri)

    def put(self, uri: str, keys: list[Any]) -> None:
        with self._lock:
            self._sets[uri] = keys

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()


def _import_keys(document: Mapping[str, Any], url: str) -> list[Any]:
    from joserfc import jwk

    entries = document.get("keys")
    if not isinstance(entries, list):
        raise InvalidResponse("the JWKS document has no \"keys\" list", url=url)
    keys = []
    for entry in entries:
        # RFC 7517 §4.2: "use" "enc" keys are for encryption, never for checking a signature.
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(jwk.import_key(entry))
        except Exception:  # noqa: S112 - a key type joserfc does not know cannot sign our token
            continue
    return keys


def fetch_jwks_flow(uri: str) -> Flow[list[Any]]:
    """The signing keys of a JWKS document (RFC 7517 §5)."""
    response = yield from send(HttpRequest("GET", uri, headers={"Accept": "application/json"},
                                           purpose="JWKS endpoint"))
    if response.status != 200:
        raise InvalidResponse(f"the JWKS endpoint answered HTTP {response.status}", url=uri,
                              status=response.status)
    return _import_keys(response.json_object("JWKS endpoint"), uri)


def _segment(part: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (ValueError, TypeError):
        raise InvalidIdToken(f"the id_token {what} is not base64url") from None
    value = _json(raw, what)
    if not isinstance(value, dict):
        raise InvalidIdToken(f"the id_token {what} is not a JSON object")
    return value


def _json(raw: bytes, what: str) -> Any:
    try:
        return loads(raw)
    except JsonError as exc:
        raise InvalidIdToken(f"the id_token {what} cannot be read as JSON: {exc.reason}") from None


def _pick(keys: list[Any], kid: str | None, alg: str) -> Any | None:
    """The key that signed the token: the one with its ``kid``, or with no kid the only key of the
    algorithm's type."""
    if kid is not None:
        return next((k for k in keys if k.kid == kid), None)
    kty = {"R": "RSA", "P": "RSA", "E": "EC"}.get(alg[0], "OKP")
    candidates = [k for k in keys if k.key_type == kty]
    return candidates[0] if len(candidates) == 1 else None


def _verify_signature(token: Secret[str], key: Any, alg: str) -> dict[str, Any]:
    from joserfc import jws
    from joserfc.errors import ExceededSizeError, JoseError

    try:
        signature = jws.deserialize_compact(token.reveal(), key, algorithms=[alg])
    except ExceededSizeError as exc:
        # joserfc's own limits (a 512-byte header, a 128,000-byte payload), checked first.
        raise InvalidIdToken(f"the id_token is too large to check ({exc.description})") from None
    except JoseError as exc:
        raise InvalidIdToken(f"the id_token signature is not valid ({exc.__class__.__name__})") \
            from None
    claims = _json(signature.payload, "payload")
    if not isinstance(claims, dict):
        raise InvalidIdToken("the id_token payload is not a JSON object")
    return claims


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        # OIDC Core §2: exp and iat are REQUIRED, "a JSON number representing the number of
        # seconds from 1970-01-01T0:0:0Z".
        raise InvalidIdToken(f"the id_token has no numeric {name} claim")
    return float(value)


def check_claims(
    claims: Mapping[str, Any], *, issuer: str, client_id: str, nonce: str | None, now: float,
    clock_skew: float = DEFAULT_CLOCK_SKEW, trusted_audiences: Collection[str] = (),
) -> None:
    """The claim checks of OIDC Core §3.1.3.7 (steps 2-5, 9-11), on claims whose signature holds."""
    # Step 2: "The Issuer Identifier for the OpenID Provider ... MUST exactly match the value of the
    # iss (issuer) Claim."
    # Entra ID's multi-tenant issuer is a template ("https://login.microsoftonline.com/{tenantid}/
    # v2.0") that no iss can equal: its ID Tokens name the real tenant, a GUID in its place, and
    # that is accepted (keyturn.protocol.tenants says why, and what it means); any other issuer
    # must be matched exactly.
    if not iss_matches(issuer, claims.get("iss")):
        raise InvalidIdToken("the id_token was issued by another issuer (iss does not match)")
    # Step 3: "The Client MUST validate that the aud (audience) Claim contains its client_id value
    # ... or if it contains additional audiences not trusted by the Client."
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise InvalidIdToken("the id_token is for another client (aud does not name this client)")
    untrusted = [a for a in audiences if a != client_id and a not in trusted_audiences]
    if untrusted:
        raise InvalidIdToken("the id_token names audiences this client does not trust")
    # Steps 4-5: "If the ID Token contains multiple audiences, the Client SHOULD verify that an azp
    # Claim is present." "If an azp (authorized party) Claim is present, the Client SHOULD verify
    # that its client_id is the Claim Value."
    azp = claims.get("azp")
    if (len(audiences) > 1 and azp is None) or (azp is not None and azp != client_id):
        raise InvalidIdToken("the id_token was issued to another party (azp)")
    # Step 9: "The current time MUST be before the time represented by the exp Claim (possibly
    # allowing for some small leeway to account for clock skew)."
    if now >= _number(claims, "exp") + clock_skew:
        raise InvalidIdToken("the id_token has expired (exp)")
    # Step 10: "The iat Claim can be used to reject tokens that were issued too far away from the
    # current time": one issued in the future is refused.
    if _number(claims, "iat") > now + clock_skew:
        raise InvalidIdToken("the id_token was issued in the future (iat): check the clock")
    # §2: "sub REQUIRED. Subject Identifier."
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidIdToken("the id_token has no sub claim")
    # Step 11: "If a nonce value was sent in the Authentication Request, a nonce Claim MUST be
    # present and its value checked to verify that it is the same value as the one that was sent".
    if nonce is not None and claims.get("nonce") != nonce:
        raise InvalidIdToken("the id_token nonce does not match the one sent (replayed token?)")


def _shape(id_token: Secret[str]) -> tuple[int, str, bool]:
    """How many JWS segments the token has, its header segment, and whether it is signed."""
    parts = id_token.reveal().split(".")
    return len(parts), parts[0], len(parts) == 3 and bool(parts[2])


def validate_id_token_flow(
    id_token: str | Secret[str], *, metadata: ServerMetadata, client_id: str, now: float,
    nonce: str | None = None, keys: KeySetCache | None = None,
    algorithms: Collection[str] = DEFAULT_ALGORITHMS, clock_skew: float = DEFAULT_CLOCK_SKEW,
    trusted_audiences: Collection[str] = (), access_token: str | Secret[str] | None = None,
) -> Flow[dict[str, Any]]:
    """Validate an ID Token issued by ``metadata.issuer`` to ``client_id``; return its claims.

    With ``access_token`` (the one that came with the ID Token), an ``at_hash`` claim must match
    it (:func:`check_at_hash`). Raises :class:`~keyturn.errors.InvalidIdToken` naming the first
    check that failed (never showing the token, nor holding it in a local other than a Secret:
    this frame is in the traceback). ``keys`` caches JWKS documents between calls.
    """
    id_token = Secret.wrap(id_token)
    access_token = Secret.optional(access_token)
    if "none" in algorithms:
        raise InvalidIdToken("alg 'none' cannot be allowed for id_tokens")
    segments, first, signed = _shape(id_token)
    if segments != 3:
        raise InvalidIdToken("the id_token is not a signed JWT (JWS compact serialization)")
    header = _segment(first, "header")
    alg = header.get("alg")
    # OIDC Core §2: "ID Tokens MUST NOT use none as the alg value unless ... the Response Type ...
    # returns no ID Token from the Authorization Endpoint" — and keyturn never takes that path.
    if not isinstance(alg, str) or alg == "none" or alg not in algorithms:
        raise InvalidIdToken(f"the id_token alg {str(alg)[:20]!r} is not allowed "
                             f"(allowed: {', '.join(algorithms)})")
    if not signed:
        raise InvalidIdToken("the id_token has no signature")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    uri = metadata.jwks_uri
    if not uri:
        raise InvalidIdToken(f"issuer {metadata.issuer} publishes no jwks_uri: the id_token "
                             "signature cannot be checked")
    cache = keys if keys is not None else KeySetCache()
    key_set = cache.get(uri)
    fetched = key_set is None
    if key_set is None:
        key_set = yield from fetch_jwks_flow(uri)
        cache.put(uri, key_set)
    key = _pick(key_set, kid, alg)
    if key is None and not fetched:
        # An unknown kid usually means the provider rotated its keys since we cached them: fetch
        # once more, and only once, so a token with a made-up kid cannot make us fetch forever.
        key_set = yield from fetch_jwks_flow(uri)
        cache.put(uri, key_set)
        key = _pick(key_set, kid, alg)
    if key is None:
        raise InvalidIdToken(f"no key of the issuer's JWKS matches the id_token (kid {kid!r})")
    claims = _verify_signature(id_token, key, alg)
    check_claims(claims, issuer=metadata.issuer, client_id=client_id, nonce=nonce, now=now,
                 clock_skew=clock_skew, trusted_audiences=trusted_audiences)
    if access_token is not None:
        check_at_hash(claims, access_token, alg)
    return claims


#: OIDC Core §3.1.3.6: the hash "used in the alg Header Parameter of the JOSE Header"; Ed25519
#: signs with SHA-512 (OpenID Connect Core errata set 2, at_hash for EdDSA).
_AT_HASHES: Final = {"256": "sha256", "384": "sha384", "512": "sha512"}


def check_at_hash(claims: Mapping[str, Any], access_token: Secret[str], alg: str) -> None:
    """OIDC Core §3.1.3.8 (§3.2.2.9): "If the ID Token contains an at_hash Claim, the Client MAY
    use it to validate the Access Token": "Hash the octets of the ASCII representation of the
    access_token with the hash algorithm specified in JWA ... Take the left-most half of the
    hash and base64url-encode it. The value of at_hash in the ID Token MUST match"."""
    expected = claims.get("at_hash")
    if expected is None:
        return
    name = "sha512" if alg in ("EdDSA", "Ed25519") else _AT_HASHES.get(alg[-3:])
    if name is None or not isinstance(expected, str):
        raise InvalidIdToken("the id_token at_hash cannot be checked for its alg")
    digest = hashlib.new(name, access_token.reveal().encode("ascii", "replace")).digest()
    actual = base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()
    if not hmac.compare_digest(actual, expected):
        raise InvalidIdToken("the id_token at_hash does not match the access token it came with")
