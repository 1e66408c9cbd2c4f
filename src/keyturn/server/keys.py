"""The server's signing keys at rest: the keyring in the storage, its encryption, its rotation.

The keyring is one setting (``signing_key``: a SQLite row, or the Redis key
``keyturn-server:setting:signing_key``) holding every key still published, newest first: the
newest signs, the retired ones stay in the JWKS until every token they signed has expired, then
are dropped. Every replica reads the same setting, and changes go through a compare-and-set
(:meth:`~.storage.base.ServerStorage.replace_setting`), so two replicas rotating at once make one
new key, not two.

With a key-encryption key (the configuration's ``signing_key_secret_env`` names the environment
variable holding it) the setting is AES-256-GCM ciphertext, decrypted in memory only; whoever
reads the database or Redis without the variable gets no private key. Without one, the private
keys are stored as plain JWK JSON, protected only by the database file's 0600 mode or by Redis'
access control.

Each key is of the type the configuration's ``signing_alg`` asks for: an RSA 2048 key for RS256
(the default), a P-256 key for ES256. Changing ``signing_alg`` is a rotation: at the next read
of the ring a key of the new type signs, and the old one stays published (with its own ``alg``)
until every token it signed has expired. A replica signs with the newest published key of its
own ``signing_alg``: during a rolling change, one still on the old type goes on signing with the
key the other retired (and keeps it published while it does), so the replicas do not rotate the
ring back and forth at each read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwk
from joserfc.errors import JoseError

from .. import strictjson
from ..errors import ConfigError, KeyturnError, StoreError
from .config import ServerConfig
from .storage.base import ServerStorage

__all__ = ["KeyEncryptionKey", "KeyPolicy", "KeyStore", "Keyring", "ReadOffTheLoop", "SigningKey",
           "parse_kek", "policy_for", "unreadable"]

logger = logging.getLogger("keyturn.server.keys")

SETTING: Final = "signing_key"
#: How a sealed keyring starts: the format is named so that a plain one is never mistaken for it.
SEALED_PREFIX: Final = "keyturn-sealed:v1:"
#: Binds the ciphertext to its place: a sealed value copied into another setting does not open.
_AAD: Final = b"keyturn-server signing keyring v1"
#: How often a replica re-reads the keyring (to sign with a key another process rotated in, and
#: to run a scheduled rotation). A retired key is kept this much longer than the token lifetime,
#: since a replica may still sign with it until its next read.
REFRESH_SECONDS: Final = 30.0
#: A token naming a kid this replica does not hold re-reads the ring at once (another replica may
#: have rotated), but at most this often: made-up kids cannot turn every request into a read.
UNKNOWN_KID_REFRESH_SECONDS: Final = 1.0
RSA_BITS: Final = 2048
#: A private key of the ring, of one of the types of ``config.SIGNING_ALGS``.
PrivateJWK = jwk.RSAKey | jwk.ECKey


def parse_kek(text: str, variable: str) -> bytes:
    """A 256-bit key written in base64 (standard or URL-safe, padding optional)."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(
            cleaned.replace("+", "-").replace("/", "_") + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        # The value itself is never shown: it is a secret, even when malformed.
        raise ConfigError(f"{variable} must hold a 256-bit key in base64 (make one with "
                          "`openssl rand -base64 32`)")
    return raw


class KeyEncryptionKey:
    """Seals and opens the keyring.

    AES-GCM rather than Fernet: it takes a full 256-bit key (Fernet's AES-128-CBC uses half of
    its 32 bytes for HMAC), and its associated data binds the ciphertext to this one setting.
    A fresh random 96-bit nonce per seal is safe far beyond the few writes a keyring sees
    (NIST SP 800-38D §8.3 bounds random nonces at 2**32 encryptions per key).
    """

    def __init__(self, key: bytes, variable: str) -> None:
        self._aead = AESGCM(key)
        self.variable = variable

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(from ${self.variable})"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn KeyEncryptionKey is a secret and cannot be pickled")

    @classmethod
    def from_env(cls, variable: str) -> KeyEncryptionKey:
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"signing_key_secret_env names {variable}, which is not set: the "
                              "signing keys are encrypted with the key it holds")
        return cls(parse_kek(value, variable), variable)

    def seal(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode(), _AAD)
        return SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode()

    def open(self, stored: str) -> str:
        try:
            sealed = base64.urlsafe_b64decode(stored[len(SEALED_PREFIX):])
            return self._aead.decrypt(sealed[:12], sealed[12:], _AAD).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise ConfigError(f"the signing keys in the server's storage do not decrypt with the "
                              f"key in {self.variable}: a wrong key-encryption key, or damaged "
                              "data") from None


