"""The source identity: the cache key of a source's tokens, and the file name a FileStore gives it.

Kept apart, with nothing but hashlib and json, because two callers must agree on it bit for bit:
:class:`keyturn.sources.base.Source` (which stores tokens under it) and a profile
(:meth:`keyturn.config.Profile.cache_key`, which ``keyturn token``'s fast path uses to find them
without importing the HTTP stack). So the subject of a refresh-token source
(:func:`refresh_subject`), which a profile has to derive the same way as a source, lives here
too. The client authentication method chosen when none is given is a protocol rule (RFC 6749
§2.3.1): both callers take it from :func:`keyturn.protocol.wire.auth_method_for`.

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

__all__ = ["cache_key", "file_name", "refresh_subject"]


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
    account: str | None,
) -> str:
    """Everything that changes the token, so two configurations never share one. Every argument
    is required: a caller that left one out would derive another key and lose its saved tokens.

    ``auth_method`` is the chosen one (:func:`keyturn.protocol.wire.auth_method_for`); ``scope``
    as given (a string or strings, space-separated), ``default_scope`` standing in for None;
    order and repeats of the scope and the resources do not matter. ``account`` (a local name for
    one of several logins at one provider) is in the key only when given, so the keys of the
    logins saved before accounts existed stay what they were.
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
    if account is not None:
        parts["account"] = account
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"keyturn:v1:{digest[:32]}"


def file_name(key: str) -> str:
    """The FileStore's name (without suffix) for the record of ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]
