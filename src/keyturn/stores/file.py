"""Tokens on disk, shared by every process of one user: atomic, private, locked.

Theory of operation
-------------------
* **Layout.** One directory (mode 0700) holding, per cache key, ``<digest>.json`` (mode 0600) and
  its lock file. The lock files live in the same private directory, never in a shared /tmp where
  another user could take them first.
* **Writes** go to a temporary file in the same directory, are fsynced, then renamed over the old
  file, so a reader, or a process killed mid-write, only ever sees the old or the new token. The
  temporary files that killed writers leave are removed, or — when one holds a whole token that
  never reached its rename — adopted: the rules are in :mod:`._tempfiles`, carried out by
  :mod:`._leftovers`; reads and writes of the token files are :mod:`._fileio`'s.
* **Records** (:mod:`._tokenfile`) carry a generation, one more than the record they replaced,
  which orders a killed writer's leftover and the token file without comparing two hosts' clocks.
* **A save that cannot fail for space.** :meth:`FileStore.prepare_save`, called under the lock
  before a request whose answer must be kept, reserves the file of the next save (``reserve``
  bytes, 256 KiB by default) and says now, while the old refresh token still works, if the disk is
  full; the save then overwrites that file: how, and why a spare, is :mod:`._reservations`'.
* **Locking** uses ``flock`` on ``<digest>.lock``; threads of one process first queue on a thread
  lock. The kernel drops the lock of a process that dies, so a crashed holder never blocks the
  others. Where ``flock`` fails (NFS without lockd answers ENOLCK), the store says so once in a
  warning and from then on locks with lease lock files, ``<digest>.lease``
  (:mod:`._leaselock`): they exclude the processes of every host of one mount whose clocks agree
  within ``skew``, a holder that died on this host is taken over at once and one on another host
  after ``lease + skew`` seconds. While a process holds a key's lease lock, its saves and deletes
  of that key check the lease immediately before they replace or remove the token file, and raise
  ``LockLost`` instead when it ran out: a holder that stalled must not write its refresh token
  over the newer one of the holder that took over. Never a lock within one process only: two
  processes refreshing one rotating refresh token both "succeed", and the server then revokes
  the whole login. All hosts of one store must lock alike: an NFS mount with
  ``nolock``/``local_lock`` makes ``flock`` succeed on each host alone, which nothing here can
  detect.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

from .._filecheck import directory_problem
from ..cachekey import file_name
from ..errors import ConfigError, StoreError
from ..paths import cache_dir
from ..token import Token
from . import _fileio as fileio
from . import _tokenfile as tokenfile
from ._filelock import FileLock
from ._leaselock import LeaseLock
from ._leftovers import Leftovers
from ._reservations import Reservations
from .base import LocalLock, Store, StoreLock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileStore", "default_cache_dir"]

log = logging.getLogger("keyturn.stores.file")
#: How a save or a delete that found its lease lock lost ends its LockLost message.
_NOT_SAVED = "the token was not saved (the lock's next holder may have saved a newer one)"
_NOT_DELETED = "the token file was not removed; try again"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/keyturn`` (:func:`keyturn.paths.cache_dir`)."""
    return Path(cache_dir())


