"""Tokens in Redis, shared by every process on every host: the records, their lifetimes, the calls.

Layout, per cache key (``<d>`` is a digest of the key, in braces so that both keys of one token
hash to the same Redis Cluster slot)::

    <prefix>:{<d>}:lock       the lock: a random owner id, SET NX PX <lease>
    <prefix>:{<d>}:lock:free  the release signal: waiters block on it (BLPOP), a release pushes it
    <prefix>:{<d>}:token      a hash: record (the Token.to_record() JSON), key (the cache key), fence
                              (the fence of the record's writer), issued (the last fence handed out)

Theory of operation
-------------------
The lock on a key, and the fences that keep a stalled holder from overwriting a newer token, are
:mod:`keyturn.stores.redis.lock`'s (its docstring tells how); a save here passes the fence of the
lock its thread or task holds (:func:`~keyturn.stores.redis.lock.held_fence`) to the write script
(:mod:`keyturn.stores.redis.scripts`), which refuses it when a newer writer got there first.

* **Expiry.** A record expires ``retention`` seconds after the last moment anyone could need it:
  its access token's expiry, or, when it holds a refresh token, the refresh token's expiry — or
  ``idle_ttl`` (default 90 days, renewed by every save) when the server did not say when the
  refresh token expires (refresh tokens commonly live until some weeks of idleness).
* **Failures.** Redis unreachable: :class:`~keyturn.errors.StoreError` naming the URL without its
  password. With ``fallback="memory"`` the store instead warns once and keeps tokens per process
  until Redis answers again (tried every ``retry_after`` seconds).

Sync and async: one sync client and one connection pool serve both. The async twins run the Redis
calls in a worker thread (the base class's ``to_thread``), because redis-py's asyncio connections
belong to the event loop that opened them while a source may serve several loops, and because the
store is touched only on a refresh, where a thread hop costs nothing next to a token request.

redis-py is imported when a store is made, never when this module is: importing keyturn must not
import it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from ... import strictjson
from ...errors import ConfigError, StoreError, safe_url
from ...secret import Secret
from ...token import Token
from ..base import Store
from ..memory import MemoryStore
from . import scripts as lua
from .lock import RedisLock, held_fence

__all__ = ["RedisStore"]

# The package's one logger, as before the split: callers filter on "keyturn.stores.redis".
log = logging.getLogger("keyturn.stores.redis")
T = TypeVar("T")

#: How long a release signal that no waiter took stays (milliseconds).
_SIGNAL_MS: Final = 1000


class RedisStore(Store):
    """Tokens in Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``), under ``prefix``.

    ``lease``: seconds a lock lives without renewal, so the longest a dead holder blocks the
    others (renewed while its holder lives, for up to ``max_hold`` seconds). ``retention``: seconds
    a record is kept after its last token (access, or refresh when present) expires; ``idle_ttl``:
    how long a record with a refresh token of unknown lifetime is kept after its last save.
    ``fallback="memory"``: when Redis is unreachable, warn once and keep tokens in this process.
    ``socket_timeout``: seconds before a Redis call that gets no answer fails.
    """

    shared = True

    def __init__(
        self,
        url: str | Secret[str],
        prefix: str = "keyturn",
        *,
        lease: float = 30.0,
        max_hold: float = 1800.0,
        retention: float = 3600.0,
        idle_ttl: float = 90 * 86400.0,
        fallback: Literal["memory"] | None = None,
        retry_after: float = 30.0,
        socket_timeout: float = 5.0,
    ) -> None:
        # First: the URL may hold the password, and every ConfigError below shows this frame.
        url = Secret.wrap(url)
        if fallback not in (None, "memory"):
            raise ConfigError("RedisStore(fallback=...) must be None or 'memory'")
        if lease <= 0 or max_hold < 0 or retention < 0 or idle_ttl <= 0:
            raise ConfigError("RedisStore: lease and idle_ttl must be positive, max_hold and "
                              "retention zero or more")
        self.url = safe_url(url.reveal())
        self.prefix = prefix
        self.lease = lease
        self.max_hold = max_hold
        self.retention = retention
        self.idle_ttl = idle_ttl
        self.fallback = fallback
        self.retry_after = retry_after
        self._identity = f"{self.url}|{prefix}"
        self._secrets = _url_secrets(url)
        self._client = _make_client(url, socket_timeout, self.url)
        self._acquire_script = self._client.register_script(lua.ACQUIRE)
        self._renew_script = self._client.register_script(lua.RENEW)
        self._release_script = self._client.register_script(lua.RELEASE)
        self._write_script = self._client.register_script(lua.WRITE)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._memory = MemoryStore()
        self._down_until = 0.0  # monotonic; while in the future, the fallback serves
        self._warned = False

    def __repr__(self) -> str:
        # getattr: also for a store whose __init__ raised (a traceback with locals shows it).
        return f"RedisStore({getattr(self, 'url', None)!r}, prefix={getattr(self, 'prefix', None)!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a RedisStore holds the Redis password and cannot be pickled; "
                        "create one per process from its URL")

    def close(self) -> None:
        """Close the connections to Redis."""
        self._client.close()

    # -- names and Redis calls ------------------------------------------------------------------------

    def _names(self, key: str) -> tuple[str, str]:
        """The lock and the record of ``key`` (the release signal is the lock's name + ``:free``)."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        return f"{self.prefix}:{{{digest}}}:lock", f"{self.prefix}:{{{digest}}}:token"

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and tokens are kept in this process instead."""
        return time.monotonic() < self._down_until

    def _call(self, call: Callable[..., T], *args: Any, default: T) -> T:
        """``call(*args)`` against Redis; on a connection failure, the fallback's ``default``
        (after one warning) when configured, else a StoreError naming the URL."""
        import redis.exceptions as rex

        if self.fallback is not None and self.degraded:
            return default
        try:
            result = call(*args)
        except (rex.AuthenticationError, getattr(rex, "AuthorizationError", rex.AuthenticationError)
                ) as exc:
            raise StoreError(f"Redis at {self.url} refused keyturn's credentials: "
                             f"{self._scrub(exc)}") from None
        except (rex.ConnectionError, rex.TimeoutError) as exc:
            if self.fallback is None:
                raise StoreError(f"Redis at {self.url} is unreachable ({type(exc).__name__}: "
                                 f"{self._scrub(exc)}); check the URL and that Redis is running, "
                                 "or pass fallback='memory'") from None
            self._down_until = time.monotonic() + self.retry_after
            if not self._warned:
                self._warned = True
                log.warning("Redis at %s is unreachable (%s): keyturn keeps tokens in this process "
                            "until it answers again, so each process may request its own tokens",
                            self.url, type(exc).__name__)
            return default
        except rex.RedisError as exc:
            raise StoreError(f"Redis at {self.url} failed: {type(exc).__name__}: "
                             f"{self._scrub(exc)}") from None
        if self._warned:
            self._warned = False
            log.warning("Redis at %s answers again; keyturn shares tokens through it again", self.url)
        return result

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc)
        for secret in self._secrets:
            text = text.replace(secret.reveal(), "***")
        return text[:300]

    def _acquire_remote(self, names: tuple[str, str], owner: str) -> int | None:
        fence = self._acquire_script(keys=list(names),
                                     args=[owner, _ms(self.lease), _ms(self._hash_floor())])
        return None if fence is None else int(fence)

    def _renew_remote(self, names: tuple[str, str], owner: str) -> bool:
        return bool(self._renew_script(keys=list(names),
                                       args=[owner, _ms(self.lease), _ms(self._hash_floor())]))

    def _release_remote(self, names: tuple[str, str], owner: str) -> None:
        self._release_script(keys=[names[0], f"{names[0]}:free"], args=[owner, _SIGNAL_MS])

    def _wait_for_release(self, names: tuple[str, str], timeout: float) -> None:
        """Block until a holder releases ``names``'s lock, or ``timeout`` seconds (jittered)."""
        timeout = random.uniform(timeout / 2, timeout)  # noqa: S311 - jitter, not security
        self._call(self._client.blpop, [f"{names[0]}:free"], timeout, default=None)

    def _hash_floor(self) -> float:
        # The hash holds the fence counter: it must outlive any lock on it.
        return max(self.retention, 4 * self.lease)

    def _write(self, key: str, record: str, ttl: float) -> bool:
        names = self._names(key)
        fence = held_fence(self._identity, names[1])
        written = self._write_script(
            keys=[names[1]],
            args=[record, key, "" if fence is None else str(fence), _ms(max(ttl, self._hash_floor()))],
        )
        if not written:
            log.warning("a token was not %s Redis at %s: this process's lock had expired and "
                        "another process saved a newer one (the lease is %.0f s)",
                        "saved to" if record else "deleted from", self.url, self.lease)
        return bool(written)

    def ttl(self, token: Token, now: float) -> float:
        """Seconds to keep ``token``'s record: until nobody can need it, plus ``retention``."""
        if token.refresh_token and token.refresh_expires_at is None:
            return self.idle_ttl
        ends = [t for t in (token.expires_at, token.refresh_expires_at if token.refresh_token else None)
                if t is not None]
        if not ends:
            return self.idle_ttl  # a token that never expires
        return max(0.0, max(ends) - now) + self.retention

    # -- Store ----------------------------------------------------------------------------------------

    def load(self, key: str) -> Token | None:
        name = self._names(key)[1]
        miss = object()
        found = self._call(self._client.hmget, name, ["record", "key"], default=miss)
        if found is miss:
            return self._memory.load(key)
        assert isinstance(found, list)
        data, stored_key = found
        if data is None:
            return None
        try:
            # bytes, or str when the URL asks for decode_responses
            if stored_key is None or _text(stored_key) != key:
                raise ValueError("a record of another cache key")
            return Token.from_record(strictjson.loads(data, as_written=True))
        # JsonError is a ValueError (nested too deep, not JSON); RecursionError, as in FileStore.
        except (ValueError, TypeError, AttributeError, RecursionError, StoreError) as exc:
            log.warning("the token record %s in Redis at %s is damaged (%s); ignoring it", name,
                        self.url, type(exc).__name__)
            return None

    def save(self, key: str, token: Token) -> None:
        record = json.dumps(token.to_record(), separators=(",", ":"))
        written = self._call(self._write, key, record, self.ttl(token, time.time()), default=False)
        if not written and self.degraded:
            self._memory.save(key, token)

    def delete(self, key: str) -> None:
        self._memory.delete(key)
        self._call(self._write, key, "", 0.0, default=False)

    def lock(self, key: str) -> RedisLock:
        with self._guard:
            local = self._locks.setdefault(key, threading.Lock())
        return RedisLock(self, key, local)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _url_secrets(url: Secret[str]) -> tuple[Secret[str], ...]:
    """The password (and user name) in a Redis URL, to scrub from error messages."""
    try:
        parts = urlsplit(url.reveal())
        found = [parts.password, parts.username]
        found += parse_qs(parts.query).get("password", [])
    except ValueError:
        return ()
    values = {v for f in found if f for v in (f, unquote(f))}
    return tuple(Secret(v) for v in sorted(values, key=len, reverse=True))


def _make_client(url: Secret[str], socket_timeout: float, shown: str) -> Any:
    try:
        import redis
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError("RedisStore needs the redis package: pip install 'keyturn[redis]'") from None
    try:
        return redis.Redis.from_url(
            url.reveal(), socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            # A down Redis must be reported in well under a second, not after redis-py's default
            # ten retries.
            retry=Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.02), 2),
        )
    except ValueError:
        raise ConfigError(f"RedisStore: {shown} is not a Redis URL (redis://, rediss://, unix://)"
                          ) from None
