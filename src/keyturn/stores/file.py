"""Tokens on disk, shared by every process of one user: atomic, private, locked.

Layout: one directory (mode 0700) holding, per cache key, ``<digest>.json`` (mode 0600) and
``<digest>.lock``. Writes go to a temporary file in the same directory, are fsynced, then renamed
over the old file, so a reader or a process killed mid-write only ever sees the old or the new
token. The lock file lives in the same private directory, never in a shared /tmp where another user
could take it first.

Locking uses ``flock``. The kernel drops the lock of a process that dies, so a crashed holder never
blocks the others. On a file system that cannot lock (NFS without lockd answers ENOLCK), keyturn
says so once in a warning and falls back to a lock within this process only: each process then may
refresh on its own, and a rotated refresh token used by another process is recovered by re-reading
the store after ``invalid_grant``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

from .. import strictjson
from .._filecheck import UntrustedFile, directory_problem, open_checked
from ..cachekey import file_name
from ..errors import StoreError
from ..token import Token
from .base import LocalLock, Store, StoreLock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileStore", "default_cache_dir"]

log = logging.getLogger("keyturn.stores.file")
_FORMAT = 1
_NO_LOCK_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "keyturn"


class _FileLock(StoreLock):
    """An exclusive ``flock`` on a lock file, plus a thread lock so threads of one process queue
    in-process instead of each opening the file."""

    def __init__(self, store: FileStore, path: Path, local: threading.Lock) -> None:
        self._store = store
        self._path = path
        self._local = local
        self._fd: int | None = None

    def _lock_file(self, blocking: bool) -> bool:
        if fcntl is None or self._store.degraded:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if exc.errno in _NO_LOCK_ERRNOS:
                self._store.degrade(exc)
                return True
            raise StoreError(f"cannot lock {self._path}: {exc.strerror}") from None
        self._fd = fd
        return True

    def try_acquire(self) -> bool:
        if not self._local.acquire(blocking=False):
            return False
        try:
            if self._lock_file(blocking=False):
                return True
        except BaseException:
            self._local.release()
            raise
        self._local.release()
        return False

    def acquire(self) -> None:
        self._local.acquire()
        try:
            self._lock_file(blocking=True)
        except BaseException:
            self._local.release()
            raise

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
        self._local.release()


class FileStore(Store):
    """Tokens in ``path`` (default ``$XDG_CACHE_HOME/keyturn``), one file per cache key."""

    shared = True

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir()
        self.degraded = False
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._ready = False

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

    def degrade(self, exc: OSError) -> None:
        if not self.degraded:
            self.degraded = True
            log.warning(
                "the file system of %s cannot lock files (%s): keyturn serializes token refreshes "
                "within each process only; put the store on a local disk or use RedisStore to "
                "share tokens between processes safely", self.path, exc.strerror,
            )

    def _file(self, key: str) -> Path:
        return self._directory() / f"{file_name(key)}.json"

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
            record = strictjson.loads(data, as_written=True)
            if record.get("format") != _FORMAT or record.get("key") != key:
                raise ValueError("not a keyturn token file for this key")
            return Token.from_record(record["token"])
        # JsonError is a ValueError: nested too deep, not UTF-8, not JSON. RecursionError stays
        # in the tuple for a record that parsed but is walked recursively later: damage as well.
        except (ValueError, KeyError, AttributeError, TypeError, RecursionError, StoreError) as exc:
            self._quarantine(path, exc)
            return None

    def _quarantine(self, path: Path, exc: Exception) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            return
        # The parser's reason says what is wrong without quoting the file; other errors are named
        # by class only, as their text may quote a value of the token.
        why = exc.reason if isinstance(exc, strictjson.JsonError) else exc.__class__.__name__
        log.warning("token file %s was damaged (%s); moved aside to %s", path, why, aside.name)

    def save(self, key: str, token: Token) -> None:
        path = self._file(key)
        payload = json.dumps(
            {"format": _FORMAT, "key": key, "written_at": time.time(), "token": token.to_record()},
            separators=(",", ":"),
        ).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write the token file {path}: {exc.strerror}") from None

    def delete(self, key: str) -> None:
        path = self._file(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot remove {path}: {exc.strerror}") from None

    def lock(self, key: str) -> StoreLock:
        with self._guard:
            local = self._locks.setdefault(key, threading.Lock())
        path = self._directory() / f"{file_name(key)}.lock"
        if fcntl is None:  # pragma: no cover - Windows
            return LocalLock(local)
        return _FileLock(self, path, local)


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
