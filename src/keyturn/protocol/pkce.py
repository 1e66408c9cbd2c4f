"""Proof Key for Code Exchange (RFC 7636), S256 only.

The client makes a random ``code_verifier``, sends its SHA-256 hash (``code_challenge``) with the
authorization request, and the verifier itself with the code exchange: a code intercepted on its
way back to a native app (another program on the same loopback port, a malicious app registered for
the same URL scheme) is useless without the verifier, which never left this process.

Only ``S256`` is offered. RFC 7636 §4.2: "If the client is capable of using "S256", it MUST use
"S256", as "S256" is Mandatory To Implement (MTI) on the server." Every Python can hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import ConfigError

__all__ = ["METHOD", "Pkce", "code_challenge", "make_verifier"]

METHOD: Final = "S256"

# RFC 7636 §4.1: code-verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def make_verifier(entropy_bytes: int = 32) -> str:
    """A fresh code verifier.

    RFC 7636 §4.1: "It is RECOMMENDED that the output of a suitable random number generator be used
    to create a 32-octet sequence. The octet sequence is then base64url-encoded to produce a
    43-octet URL safe string to use as the code verifier."
    """
    if not 32 <= entropy_bytes <= 96:
        # 32 bytes give the 43-character minimum, 96 bytes the 128-character maximum.
        raise ConfigError("a PKCE verifier needs between 32 and 96 random bytes")
    return base64.urlsafe_b64encode(secrets.token_bytes(entropy_bytes)).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``.

    RFC 7636 §4.2: "S256 code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))", where
    BASE64URL-ENCODE is base64url "with all trailing '=' characters omitted" (§3).
    """
    # RFC 7636 §4.1: "code_verifier = high-entropy cryptographic random STRING using the unreserved
    # characters [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~" ..., with a minimum length of 43
    # characters and a maximum length of 128 characters."
    if not _VERIFIER.fullmatch(verifier):
        raise ConfigError(
            "a PKCE code_verifier must be 43 to 128 characters from A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)"
        )
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Pkce:
    """A verifier and its challenge. The verifier is a secret until the code is exchanged."""

    verifier: str = field(repr=False)
    challenge: str
    method: str = METHOD

    def __reduce__(self) -> Any:
        raise TypeError("a PKCE pair holds a secret verifier and cannot be pickled")

    @classmethod
    def create(cls, verifier: str | None = None) -> Pkce:
        verifier = make_verifier() if verifier is None else verifier
        return cls(verifier=verifier, challenge=code_challenge(verifier))

    def authorization_params(self) -> dict[str, str]:
        """What the authorization request carries (RFC 7636 §4.3)."""
        return {"code_challenge": self.challenge, "code_challenge_method": self.method}
