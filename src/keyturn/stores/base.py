"""What every token store offers: records by key, and a lock that spans a refresh transaction.

The cache uses a store like this, for every grant::

    with store.lock(key):          # other threads, processes, hosts wait here
        token = store.load(key)    # someone else may have refreshed while we waited
        if token is still fresh: use it
        else: fetch a new one; store.save(key, new)

so that N callers needing a token make one request, and a rotated refresh token is always read
back before it is used.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import threading
from collections.abc import Callable
from types import TracebackType

from .._uninterrupted import ato_the_end, thread_future
from ..errors import StoreError
from ..token import Token

__all__ = ["LocalLock", "LockLost", "Store", "StoreLock"]

#: How long an async waiter sleeps between attempts at a lock held elsewhere (seconds).
ASYNC_POLL = (0.005, 0.1)


async def poll_until(attempt: Callable[[], bool]) -> None:
    """Call ``attempt`` (non-blocking) until it succeeds, sleeping a little longer each time: how
    async code waits for a thread lock, or a lock held elsewhere, without blocking the loop."""
    delay = ASYNC_POLL[0]
    while not attempt():
        await asyncio.sleep(delay)
        delay = min(delay * 2, ASYNC_POLL[1])


class LockLost(StoreError):
    """The lock was taken over by another holder (its lease ran out while this one stalled)."""


class StoreLock(abc.ABC):
    """An exclusive lock on one key. Sync callers block in :meth:`acquire`; async callers poll in
    :meth:`aacquire` so that a cancelled task never leaves a lock taken by an orphan thread."""

    def confirm(self) -> None:
        """Raise :class:`LockLost` unless this lock is still held, and make it last a while more.

        Called from any thread, immediately before a request whose answer must not be lost (a
        rotating refresh token) is sent: a holder that stalled past a lease must not send it after
        another holder did. A lock held until it is released (a thread lock, ``flock``) has
        nothing to check; a lock with a lease renews it here.
        """
        return None

    @abc.abstractmethod
    def try_acquire(self) -> bool: ...

    @abc.abstractmethod
    def acquire(self) -> None: ...

    @abc.abstractmethod
    def release(self) -> None: ...

    async def aacquire(self) -> None:
        await poll_until(self.try_acquire)

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> StoreLock:
        await self.aacquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class LocalLock(StoreLock):
    """A lock that holds within this process only."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def try_acquire(self) -> bool:
        return self._lock.acquire(blocking=False)

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()


class Store(abc.ABC):
    """A place where tokens live between calls, and possibly between processes and hosts."""

    #: True when the store is shared beyond this process (files, Redis).
    shared: bool = False

    @abc.abstractmethod
    def load(self, key: str) -> Token | None:
        """The token under ``key``, or None. A damaged record is reported and treated as absent."""

    @abc.abstractmethod
    def save(self, key: str, token: Token) -> None: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def lock(self, key: str) -> StoreLock:
        """A new, not yet acquired, lock on ``key``."""

    def prepare_save(self, key: str) -> None:
        """Make sure that the next :meth:`save` of ``key`` cannot fail for want of space.

        Called under the lock from any thread, immediately before a request whose answer must be
        saved is sent: a store that could not save then raises :class:`StoreError` now, while the
        old refresh token is still good, not after the server has rotated it. Stores that need no
        space of their own do nothing.
        """
        return None

    # Async twins: by default the blocking call runs in a thread of its own so the loop never waits
    # on a disk or a socket (and never on a default executor that callers waiting for this key's
    # lock may have filled: keyturn._uninterrupted.thread_future). A save or a delete runs to its
    # end even if the task is cancelled: the lock is released only after it. Stores whose calls
    # never block override them.
    async def aload(self, key: str) -> Token | None:
        return await thread_future(functools.partial(self.load, key))

    async def asave(self, key: str, token: Token) -> None:
        await ato_the_end(functools.partial(self.save, key, token))

    async def adelete(self, key: str) -> None:
        await ato_the_end(functools.partial(self.delete, key))
