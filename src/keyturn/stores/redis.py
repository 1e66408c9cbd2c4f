"""Tokens in Redis, shared by every process on every host, with an expiring lock and fenced writes.

Layout, per cache key (``<d>`` is a digest of the key, in braces so that both keys of one token
hash to the same Redis Cluster slot)::

    <prefix>:{<d>}:lock       the lock: a random owner id, SET NX PX <lease>
    <prefix>:{<d>}:lock:free  the release signal: waiters block on it (BLPOP), a release pushes it
    <prefix>:{<d>}:token      a hash: record (the Token.to_record() JSON), key (the cache key), fence
                              (the fence of the record's writer), issued (the last fence handed out)

Theory of operation
-------------------
* **Lock.** Taking the lock is one script: ``SET NX PX`` with a random owner id and, on success,
  the next *fencing token* (``HINCRBY`` of a counter in the token's hash). Releasing is a compare-and-delete
  script, so a holder whose lease ran out never deletes somebody else's lock. While the lock is
  held, a watchdog thread extends the lease every third of it (for up to ``max_hold`` seconds, so
  that a hung process does not hold it for ever): a refresh may take as long as it needs — retries,
  an interactive login — while a *dead* holder blocks the others for at most one ``lease``.
  Waiters block on a release signal that each release pushes (so the next waiter takes the lock
  one round trip later), with a short, jittered timeout for a holder that died without releasing;
  threads of one process queue on a thread lock first, so one waiter per process talks to Redis.
* **Fencing.** A holder can stall (a GC pause, SIGSTOP, a VM migration) past its lease while
  another process takes the lock and saves a newer token. Every save made under a lock therefore
  carries that lock's fence, and the save script writes only when the fence is at least the one of
  the stored record and at most the last one issued (a delete keeps the counter): a late writer
  never overwrites a newer token. Its token is dropped with a warning; the process keeps it in
  memory and re-reads the store at its next refresh. A new counter starts from the Redis server's
  clock in microseconds, so even after the hash expired, a writer holding a fence from before can
  never pass. A save outside any lock (a tool writing a token) is written as the newest.

  :meth:`RedisStore.save` finds the fence of the lock held *by the same thread or asyncio task*
  on the same key through a context variable — so the cache, which runs "re-read, fetch, save"
  inside ``with store.lock(key)``, is fenced without knowing it. :attr:`RedisLock.fence` shows it.
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
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from .. import strictjson
from ..errors import ConfigError, StoreError, safe_url
from ..secret import Secret
from ..token import Token
from . import _redis_scripts as lua
from .base import ASYNC_POLL, LockLost, Store, StoreLock
from .memory import MemoryStore

__all__ = ["RedisLock", "RedisStore"]

log = logging.getLogger("keyturn.stores.redis")
T = TypeVar("T")

#: How long a waiter blocks for the release signal between attempts: from, to (seconds). A release
#: wakes one waiter at once; the timeout only matters when a holder died without releasing.
POLL: Final = (0.02, 0.25)
#: How long a release signal that no waiter took stays (milliseconds).
_SIGNAL_MS: Final = 1000

#: What acquiring "returns" when the store has fallen back to this process: held, without a fence.
_NO_FENCE: int | None = 0

#: Fences of the locks held by this thread or asyncio task: (store identity, hash key) -> fence.
_HELD: contextvars.ContextVar[Mapping[tuple[str, str], int]] = contextvars.ContextVar(
    "keyturn_redis_fences", default=MappingProxyType({})
)


class RedisLock(StoreLock):
    """The lock on one key: a thread lock (threads of this process queue here), then a Redis lock
    that expires unless its holder renews it. :attr:`fence` is the fencing token while held (None
    while not, or while the store has fallen back to this process)."""

    def __init__(self, store: RedisStore, key: str, local: threading.Lock) -> None:
        self._store = store
        self._names = store._names(key)
        self._local = local
        self._owner = secrets.token_hex(16)
        self.fence: int | None = None
        self._stop: threading.Event | None = None

    def __repr__(self) -> str:
        return f"RedisLock({self._names[0]!r}, fence={self.fence})"

    # -- Redis side (any thread) ----------------------------------------------------------------------

    def _take_remote(self) -> bool:
        """One attempt at the Redis lock; True when held (or when the store fell back to memory)."""
        fence = self._store._call(self._store._acquire_remote, self._names, self._owner,
                                  default=_NO_FENCE)
        if fence is None:
            return False
        self.fence = int(fence) or None  # 0: fell back, no fence
        if self.fence is not None:
            self._stop = threading.Event()
            threading.Thread(target=self._keep, args=(self._stop,), daemon=True,
                             name="keyturn-redis-lease").start()
        return True

    def _keep(self, stop: threading.Event) -> None:
        """Extend the lease every third of it while the lock is held, up to ``max_hold``."""
        store = self._store
        give_up = time.monotonic() + store.max_hold
        while not stop.wait(store.lease / 3):
            if time.monotonic() >= give_up:
                log.warning("a keyturn Redis lock was held for over %.0f s; no longer renewing it, "
                            "others may take it when its lease ends", store.max_hold)
                return
            try:
                if not store._renew_remote(self._names, self._owner):
                    log.warning("a keyturn Redis lock expired before its holder finished (a stall "
                                "longer than the %.0f s lease?); fencing keeps newer tokens safe",
                                store.lease)
                    return
            except Exception as exc:  # the lease ends on its own if Redis is gone
                log.debug("cannot renew a keyturn Redis lock (%s)", type(exc).__name__)

    def _release_remote(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop.set()
        if self.fence is None:
            return
        self.fence = None
        try:
            self._store._release_remote(self._names, self._owner)
        except Exception as exc:
            # Not raised: a `with` block's own error matters more, and the lease ends by itself.
            log.warning("could not release a keyturn Redis lock (%s); it expires within %.0f s",
                        type(exc).__name__, self._store.lease)

    def confirm(self) -> None:
        """Still ours? Then the lease starts afresh (a whole ``lease`` from now); else LockLost.

        The cache calls this right before it sends a rotating refresh token: a holder that stalled
        past its lease (SIGSTOP, a long GC pause) while another took the lock and refreshed must
        not send the refresh token that the other one already spent. Fencing protects the store;
        this protects the provider.
        """
        if self.fence is None:
            return  # fell back to this process's memory: there is no shared lock to lose
        # An unreachable Redis confirms nothing, whatever the fallback: a holder cut off from it
        # may have lost the lock to a holder that still reaches it.
        if not self._store._call(self._store._renew_remote, self._names, self._owner, default=False):
            raise LockLost(
                f"the Redis lock on a token at {self._store.url} was taken over by another holder "
                f"after this one stalled for longer than its {self._store.lease:.0f} s lease"
            )

    # -- this thread or task's view of its fence --------------------------------------------------------

    def _remember(self) -> None:
        if self.fence is not None:
            _HELD.set({**_HELD.get(), self._ident(): self.fence})

    def _forget(self) -> None:
        held = _HELD.get()
        if held.get(self._ident()) == self.fence and self.fence is not None:
            _HELD.set({k: v for k, v in held.items() if k != self._ident()})

    def _ident(self) -> tuple[str, str]:
        return (self._store._identity, self._names[1])

    # -- StoreLock ------------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        if not self._local.acquire(blocking=False):
            return False
        try:
            taken = self._take_remote()
        except BaseException:
            self._local.release()
            raise
        if not taken:
            self._local.release()
            return False
        self._remember()
        return True

    def acquire(self) -> None:
        self._local.acquire()
        try:
            delay = POLL[0]
            while not self._take_remote():
                self._store._wait_for_release(self._names, delay)
                delay = min(delay * 2, POLL[1])
        except BaseException:
            self._local.release()
            raise
        self._remember()

    def release(self) -> None:
        self._forget()
        try:
            self._release_remote()
        finally:
            self._local.release()

    async def aacquire(self) -> None:
        delay = ASYNC_POLL[0]
        while not self._local.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, ASYNC_POLL[1])
        try:
            delay = POLL[0]
            while not await self._in_thread(self._take_remote):
                # Cancelling this wait is harmless: at worst it swallows one release signal, and
                # the next waiter takes the lock after its own timeout instead of at once.
                await asyncio.to_thread(self._store._wait_for_release, self._names, delay)
                delay = min(delay * 2, POLL[1])
        except BaseException:
            self._local.release()
            raise
        self._remember()  # here, in the task's own context, not in the worker thread's copy

    async def _in_thread(self, call: Callable[[], bool]) -> bool:
        """``call()`` in a worker thread; if the task is cancelled meanwhile and the call still
        takes the lock, the lock is released at once instead of being left to an orphan."""
        future = asyncio.get_running_loop().run_in_executor(None, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            def undo(done: asyncio.Future[bool]) -> None:
                if not done.cancelled() and done.exception() is None and done.result():
                    threading.Thread(target=self._release_remote, daemon=True).start()

            future.add_done_callback(undo)
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._forget()
        try:
            await asyncio.to_thread(self._release_remote)
        finally:
            self._local.release()


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
        fence = _HELD.get().get((self._identity, names[1]))
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
