"""Tokens on disk, shared by every process of one user: atomic, private, locked.

Theory of operation
-------------------
* **Layout.** One directory (mode 0700) holding, per cache key, ``<digest>.json`` (mode 0600) and
  its lock file. The lock files live in the same private directory, never in a shared /tmp where
  another user could take them first.
* **Writes** go to a temporary file in the same directory, are fsynced, then renamed over the old
  file, so a reader, or a process killed mid-write, only ever sees the old or the new token. The
  temporary files that killed writers leave are removed, or — when one holds a whole token that
  never reached its rename — adopted: the rules are in :mod:`._tempfiles`.
* **Records** (:mod:`._tokenfile`) carry a generation, one more than the record they replaced,
  which orders a killed writer's leftover and the token file without comparing two hosts' clocks.
* **A save that cannot fail for space.** :meth:`FileStore.prepare_save`, called under the lock
  before a request whose answer must be kept, allocates the temporary file of the next save
  (``reserve`` bytes, 256 KiB by default) and says now, while the old refresh token still works,
  if the disk is full; the save then overwrites that file, so the answer is kept even if the disk
  filled up while the server was answering. The cache saves twice after such a request, a
  provisional record (the one holding the new refresh token), then the final one: so the first
  save that uses a reservation leaves one more, when there is room, and the second leaves none
  (each costs an fsync and an allocation). The lock's release drops what is left. (On
  copy-on-write file systems, btrfs or ZFS, an overwrite may still need blocks of its own.)
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

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from pathlib import Path

from .._filecheck import UntrustedFile, directory_problem, open_checked
from ..cachekey import file_name
from ..errors import ConfigError, StoreError
from ..paths import cache_dir
from ..token import Token
from . import _tempfiles as tmpfiles
from . import _tokenfile as tokenfile
from ._filelock import FileLock
from ._leaselock import LeaseLock
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
    allocates for the next save (a token file takes a few KiB).
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
        self.path = Path(path) if path is not None else default_cache_dir()
        self.lease = lease
        self.skew = skew
        self.grace = grace
        self.reserve = reserve
        #: True once ``flock`` failed here: the store's locks are lease lock files from then on.
        self.lease_locks = False
        self._locks: dict[str, threading.Lock] = {}
        self._prepared: dict[str, Path] = {}  # key -> the reservation its next save writes
        self._spare: set[str] = set()  # keys whose next reserved save leaves one more reservation
        self._held: dict[str, LeaseLock] = {}  # key -> its lease lock, while this store holds it
        self._guard = threading.Lock()
        self._ready = False
        self._swept = False

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

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
        path = self._file(key)
        try:
            # Only a private file of the user's, never through a symbolic link (keyturn._filecheck,
            # the rule the fast path applies too): a token planted by another user is refused.
            fd = open_checked(str(path))
        except FileNotFoundError:
            return None
        except UntrustedFile as exc:
            raise StoreError(str(exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        try:
            record = tokenfile.decode(data, path.name)
            if record.key != key:  # what a copied file (or a hash collision) would put here
                raise tokenfile.Damaged("the record of another key")
        except tokenfile.Damaged as exc:
            self._quarantine(path, exc.why)
            return None
        return record.token

    def _quarantine(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            return
        log.warning("token file %s was damaged (%s); moved aside to %s", path, why, aside.name)

    def save(self, key: str, token: Token) -> None:
        self._fence(key, _NOT_SAVED, quick=True)  # a holder that stalled writes nothing at all
        path = self._file(key)
        current = self._record_in(path.name, path.name)
        generation = (current.generation or 0) + 1 if current is not None else 1
        payload = tokenfile.encode(key, token, generation=generation, written_at=time.time())
        with self._guard:
            prepared = self._prepared.pop(key, None)
            again = prepared is not None and key in self._spare
            self._spare.discard(key)
        if prepared is not None:
            try:
                tmpfiles.write_into(str(prepared), payload)
                self._fence(key, _NOT_SAVED)
                os.replace(prepared, path)
            except OSError as exc:
                # Gone (a sweep elsewhere judged it abandoned) or unusable: a save of its own.
                log.debug("cannot save into the reserved file %s (%s)", prepared.name, exc.strerror)
                with contextlib.suppress(OSError):
                    prepared.unlink()
            except BaseException:  # LockLost, a KeyboardInterrupt: no token left in a stray file
                with contextlib.suppress(OSError):
                    prepared.unlink()
                raise
            else:
                _fsync_dir(path.parent)
                if again:  # for the save that follows (see the module's docstring), if there is room
                    self._prepare(key, path, required=False)
                return
        tmp = path.with_name(tmpfiles.tmp_name(path.name))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._fence(key, _NOT_SAVED)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except BaseException as exc:  # a KeyboardInterrupt too: no token left in a stray file
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write the token file {path}: {exc.strerror}") from None
            raise

    def prepare_save(self, key: str) -> None:
        """Reserve the space of the next two :meth:`save` calls of ``key`` (the second when there
        is room; see the module's docstring)."""
        self._prepare(key, self._file(key), required=True)
        with self._guard:
            self._spare.add(key)

    def _prepare(self, key: str, path: Path, *, required: bool) -> None:
        with self._guard:
            if key in self._prepared:
                return
        tmp = path.with_name(tmpfiles.tmp_name(path.name))
        try:
            tmpfiles.reserve(str(tmp), self.reserve)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if not required:
                return
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise StoreError(
                    f"no space left on {tmpfiles.mount_point(str(self.path))} for the token file "
                    f"{path}: free some space (or raise the disk quota), then try again"
                ) from None
            raise StoreError(f"cannot prepare the token file {path}: {exc.strerror}") from None
        with self._guard:
            if key not in self._prepared:
                self._prepared[key] = tmp
                return
        tmp.unlink()  # another thread prepared it meanwhile

    def _unprepare(self, key: str) -> None:
        """Drop the reservation of ``key`` (the lock on it is being released)."""
        with self._guard:
            prepared = self._prepared.pop(key, None)
            self._spare.discard(key)
        if prepared is not None:
            with contextlib.suppress(OSError):
                prepared.unlink()

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

    def _leftovers(self) -> list[tmpfiles.Leftover]:
        try:
            return tmpfiles.leftovers(os.listdir(self.path))
        except OSError:
            return []

    def _sweep(self, forget: str | None = None) -> None:
        """Remove the stale leftovers of every key; have complete ones adopted under their key's
        lock. ``forget``: the token file being deleted, whose stale leftovers go, and whose
        complete ones go at any age (else the next lock would adopt a logged-out login)."""
        groups: dict[str, list[tmpfiles.Leftover]] = {}
        for left in self._leftovers():
            groups.setdefault(left.main, []).append(left)
        for main, lefts in groups.items():
            key = None if main == forget else self._adoptable(main, lefts)
            if key is None:
                for left in lefts:
                    if main == forget and self._record_in(left.name, main) is not None:
                        with contextlib.suppress(OSError):
                            os.unlink(self.path / left.name)
                    else:
                        self._remove_if_stale(left)
                continue
            lock = self.lock(key)
            try:
                if lock.try_acquire():  # taking the lock adopts (FileLock); else its holder did
                    lock.release()
            except StoreError as exc:
                log.warning("could not recover the token file %s: %s", main, exc)

    def _adoptable(self, main: str, lefts: list[tmpfiles.Leftover]) -> str | None:
        """The key of a leftover that holds a record newer than the token file ``main``."""
        current = self._record_in(main, main)
        for left in lefts:
            found = self._record_in(left.name, main)
            if found is not None and found.newer_than(current):
                return found.key
        return None

    def _settle(self, key: str) -> None:
        """Under the lock on ``key``: adopt the newest complete leftover of its token file if it
        is newer than the file, and remove the stale others."""
        main = f"{file_name(key)}.json"
        lefts = [left for left in self._leftovers() if left.main == main]
        if not lefts:
            return
        newest, newest_record = None, self._record_in(main, main)
        for left in lefts:
            found = self._record_in(left.name, main)
            if found is not None and found.key == key and found.newer_than(newest_record):
                newest, newest_record = left, found
        if newest is not None:
            try:
                os.replace(self.path / newest.name, self.path / main)
            except OSError as exc:
                # Refreshing now would spend the older refresh token that the server retired.
                raise StoreError(f"cannot recover the token file {self.path / main} from "
                                 f"{newest.name}: {exc.strerror}") from None
            _fsync_dir(self.path)
            log.warning("recovered the token file %s from %s, which a writer stopped before its "
                        "rename left", main, newest.name)
        for left in lefts:
            if left is not newest:
                self._remove_if_stale(left)

    def _record_in(self, name: str, main: str) -> tokenfile.Record | None:
        """The whole, valid record of the token file ``main`` held in the directory's file
        ``name`` (the token file itself, or a leftover); None when there is none."""
        try:
            fd = open_checked(str(self.path / name))
        except (OSError, UntrustedFile):
            return None
        with os.fdopen(fd, "rb") as handle:
            try:
                data = handle.read()
            except OSError:
                return None
        try:
            return tokenfile.decode(data, main)
        except tokenfile.Damaged:
            return None

    def _remove_if_stale(self, left: tmpfiles.Leftover) -> None:
        path = self.path / left.name
        try:
            age = time.time() - path.lstat().st_mtime
            if tmpfiles.stale(left, age, self.grace):
                path.unlink()
        except OSError:
            pass  # gone meanwhile, or not ours to remove: the next sweep tries again


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
