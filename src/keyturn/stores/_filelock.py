"""FileStore's lock on one key: a thread lock, then ``flock`` — or, where ``flock`` fails, a lease
lock file (:mod:`._leaselock`). FileStore's docstring tells the whole story."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from .._uninterrupted import thread_future
from ..errors import StoreError
from ._leaselock import LeaseLock
from .base import ASYNC_POLL, StoreLock, poll_until

if TYPE_CHECKING:
    from .file import FileStore

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["NO_FLOCK", "FileLock"]

#: What ``flock`` answers on a file system that cannot lock (NFS without lockd: ENOLCK).
NO_FLOCK: Final = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


class _Handover:
    """Between an async acquirer and the worker thread that makes its attempt: whichever of the
    two comes second when the acquirer was cancelled drops a lock the worker took."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._abandoned = False
        self._taken = False

    def deliver(self, taken: bool) -> bool:
        """In the worker: False when the acquirer gave up already (the worker drops the lock)."""
        with self._mutex:
            self._taken = taken
            return not self._abandoned

    def abandon(self) -> bool:
        """In the cancelled acquirer: True when the worker had delivered a lock taken for it."""
        with self._mutex:
            self._abandoned = True
            return self._taken


class FileLock(StoreLock):
    """The lock on ``key`` in ``store``: ``local`` (shared by the store's locks on the key) so
    that threads of one process queue in-process, then the lock file."""

    def __init__(self, store: FileStore, key: str, base: Path, local: threading.Lock) -> None:
        self._store = store
        self._key = key
        self._base = base  # <directory>/<digest>: the lock files are <digest>.lock and .lease
        self._local = local
        self._fd: int | None = None
        self._lease: LeaseLock | None = None

    def __repr__(self) -> str:
        return f"FileLock({str(self._base)!r}, held={self._fd is not None or self._lease is not None})"

    def _lock_file(self, blocking: bool) -> bool:
        if fcntl is not None and not self._store.lease_locks:
            path = self._base.with_name(self._base.name + ".lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                if exc.errno not in NO_FLOCK:
                    raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
                self._store._use_lease_locks(exc)
            else:
                self._fd = fd
                return True
        lease = LeaseLock(self._base.with_name(self._base.name + ".lease"),
                          lease=self._store.lease, skew=self._store.skew)
        if blocking:
            lease.take()
        elif not lease.try_take():
            return False
        self._lease = lease
        self._store._hold(self._key, lease)  # saves and deletes check it from now on
        return True

    def _drop_file(self) -> None:
        fd, self._fd = self._fd, None
        lease, self._lease = self._lease, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
        if lease is not None:
            self._store._unhold(self._key, lease)
            lease.release()

    def _settle(self) -> None:
        """The lock file is held: settle the key's leftovers (a token a killed writer left)."""
        try:
            self._store._settle(self._key)
        except BaseException:
            self._drop_file()
            raise

    def _attempt(self) -> bool:
        """With the thread lock held: one attempt at the lock file (settled when taken)."""
        if not self._lock_file(blocking=False):
            return False
        self._settle()
        return True

    def try_acquire(self) -> bool:
        if not self._local.acquire(blocking=False):
            return False
        try:
            taken = self._attempt()
        except BaseException:
            self._local.release()
            raise
        if not taken:
            self._local.release()
        return taken

    def acquire(self) -> None:
        self._local.acquire()
        try:
            self._lock_file(blocking=True)
            self._settle()
        except BaseException:
            self._local.release()
            raise

    def confirm(self) -> None:
        # flock is held until it is released, and the kernel drops it when its process dies:
        # nothing can have been lost. A lease may have been.
        lease = self._lease
        if lease is not None:
            lease.confirm()

    def release(self) -> None:
        try:
            self._store._unprepare(self._key)
            self._drop_file()
        finally:
            self._local.release()

    # -- async: the file system calls in a worker thread, never on the event loop -----------------
    # A lease lock's attempt creates, reads and fsyncs files, an NFS round trip each; flock's opens
    # the lock file. Both run in a thread of their own (keyturn._uninterrupted.thread_future).

    async def aacquire(self) -> None:
        await poll_until(lambda: self._local.acquire(blocking=False))
        try:
            delay = ASYNC_POLL[0]
            while not await self._attempt_in_thread():
                await asyncio.sleep(delay)
                delay = min(delay * 2, ASYNC_POLL[1])
        except BaseException:
            self._local.release()
            raise

    async def _attempt_in_thread(self) -> bool:
        """:meth:`_attempt` in a worker thread. A task cancelled meanwhile never leaves the lock
        to an orphan: whichever of the task and the worker comes second drops a lock taken."""
        handover = _Handover()
        future = thread_future(functools.partial(self._attempt_for, handover))
        try:
            # Shielded: a cancellation must not cancel an attempt still queued in the executor,
            # whose handover would then never be settled.
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_retrieve)
            if handover.abandon():
                # Taken for this task after all: dropped (not a daemon, so before the process
                # exits), while the task's own thread lock goes at once.
                threading.Thread(target=self._drop_file, name="keyturn-unlock").start()
            raise

    def _attempt_for(self, handover: _Handover) -> bool:
        taken = self._attempt()
        if not handover.deliver(taken) and taken:
            self._drop_file()  # the task gave up while this attempt ran
            return False
        return taken

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        future = thread_future(self.release)
        # Shielded: cancelled while waiting, the release still runs to its end in the worker.
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_retrieve)
            raise


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Fetch the outcome of a call its task gave up waiting for (else asyncio logs "exception
    never retrieved" for a StoreError that nobody is left to report)."""
    if not future.cancelled():
        future.exception()