class FileStore(Store):
    """Tokens in ``path`` (default ``$XDG_CACHE_HOME/keyturn``), one file per cache key.

    Where ``flock`` fails (see the module's docstring): ``lease``, seconds a lease lock file
    stays valid without renewal (its holder renews it every third of that); ``skew``, seconds the
    clocks of the hosts sharing the directory may differ. A holder that died on another host
    blocks the others for ``lease + skew`` seconds. ``grace``: seconds after which a temporary file
    of a writer on another host counts as abandoned. ``reserve``: bytes :meth:`prepare_save`
    allocates for the next save (a token file takes a few KiB). All but ``path`` may be set
    later, and take effect from then on.
    """

    shared = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        lease: float = 30.0,
        skew: float = 10.0,
        grace: float = 60.0,
        reserve: int = 256 * 1024,
    ) -> None:
        if not lease > 0 or not skew >= 0 or not grace >= 0 or reserve < 0:
            raise ConfigError("FileStore: lease must be positive; skew, grace and reserve zero "
                              "or more")
        self._path = Path(path) if path is not None else default_cache_dir()
        self.lease = lease
        self.skew = skew
        #: True once ``flock`` failed here: the store's locks are lease lock files from then on.
        self.lease_locks = False
        self._locks: dict[str, threading.Lock] = {}
        # Each holds its value, which the properties below read and set: one place per fact.
        self._reservations = Reservations(self._path, reserve)
        self._leftovers = Leftovers(self._path, grace)
        self._held: dict[str, LeaseLock] = {}  # key -> its lease lock, while this store holds it
        self._guard = threading.Lock()
        self._ready = False
        self._swept = False

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    @property
    def path(self) -> Path:
        """The token directory (fixed: the helpers, the locks and the first-use sweep are its)."""
        return self._path

    @property
    def grace(self) -> float:
        """Seconds after which a temporary file of a writer on another host counts as abandoned."""
        return self._leftovers.grace

    @grace.setter
    def grace(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ConfigError(f"FileStore.grace must be zero or more seconds, not {seconds!r}")
        self._leftovers.grace = seconds

    @property
    def reserve(self) -> int:
        """Bytes :meth:`prepare_save` allocates for the next save."""
        return self._reservations.size

    @reserve.setter
    def reserve(self, size: int) -> None:
        if not size >= 0:
            raise ConfigError(f"FileStore.reserve must be zero or more bytes, not {size!r}")
        self._reservations.size = size

    # -- directory ---------------------------------------------------------------------------------

    def _directory(self) -> Path:
        if self._ready:
            return self.path
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.path.lstat()
        except OSError as exc:
            raise StoreError(f"cannot create the token directory {self.path}: {exc.strerror}") from None
        # The rule the fast path applies too (keyturn._filecheck); other users' write bits on a
        # directory of the user's are no problem here, since it is tightened right below.
        problem = directory_problem(info, str(self.path), tightening=True)
        if problem is not None:
            raise StoreError(problem)
        if stat.S_IMODE(info.st_mode) & 0o077:
            # Tokens are credentials: nobody else may list or read them.
            os.chmod(self.path, 0o700)
        self._ready = True
        return self.path

    def _open(self) -> Path:
        """The directory, ready; at the first use in this process, without stale leftovers."""
        directory = self._directory()
        if not self._swept:
            self._swept = True  # first: the sweep takes locks, and lock() comes back here
            self._sweep()
        return directory

    def _use_lease_locks(self, exc: OSError) -> None:
        with self._guard:
            if self.lease_locks:
                return
            self.lease_locks = True
        log.warning(
            "the file system of %s cannot lock files with flock (%s): keyturn now uses lease lock "
            "files (*.lease) there, which exclude the processes of every host of this mount "
            "whose clocks agree within %.0f s", self.path, exc.strerror, self.skew,
        )

    def _file(self, key: str) -> Path:
        return self._open() / f"{file_name(key)}.json"

    # -- records -----------------------------------------------------------------------------------

    def load(self, key: str) -> Token | None:
        return fileio.load(self._file(key), key)

    def save(self, key: str, token: Token) -> None:
        self._fence(key, _NOT_SAVED, quick=True)  # a holder that stalled writes nothing at all
        path = self._file(key)
        current = fileio.record_in(self.path, path.name, path.name)
        generation = (current.generation or 0) + 1 if current is not None else 1
        payload = tokenfile.encode(key, token, generation=generation, written_at=time.time())

        def fence() -> None:
            self._fence(key, _NOT_SAVED)

        prepared, again = self._reservations.take(key)
        if prepared is not None and fileio.write_reserved(prepared, path, payload, fence):
            if again:  # for the save that follows (see the module's docstring), if there is room
                self._reservations.prepare(key, path, required=False)
            return
        fileio.write_new(path, payload, fence)

    def prepare_save(self, key: str) -> None:
        """Reserve the space of the next two :meth:`save` calls of ``key`` (the second when there
        is room; see the module's docstring)."""
        self._reservations.prepare(key, self._file(key), required=True, spare=True)

    def _unprepare(self, key: str) -> None:
        """Drop the reservation of ``key`` (the lock on it is being released)."""
        self._reservations.drop(key)

    # -- the lease lock a process holds on a key, which its saves and deletes check -------------

    def _hold(self, key: str, lease: LeaseLock) -> None:
        with self._guard:
            self._held[key] = lease

    def _unhold(self, key: str, lease: LeaseLock) -> None:
        with self._guard:
            if self._held.get(key) is lease:
                del self._held[key]

    def _fence(self, key: str, outcome: str, *, quick: bool = False) -> None:
        """Raise LockLost if this process holds the lease lock on ``key`` and lost it. A save
        without the lock (a tool's) is not checked; nor is a forked child's, whose lock is its
        parent's."""
        with self._guard:
            lease = self._held.get(key)
        if lease is not None and lease.held_here:
            lease.check(outcome, quick=quick)

    def delete(self, key: str) -> None:
        path = self._file(key)
        self._fence(key, _NOT_DELETED)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot remove {path}: {exc.strerror}") from None
        # A logout forgets the token everywhere: in the temporary files of killed writers too.
        self._sweep(forget=path.name)

    def lock(self, key: str) -> StoreLock:
        with self._guard:
            local = self._locks.setdefault(key, threading.Lock())
        base = self._open() / file_name(key)
        if fcntl is None:  # pragma: no cover - Windows
            return LocalLock(local)
        return FileLock(self, key, base, local)

    # -- leftovers of killed writers (the rules: keyturn.stores._tempfiles) ---------------------

    def _sweep(self, forget: str | None = None) -> None:
        """Remove the stale leftovers of every key; have complete ones adopted under their key's
        lock (:meth:`._leftovers.Leftovers.sweep`)."""
        self._leftovers.sweep(self.lock, forget)

    def _settle(self, key: str) -> None:
        """Under the lock on ``key`` (FileLock calls this when it takes it): adopt the newest
        complete leftover of its token file if it is newer than the file, and remove the stale
        others."""
        self._leftovers.settle(key)