@dataclass(frozen=True)
class KeyPolicy:
    """What the configuration says about the keys: how they are sealed, when they are rotated,
    and how long a retired key is kept (the longest token lifetime)."""

    kek: KeyEncryptionKey | None = None
    rotate_every: int | None = None
    retention: int = 600
    #: What a new key signs with (``signing_alg``); a ring holding no published key of this
    #: type is rotated.
    alg: str = "RS256"


@dataclass(frozen=True)
class SigningKey:
    """One key of the ring. ``retired_at`` is set once another key signs instead; ``drop_at`` is
    when every token it signed has expired. Its repr shows no key material."""

    key: PrivateJWK
    created_at: float
    retired_at: float | None = None
    drop_at: float | None = None

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    @property
    def alg(self) -> str:
        """What this key signs with: RS256 for an RSA key, ES256 for a P-256 one."""
        return alg_of(self.key)

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r}, retired_at={self.retired_at!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"jwk": dict(self.key.as_dict(private=True)), "created_at": self.created_at,
                "retired_at": self.retired_at, "drop_at": self.drop_at}


def alg_of(key: PrivateJWK) -> str:
    return "ES256" if isinstance(key, jwk.ECKey) else "RS256"


def signing_key(keys: Sequence[SigningKey], alg: str, now: float) -> SigningKey | None:
    """The key a replica configured for ``alg`` signs with: the newest of that type still
    published (retired or not), None if there is none."""
    return next((key for key in keys if key.alg == alg and (key.drop_at is None or key.drop_at > now)),
                None)


def _new_key(now: float, alg: str = "RS256") -> SigningKey:
    # The kid is the RFC 7638 thumbprint, as before rotation existed.
    key: PrivateJWK
    if alg == "ES256":
        key = jwk.ECKey.generate_key("P-256", private=True, auto_kid=True)
    else:
        key = jwk.RSAKey.generate_key(RSA_BITS, private=True, auto_kid=True)
    return SigningKey(key, created_at=now)


def _import(data: Any) -> PrivateJWK:
    kind: type[jwk.RSAKey] | type[jwk.ECKey] = jwk.RSAKey
    if isinstance(data, dict) and data.get("kty") == "EC":
        if data.get("crv") != "P-256":
            raise TypeError("only P-256 EC keys sign (ES256)")
        kind = jwk.ECKey
    key: PrivateJWK = kind.import_key(data)
    if not key.is_private:
        raise TypeError("a public key cannot sign")
    if key.kid:
        return key
    with_kid: PrivateJWK = kind.import_key(data, {"kid": key.thumbprint()})
    return with_kid


def _damaged(exc: BaseException) -> StoreError:
    # Named by class only: the text of a key error could quote key material.
    return StoreError("the signing key in the server's storage is damaged "
                      f"({exc.__class__.__name__})")


def unreadable(store: KeyStore, exc: BaseException) -> StoreError:
    """The backend's own error (redis-py's, sqlite3's) as one clear line: named by class, with the
    storage's repr (never a Redis password)."""
    return StoreError(f"cannot read the signing keys from {store.storage_name} "
                      f"({exc.__class__.__name__})")


def decode_keyring(plain: str) -> list[SigningKey]:
    """The keyring document; a bare JWK (what keyturn stored before rotation) is a ring of one
    key of unknown age."""
    try:
        data = strictjson.loads(plain, as_written=True)
        if isinstance(data, dict) and "kty" in data:
            return [SigningKey(_import(data), created_at=0.0)]
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
            raise TypeError("not a keyring")
        return [SigningKey(_import(item["jwk"]), created_at=float(item["created_at"]),
                           retired_at=item.get("retired_at"), drop_at=item.get("drop_at"))
                for item in data["keys"]]
    except (strictjson.JsonError, JoseError, TypeError, KeyError, ValueError) as exc:
        raise _damaged(exc) from None


def encode_keyring(keys: Sequence[SigningKey]) -> str:
    return json.dumps({"version": 1, "keys": [key.to_dict() for key in keys]},
                      separators=(",", ":"))


