"""FileStore's lock on one key: a thread lock, then ``flock`` — or, where ``flock`` fails, a lease
lock file (:mod:`._leaselock`). FileStore's docstring tells the whole story."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import StoreError
from ._leaselock import LeaseLock
from .base import StoreLock

if TYPE_CHECKING:
    from .file import FileStore

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["NO_FLOCK", "FileLock"]

#: What ``flock`` answers on a file system that cannot lock (NFS without lockd: ENOLCK).
NO_FLOCK: Final = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


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
        return True

    def _drop_file(self) -> None:
        fd, self._fd = self._fd, None
        lease, self._lease = self._lease, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
        if lease is not None:
            lease.release()

    def _taken(self) -> None:
        """Both locks are held: settle the key's leftovers (a token a killed writer left)."""
        try:
            self._store._settle(self._key)
        except BaseException:
            self._drop_file()
            self._local.release()
            raise

    def try_acquire(self) -> bool:
        if not self._local.acquire(blocking=False):
            return False
        try:
            taken = self._lock_file(blocking=False)
        except BaseException:
            self._local.release()
            raise
        if not taken:
            self._local.release()
            return False
        self._taken()
        return True

    def acquire(self) -> None:
        self._local.acquire()
        try:
            self._lock_file(blocking=True)
        except BaseException:
            self._local.release()
            raise
        self._taken()

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
