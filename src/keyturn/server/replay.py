"""The answer of a redemption, sealed so that only the credential redeemed can open it again.

A client whose token answer was lost (a storage error after the commit, a dropped connection)
retries the identical request; within ``Lifetimes.retry_grace`` it gets the same answer back
(:class:`~.storage.base.Replay`) instead of the revocation a reused credential earns. The stored
answer holds live tokens, so it is encrypted (JWE, ``dir`` + A256GCM) under a key derived from
the refresh token or device code itself with HMAC-SHA256: the store keeps only the SHA-256 hash
of that credential, from which the key cannot be computed, so a copy of the database or of Redis
opens no answer. Nothing here logs, and no repr shows a key.

The JWE compact serialization (RFC 7516 §7.1) is written and read here with ``cryptography``'s
AES-GCM directly: with ``dir`` there is no key to wrap, and a token answer is sealed on every
redemption, where going through a JWE library (a key object, a registry, header checks) cost
more than the encryption.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import strictjson

__all__ = ["Sealer", "request_fingerprint"]

#: Domain separation: the sealing key is never the storage hash (SHA-256 of the credential).
_LABEL: Final = b"keyturn-server retry answer v1"
_HEADER: Final = {"alg": "dir", "enc": "A256GCM"}
#: The protected header, encoded (RFC 7516 §7.1's first part, and the AAD of the encryption).
_PROTECTED: Final = base64.urlsafe_b64encode(json.dumps(_HEADER, separators=(",", ":")).encode()
                                             ).rstrip(b"=")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def request_fingerprint(client_id: str, grant_type: str, scope: tuple[str, ...] | None) -> str:
    """What makes a retry *identical*: the same client, grant and requested scope."""
    text = json.dumps([client_id, grant_type, None if scope is None else list(scope)])
    return hashlib.sha256(text.encode()).hexdigest()


class Sealer:
    """Seals and opens the answers of one credential (a refresh token or a device code)."""

    def __init__(self, credential: str) -> None:
        self._aead = AESGCM(hmac.new(credential.encode(), _LABEL, hashlib.sha256).digest())

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn Sealer holds a key and cannot be pickled")

    def seal(self, answer: Mapping[str, Any]) -> str:
        # RFC 7518 §5.3: a 96-bit IV, the 128-bit tag after the ciphertext; RFC 7516 §5.1: the
        # AAD is the encoded protected header; with "dir" the encrypted key is empty.
        iv = secrets.token_bytes(12)
        sealed = self._aead.encrypt(iv, json.dumps(dict(answer)).encode(), _PROTECTED)
        return b".".join((_PROTECTED, b"", _b64(iv), _b64(sealed[:-16]), _b64(sealed[-16:]))
                         ).decode("ascii")

    def open(self, sealed: str) -> dict[str, Any] | None:
        """The answer, or None when it was not sealed by this credential (or was damaged)."""
        parts = sealed.split(".")
        if len(parts) != 5 or parts[0] != _PROTECTED.decode() or parts[1]:
            return None
        try:
            iv, ciphertext, tag = (_unb64(part) for part in parts[2:])
            if len(iv) != 12 or len(tag) != 16:
                return None
            plain = self._aead.decrypt(iv, ciphertext + tag, _PROTECTED)
            data = strictjson.loads(plain.decode(), as_written=True)
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError, strictjson.JsonError):
            return None
        return data if isinstance(data, dict) else None