class KeyStore:
    """Reads and changes the keyring in the storage, sealing it when a KEK is configured."""

    def __init__(self, storage: ServerStorage, policy: KeyPolicy) -> None:
        self._storage = storage
        self.policy = policy

    def __repr__(self) -> str:
        return f"KeyStore({self._storage!r})"

    @property
    def storage_name(self) -> str:
        """The storage as its repr shows it (without a password)."""
        return repr(self._storage)

    def _stored(self, now: float) -> str:
        return self._storage.setting(
            SETTING, lambda: self._seal(encode_keyring([_new_key(now, self.policy.alg)])))

    def _seal(self, plain: str) -> str:
        return self.policy.kek.seal(plain) if self.policy.kek is not None else plain

    def _open(self, stored: str) -> str:
        if stored.startswith(SEALED_PREFIX):
            if self.policy.kek is None:
                raise ConfigError("the signing keys in the server's storage are encrypted: set "
                                  "signing_key_secret_env in the configuration to the variable "
                                  "holding their key-encryption key")
            return self.policy.kek.open(stored)
        return stored

    def load(self, now: float) -> list[SigningKey]:
        """The ring as stored (made on the first start: the first replica wins)."""
        return decode_keyring(self._open(self._stored(now)))

    def _change(self, now: float, change: Callable[[list[SigningKey]], list[SigningKey] | None]
                ) -> list[SigningKey]:
        """Apply ``change`` to the ring by compare-and-set, again on a race; None: no change."""
        for _ in range(20):
            stored = self._stored(now)
            keys = decode_keyring(self._open(stored))
            changed = change(keys)
            plain = self.policy.kek is not None and not stored.startswith(SEALED_PREFIX)
            if plain and (changed is None or changed[0].kid == keys[0].kid):
                # A KEK was configured for a keyring stored before: seal it, and rotate, since
                # whoever copied the plaintext holds the key that signs (it retires, and leaves
                # the JWKS once its tokens have expired).
                changed = [_new_key(now, self.policy.alg),
                           *self._retire_and_prune(changed or keys, now)]
            if changed is None:
                return keys
            if self._storage.replace_setting(SETTING, stored, self._seal(encode_keyring(changed))):
                if plain:
                    logger.warning("the signing keys were stored in plaintext: now sealed with the "
                                   "key in $%s, and rotated (key %s was readable; it retires)",
                                   self.policy.kek.variable if self.policy.kek else "",
                                   keys[0].kid)
                return changed
        raise StoreError("the signing keyring changed under every attempt to update it")

    def _retire_and_prune(self, keys: list[SigningKey], now: float) -> list[SigningKey]:
        drop_at = now + self.policy.retention + REFRESH_SECONDS
        kept = [key if key.retired_at is not None else replace(key, retired_at=now, drop_at=drop_at)
                for key in keys]
        return [key for key in kept if key.drop_at is None or key.drop_at > now]

    def rotate(self, now: float | None = None) -> list[SigningKey]:
        """A new key signs from now; the others retire and stay published until their tokens
        expire. Returns the new ring, newest first."""
        moment = time.time() if now is None else now
        fresh = _new_key(moment, self.policy.alg)
        return self._change(moment, lambda keys: [fresh, *self._retire_and_prune(keys, moment)])

    def maintain(self, now: float | None = None) -> list[SigningKey]:
        """The ring after housekeeping: sealed if a KEK is configured, expired keys dropped, and
        rotated if the schedule says this replica's signing key is due or the ring holds no
        published key of ``signing_alg``'s type."""
        moment = time.time() if now is None else now

        def change(keys: list[SigningKey]) -> list[SigningKey] | None:
            every = self.policy.rotate_every
            mine = signing_key(keys, self.policy.alg, moment)
            # Not because the newest key is of another type: two replicas of different
            # signing_alg (a rolling change) would each rotate to their own at every read, a new
            # key and kid every REFRESH_SECONDS and a JWKS growing until retention (review R19 M1).
            if mine is None or (every is not None and mine.created_at + every <= moment):
                return [_new_key(moment, self.policy.alg), *self._retire_and_prune(keys, moment)]
            kept = [key for key in keys if key.drop_at is None or key.drop_at > moment]
            # A key another type's replica retired still signs here, until the next read: it
            # stays published until the tokens signed by then have expired.
            needed = moment + REFRESH_SECONDS + self.policy.retention
            if mine.drop_at is not None and mine.drop_at < needed:
                # A read's margin more, so that not every read writes.
                later = replace(mine, drop_at=needed + REFRESH_SECONDS)
                return [later if key.kid == mine.kid else key for key in kept]
            return kept if len(kept) != len(keys) else None

        return self._change(moment, change)


