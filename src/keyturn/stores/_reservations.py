"""A save that cannot fail for space: a FileStore's reservations of the files of its next saves.

:meth:`FileStore.prepare_save <keyturn.stores.file.FileStore.prepare_save>`, called under the lock
before a request whose answer must be kept, allocates the temporary file of the next save
(``reserve`` bytes, 256 KiB by default, :func:`._tempfiles.reserve`) and says now, while the old
refresh token still works, if the disk is full; the save then overwrites that file, so the answer
is kept even if the disk filled up while the server was answering. The cache saves twice after
such a request, a provisional record (the one holding the new refresh token), then the final one:
so the first save that uses a reservation leaves one more, when there is room (a *spare*), and the
second leaves none (each costs an fsync and an allocation). The lock's release drops what is left.
(On copy-on-write file systems, btrfs or ZFS, an overwrite may still need blocks of its own.)
"""

from __future__ import annotations

import contextlib
import errno
import threading
from pathlib import Path

from ..errors import StoreError
from . import _tempfiles as tmpfiles

__all__ = ["Reservations"]


class Reservations:
    """The reserved files of one store's keys, ``size`` bytes each, in ``directory``."""

    __slots__ = ("_guard", "_prepared", "_spare", "directory", "size")

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size
        self._prepared: dict[str, Path] = {}  # key -> the reservation its next save writes
        self._spare: set[str] = set()  # keys whose next reserved save leaves one more reservation
        self._guard = threading.Lock()

    def prepare(self, key: str, path: Path, *, required: bool, spare: bool = False) -> None:
        """Reserve the file of the next save of ``key`` into the token file ``path`` (unless one
        is reserved already); a failure raises StoreError when ``required``, else leaves none.
        ``spare``: that save leaves one more reservation, for the save that follows."""
        self._reserve(key, path, required=required)
        if spare:
            with self._guard:
                self._spare.add(key)

    def _reserve(self, key: str, path: Path, *, required: bool) -> None:
        with self._guard:
            if key in self._prepared:
                return
        tmp = path.with_name(tmpfiles.tmp_name(path.name))
        # Claimed until the save renames it, or the release drops it (_fileio.write_reserved,
        # drop): no sweep of this process takes it meanwhile (._tempfiles.may_rename).
        tmpfiles.claim(tmp.name)
        try:
            tmpfiles.reserve(str(tmp), self.size)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            tmpfiles.release(tmp.name)
            if not required:
                return
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise StoreError(
                    f"no space left on {tmpfiles.mount_point(str(self.directory))} for the token "
                    f"file {path}: free some space (or raise the disk quota), then try again"
                ) from None
            raise StoreError(f"cannot prepare the token file {path}: {exc.strerror}") from None
        with self._guard:
            if key not in self._prepared:
                self._prepared[key] = tmp
                return
        try:
            tmp.unlink()  # another thread prepared it meanwhile
        finally:
            tmpfiles.release(tmp.name)

    def take(self, key: str) -> tuple[Path | None, bool]:
        """The file reserved for this save of ``key`` (None: there is none), and whether the
        save is to leave a spare one for the save that follows. The file is still claimed
        (:func:`._tempfiles.claim`): :func:`._fileio.write_reserved` releases it."""
        with self._guard:
            prepared = self._prepared.pop(key, None)
            again = prepared is not None and key in self._spare
            self._spare.discard(key)
        return prepared, again

    def drop(self, key: str) -> None:
        """Drop the reservation of ``key`` (the lock on it is being released)."""
        with self._guard:
            prepared = self._prepared.pop(key, None)
            self._spare.discard(key)
        if prepared is not None:
            with contextlib.suppress(OSError):
                prepared.unlink()
            tmpfiles.release(prepared.name)
