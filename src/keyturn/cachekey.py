"""The source identity: the cache key of a source's tokens, and the file name a FileStore gives it.

Kept apart, with nothing but hashlib and json, because two callers must agree on it bit for bit:
:class:`keyturn.sources.base.Source` (which stores tokens under it) and a profile
(:meth:`keyturn.config.Profile.cache_key`, which ``keyturn token``'s fast path uses to find them
without importing the HTTP stack). So the facts the key is made of that a profile has to derive
the same way as a source live here too: the client authentication method chosen when none is
given (:func:`auth_method_for`, which :meth:`keyturn.protocol.client_auth.ClientAuth.create`
uses), and the subject of a refresh-token source (:func:`refresh_subject`).

Changing what goes into :func:`cache_key` changes every stored token's key, so the tokens saved
before are no longer found: tests/unit/test_cachekey.py pins the value for fixed configurations.
"""

from __future__ import annotations

import hashlib
import json

# Not ``typing`` / ``collections.abc``: importing them costs the fast path milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["auth_method_for", "cache_key", "file_name", "refresh_subject"]


def auth_method_for(auth_method: str | None, *, client_secret: object, private_key: object,
                    has_client_cert: bool) -> str:
    """``auth_method`` when given, else the method the given credentials call for: a private key
    signs a JWT, a secret goes in HTTP Basic (RFC 6749 §2.3.1: "The authorization server MUST
    support the HTTP Basic authentication scheme"), a certificate is mutual TLS (RFC 8705), and
    nothing is a public client."""
    if auth_method:
        return auth_method
    if private_key is not None:
        return "private_key_jwt"
    if client_secret:
        return "client_secret_basic"
    if has_client_cert:
        return "tls_client_auth"
    return "none"


def refresh_subject(refresh_token: str) -> str:
    """The subject of a refresh-token source: the initial refresh token's tag (never the token)."""
    return f"rt:{hashlib.sha256(refresh_token.encode()).hexdigest()[:8]}"


def _items(value: str | Iterable[str]) -> list[str]:
    return value.split() if isinstance(value, str) else [s for part in value for s in part.split()]


def cache_key(
    *,
    issuer: str | None,
    token_endpoint: str | None,
    client_id: str | None,
    auth_method: str,
    grant: str,
    subject: str | None,
    scope: str | Iterable[str] | None,
    default_scope: Iterable[str],
    audience: str | None,
    resource: str | Iterable[str] | None,
    extra: Mapping[str, str] | None,
) -> str:
    """Everything that changes the token, so two configurations never share one. Every argument
    is required: a caller that left one out would derive another key and lose its saved tokens.

    ``auth_method`` is the chosen one (:func:`auth_method_for`); ``scope`` as given (a string or
    strings, space-separated), ``default_scope`` standing in for None; order and repeats of the
    scope and the resources do not matter.
    """
    parts = {
        "issuer": issuer.rstrip("/") if issuer else None,
        "token_endpoint": token_endpoint,
        "client_id": client_id,
        "auth_method": auth_method,
        "grant": grant,
        "subject": subject,
        "scope": sorted(set(_items(default_scope if scope is None else scope))),
        "audience": audience,
        "resource": sorted(set([resource] if isinstance(resource, str) else resource or [])),
        "extra": sorted((extra or {}).items()),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"keyturn:v1:{digest[:32]}"


def file_name(key: str) -> str:
    """The FileStore's name (without suffix) for the record of ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]