class ReadOffTheLoop(Exception):
    """A token names a kid the ring does not hold, and the ring may be re-read for it now, but
    the caller is on the event loop: it tries again in the threadpool, where the read is made.
    Raised before anything was counted or changed (a check of a token only reads)."""


def _on_the_event_loop() -> bool:
    return asyncio._get_running_loop() is not None


class Keyring:
    """The ring as a replica uses it: the key that signs and the keys that verify, re-read from
    the storage every :data:`REFRESH_SECONDS` (and for a token naming a kid it does not hold), so
    a rotation made by another process or replica is picked up. Reads block on the storage and
    decode every key (tens of milliseconds for RSA), so they are never made on the event loop,
    which they would hold with every other request: there a due re-read waits for the next
    request the app sends to its threadpool (it checks :meth:`refresh_due` first), and an
    unknown kid raises :class:`ReadOffTheLoop`."""

    def __init__(self, store: KeyStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._unknown_kid_read_at = -math.inf
        # At start a wrong KEK or damaged keyring raises here, before the server listens.
        try:
            self._keys, self._current = self._signing(store.maintain(clock()))
        except KeyturnError:
            raise
        except Exception as exc:  # the backend's own error: one clear line, not a traceback
            raise unreadable(store, exc) from None
        self._read_at = clock()

    def __repr__(self) -> str:
        return f"Keyring(kids={[key.kid for key in self._keys]!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn Keyring holds private keys and cannot be pickled")

    def refresh(self) -> None:
        now = self._clock()
        try:
            keys = self._store.maintain(now)
        except Exception as exc:  # keep signing with the keys read last time
            logger.warning("cannot re-read the signing keys (%s); using those read before",
                           exc.__class__.__name__)
            keys = self._keys
        keys, current = self._signing(keys)
        with self._lock:
            self._keys, self._current, self._read_at = keys, current, now

    def _signing(self, keys: list[SigningKey]) -> tuple[list[SigningKey], SigningKey]:
        # maintain() leaves a key of the configured type in the ring; the newest key otherwise
        # (never reached, but a ring is never without a key that signs).
        return keys, signing_key(keys, self._store.policy.alg, self._clock()) or keys[0]

    def refresh_due(self) -> bool:
        """Whether the next use re-reads the ring (which waits on the storage)."""
        return self._clock() - self._read_at >= REFRESH_SECONDS

    def keys(self) -> list[SigningKey]:
        # Due on the loop: the re-read fell due after the endpoint checked (it would otherwise
        # have sent the request to the threadpool); signing with the ring as read a moment ago
        # is as good, and the next request re-reads it off the loop.
        if self.refresh_due() and not _on_the_event_loop():
            self.refresh()
        return self._keys

    def knows(self, kid: str) -> bool:
        """Whether ``kid`` is in the ring; if not, the ring is re-read first (at most every
        :data:`UNKNOWN_KID_REFRESH_SECONDS`): a key another replica rotated in signs there at
        once, and its tokens are valid here too."""
        if any(key.kid == kid for key in self.keys()):
            return True
        with self._lock:
            now = self._clock()
            if now - self._unknown_kid_read_at < UNKNOWN_KID_REFRESH_SECONDS:
                return False
            if _on_the_event_loop():
                raise ReadOffTheLoop  # the second's read is left to the threadpool's try
            self._unknown_kid_read_at = now
        self.refresh()
        return any(key.kid == kid for key in self._keys)

    @property
    def current(self) -> SigningKey:
        """The key that signs: the newest published one of the configured ``signing_alg``."""
        self.keys()
        return self._current

    def published(self, *, refresh: bool = True) -> list[SigningKey]:
        """The keys that verify (and the JWKS lists): every key of the ring not yet dropped.
        ``refresh=False``: as last read, even when a re-read is due (no wait on the storage)."""
        now = self._clock()
        keys = self.keys() if refresh else self._keys
        return [key for key in keys if key.drop_at is None or key.drop_at > now]

    def verification_keys(self) -> jwk.KeySet:
        return jwk.KeySet([key.key for key in self.published()])


def policy_for(config: ServerConfig) -> KeyPolicy:
    """The key policy a server configuration sets; a named but unset or malformed KEK is a
    :class:`~keyturn.errors.ConfigError` now, at start."""
    variable = config.signing_key_secret_env
    return KeyPolicy(
        kek=KeyEncryptionKey.from_env(variable) if variable else None,
        rotate_every=config.rotate_keys_every,
        # Every token a key signed has expired this long after it stopped signing.
        retention=max(config.lifetimes.access_token, config.lifetimes.id_token),
        alg=config.signing_alg,
    )
