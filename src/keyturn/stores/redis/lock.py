"""The Redis lock on one key: expiring, renewed while its holder lives, and handing out fences.

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

  :meth:`RedisStore.save <keyturn.stores.redis.store.RedisStore.save>` finds the fence of the lock
  held *by the same thread or asyncio task* on the same key through a context variable
  (:func:`held_fence`) — so the cache, which runs "re-read, fetch, save" inside
  ``with store.lock(key)``, is fenced without knowing it. :attr:`RedisLock.fence` shows it.

The Redis calls themselves (the scripts, the connection, a fallback when Redis is down) are the
store's: a lock asks its :class:`~keyturn.stores.redis.store.RedisStore` to make them.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Final

from ..._uninterrupted import ato_the_end, thread_future
from ..base import LockLost, StoreLock, poll_until

if TYPE_CHECKING:
    from .store import RedisStore

__all__ = ["RedisLock", "held_fence"]

# The package's one logger, as before the split: callers filter on "keyturn.stores.redis".
log = logging.getLogger("keyturn.stores.redis")

#: How long a waiter blocks for the release signal between attempts: from, to (seconds). A release
#: wakes one waiter at once; the timeout only matters when a holder died without releasing.
POLL: Final = (0.02, 0.25)

#: What acquiring "returns" when the store has fallen back to this process: held, without a fence.
_NO_FENCE: int | None = 0

#: Fences of the locks held by this thread or asyncio task: (store identity, hash key) -> fence.
_HELD: contextvars.ContextVar[Mapping[tuple[str, str], int]] = contextvars.ContextVar(
    "keyturn_redis_fences", default=MappingProxyType({})
)


def held_fence(store_identity: str, record: str) -> int | None:
    """The fence of the lock that this thread or asyncio task holds on the record named
    ``record`` of the store ``store_identity``; None when it holds none."""
    return _HELD.get().get((store_identity, record))


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
        await poll_until(lambda: self._local.acquire(blocking=False))
        try:
            delay = POLL[0]
            while not await self._in_thread(self._take_remote):
                # Cancelling this wait is harmless: at worst it swallows one release signal, and
                # the next waiter takes the lock after its own timeout instead of at once.
                await thread_future(
                    functools.partial(self._store._wait_for_release, self._names, delay))
                delay = min(delay * 2, POLL[1])
        except BaseException:
            self._local.release()
            raise
        self._remember()  # here, in the task's own context, not in the worker thread's copy

    async def _in_thread(self, call: Callable[[], bool]) -> bool:
        """``call()`` in a worker thread; if the task is cancelled meanwhile and the call still
        takes the lock, the lock is released at once instead of being left to an orphan."""
        future = thread_future(call)
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
            await ato_the_end(self._release_remote)
        finally:
            self._local.release()
