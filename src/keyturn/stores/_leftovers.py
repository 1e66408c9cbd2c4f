"""Cleaning up after killed writers in a FileStore's directory: the rules of
:mod:`._tempfiles` (stale, adopted, removed) carried out.

* :meth:`Leftovers.sweep` runs at the store's first use in a process and at every ``delete``: it
  removes the stale leftovers of every key and has the complete ones that are newer than their
  token file adopted, under their key's lock (taking the lock adopts them, :meth:`settle`).
* :meth:`Leftovers.settle` runs under the lock on one key, each time it is taken: it adopts the
  newest complete leftover of the key's token file if it is newer than the file, and removes the
  stale others.
* Neither touches a temporary file that a live writer may still rename (this process's saves in
  flight, a live process of this node within ``grace``: :func:`._tempfiles.may_rename`): that
  writer's rename would fail. One that vanishes meanwhile was renamed by its writer, or adopted
  or removed by another process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..cachekey import file_name
from ..errors import StoreError
from . import _tempfiles as tmpfiles
from ._fileio import fsync_dir, record_in
from .base import StoreLock

__all__ = ["Leftovers"]

log = logging.getLogger("keyturn.stores.file")


class Leftovers:
    """The leftovers in ``directory``; ``grace``: seconds after which a temporary file of a writer
    on another host counts as abandoned."""

    __slots__ = ("directory", "grace")

    def __init__(self, directory: Path, grace: float) -> None:
        self.directory = directory
        self.grace = grace

    def _found(self) -> list[tmpfiles.Leftover]:
        """The leftovers in the directory, but those that a live writer may still rename."""
        try:
            found = tmpfiles.leftovers(os.listdir(self.directory))
        except OSError:
            return []
        return [left for left in found if not self._in_use(left)]

    def _in_use(self, left: tmpfiles.Leftover) -> bool:
        """Whether a live writer may still rename ``left`` (or it is gone already)."""
        try:
            age = time.time() - (self.directory / left.name).lstat().st_mtime
        except OSError:
            return True  # gone meanwhile: nothing to do
        return tmpfiles.may_rename(left, age, self.grace)

    def sweep(self, lock: Callable[[str], StoreLock], forget: str | None = None) -> None:
        """Remove the stale leftovers of every key; have complete ones adopted under their key's
        lock. ``forget``: the token file being deleted, whose stale leftovers go, and whose
        complete ones go at any age (else the next lock would adopt a logged-out login)."""
        groups: dict[str, list[tmpfiles.Leftover]] = {}
        for left in self._found():
            groups.setdefault(left.main, []).append(left)
        for main, lefts in groups.items():
            key = None if main == forget else self._adoptable(main, lefts)
            if key is None:
                for left in lefts:
                    if main == forget and record_in(self.directory, left.name, main) is not None:
                        with contextlib.suppress(OSError):
                            os.unlink(self.directory / left.name)
                    else:
                        self._remove_if_stale(left)
                continue
            held = lock(key)
            try:
                if held.try_acquire():  # taking the lock adopts (FileLock); else its holder did
                    held.release()
            except StoreError as exc:
                log.warning("could not recover the token file %s: %s", main, exc)

    def _adoptable(self, main: str, lefts: list[tmpfiles.Leftover]) -> str | None:
        """The key of a leftover that holds a record newer than the token file ``main``."""
        current = record_in(self.directory, main, main)
        for left in lefts:
            found = record_in(self.directory, left.name, main)
            if found is not None and found.newer_than(current):
                return found.key
        return None

    def settle(self, key: str) -> None:
        """Under the lock on ``key``: adopt the newest complete leftover of its token file if it
        is newer than the file, and remove the stale others."""
        directory = self.directory
        main = f"{file_name(key)}.json"
        lefts = [left for left in self._found() if left.main == main]
        if not lefts:
            return
        newest, newest_record = None, record_in(directory, main, main)
        for left in lefts:
            found = record_in(directory, left.name, main)
            if found is not None and found.key == key and found.newer_than(newest_record):
                newest, newest_record = left, found
        if newest is not None:
            try:
                os.replace(directory / newest.name, directory / main)
            except FileNotFoundError:
                # Renamed meanwhile by its writer (a save without the lock), or removed by a
                # logout elsewhere: nothing to recover.
                newest = None
            except OSError as exc:
                # Refreshing now would spend the older refresh token that the server retired.
                raise StoreError(f"cannot recover the token file {directory / main} from "
                                 f"{newest.name}: {exc.strerror}") from None
            else:
                fsync_dir(directory)
                log.warning("recovered the token file %s from %s, which a writer stopped before "
                            "its rename left", main, newest.name)
        for left in lefts:
            if left is not newest:
                self._remove_if_stale(left)

    def _remove_if_stale(self, left: tmpfiles.Leftover) -> None:
        path = self.directory / left.name
        try:
            age = time.time() - path.lstat().st_mtime
            if tmpfiles.stale(left, age, self.grace):
                path.unlink()
        except OSError:
            pass  # gone meanwhile, or not ours to remove: the next sweep tries again
