"""The cache key of a source's tokens, and the file name a FileStore gives it.

Kept apart, with nothing but hashlib and json, because two callers must agree on it bit for bit:
:class:`keyturn.sources.base.Source` (which stores tokens under it) and ``keyturn token``'s fast
path (which must find them without importing the HTTP stack).
"""

from __future__ import annotations

import hashlib
import json

# Not ``typing`` / ``collections.abc``: importing them costs the fast path milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["cache_key", "file_name"]


def cache_key(
    *,
    issuer: str | None,
    token_endpoint: str | None,
    client_id: str | None,
    auth_method: str,
    grant: str,
    subject: str | None,
    scope: Iterable[str],
    audience: str | None,
    resource: Iterable[str],
    extra: Mapping[str, str],
) -> str:
    """Everything that changes the token, so two configurations never share one."""
    parts = {
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "client_id": client_id,
        "auth_method": auth_method,
        "grant": grant,
        "subject": subject,
        "scope": sorted(scope),
        "audience": audience,
        "resource": list(resource),
        "extra": sorted(extra.items()),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"keyturn:v1:{digest[:32]}"


def file_name(key: str) -> str:
    """The FileStore's name (without suffix) for the record of ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]
