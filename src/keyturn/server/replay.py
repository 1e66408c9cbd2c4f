"""The answer of a redemption, sealed so that only the credential redeemed can open it again.

A client whose token answer was lost (a storage error after the commit, a dropped connection)
retries the identical request; within ``Lifetimes.retry_grace`` it gets the same answer back
(:class:`~.storage.base.Replay`) instead of the revocation a reused credential earns. The stored
answer holds live tokens, so it is encrypted (JWE, ``dir`` + A256GCM) under a key derived from
the refresh token or device code itself with HMAC-SHA256: the store keeps only the SHA-256 hash
of that credential, from which the key cannot be computed, so a copy of the database or of Redis
opens no answer. Nothing here logs, and no repr shows a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from .. import strictjson

__all__ = ["Sealer", "request_fingerprint"]

#: Domain separation: the sealing key is never the storage hash (SHA-256 of the credential).
_LABEL: Final = b"keyturn-server retry answer v1"
_HEADER: Final = {"alg": "dir", "enc": "A256GCM"}


def request_fingerprint(client_id: str, grant_type: str, scope: tuple[str, ...] | None) -> str:
    """What makes a retry *identical*: the same client, grant and requested scope."""
    text = json.dumps([client_id, grant_type, None if scope is None else list(scope)])
    return hashlib.sha256(text.encode()).hexdigest()


class Sealer:
    """Seals and opens the answers of one credential (a refresh token or a device code)."""

    def __init__(self, credential: str) -> None:
        self._key = OctKey.import_key(hmac.new(credential.encode(), _LABEL, hashlib.sha256).digest())

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn Sealer holds a key and cannot be pickled")

    def seal(self, answer: Mapping[str, Any]) -> str:
        return jwe.encrypt_compact(dict(_HEADER), json.dumps(dict(answer)).encode(), self._key)

    def open(self, sealed: str) -> dict[str, Any] | None:
        """The answer, or None when it was not sealed by this credential (or was damaged)."""
        try:
            plain = jwe.decrypt_compact(sealed, self._key).plaintext
            data = strictjson.loads((plain or b"").decode(), as_written=True)
        except (JoseError, ValueError, UnicodeDecodeError, strictjson.JsonError):
            return None
        return data if isinstance(data, dict) else None
