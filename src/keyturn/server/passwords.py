"""Password and client-secret hashes, and the pluggable :class:`Authenticator` of the sign-in page.

Two hash formats are accepted, told apart by their prefix:

* ``scrypt$N$r$p$<salt b64>$<hash b64>``: :func:`hashlib.scrypt`, standard library only, made by
  :func:`hash_password` (N=2**15, r=8, p=1: about 32 MiB and 0.1 s per check on a laptop, the
  cost OWASP's password storage cheat sheet recommends);
* ``$argon2id$...``: the PHC string of argon2 (``argon2-cffi``, imported only when such a hash is
  checked), as ``argon2`` command-line tools and most identity systems make it.

Comparisons are constant-time. An unknown user still costs one hash check, so timing does not
say which user names exist.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Authenticator", "LocalUsers", "User", "hash_password", "verify_password"]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024,
                          dklen=32)


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """An scrypt hash string for the configuration file (users' passwords, clients' secrets)."""
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the hash; False for a wrong password or a malformed hash."""
    if encoded.startswith("scrypt$"):
        try:
            _, n, r, p, salt, expected = encoded.split("$")
            actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
            return hmac.compare_digest(actual, _unb64(expected))
        except (ValueError, MemoryError):
            return False
    if encoded.startswith("$argon2"):
        from argon2 import PasswordHasher
        from argon2.exceptions import Argon2Error, InvalidHashError

        try:
            return bool(PasswordHasher().verify(encoded, password))
        except (Argon2Error, InvalidHashError):
            return False
    return False


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user is unknown, so the answer takes as long as for a known one."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    """Who signed in: ``subject`` becomes the tokens' ``sub``; ``claims`` go into the id_token."""

    subject: str
    claims: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Authenticator(Protocol):
    """Checks a user name and password. A site that delegates sign-in elsewhere (LDAP, PAM, its
    own identity provider) passes its own object with this one method to ``create_app``."""

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the credentials are right, else None. Called in a worker thread."""


class LocalUsers:
    """The users of the configuration file: ``{name: (password hash, claims)}``."""

    def __init__(self, users: Mapping[str, tuple[str, Mapping[str, str]]]) -> None:
        self._users = dict(users)

    def __repr__(self) -> str:
        return f"LocalUsers({len(self._users)} users)"

    def authenticate(self, username: str, password: str) -> User | None:
        entry = self._users.get(username)
        if entry is None:
            verify_password(password, _dummy_hash())
            return None
        password_hash, claims = entry
        if not verify_password(password, password_hash):
            return None
        return User(subject=username, claims=dict(claims))
