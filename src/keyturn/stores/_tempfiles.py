"""The temporary files of a FileStore: their names, whether their writer can still be at work, and
space reserved in advance.

A save writes ``.<digest>.json.<node>-<pid>-<random>.tmp`` (earlier versions wrote
``.<digest>.json.<pid>.<thread>.tmp``), fsyncs it and renames it over ``<digest>.json``. A writer
killed before the rename leaves its temporary file behind, and such a file may hold a whole token.
The rules FileStore applies to these *leftovers*:

* **Stale.** A leftover is stale when its writer cannot still be writing it: the writer was a
  process of this node (host, boot, pid namespace: :mod:`._owner`) that no longer exists, or —
  for a writer on another node, or one an older name does not identify — the file is older than
  ``grace`` (60 s by default: a save takes milliseconds, a reserved file waits for one token
  request). A leftover of a live process of this node is stale only after a day (pids are reused).
* **Adopted.** A leftover that holds a complete, valid record of its key that is newer than the
  token file's (a higher generation, :mod:`._tokenfile`; or there is no valid token file) is a
  token a server gave that its writer fsynced and was killed before renaming: under that key's
  lock — the writer, had it been alive and saving under the lock, would hold it — it is renamed
  over the token file, at any age, because the next refresh would otherwise spend the older,
  already used refresh token.
* **Removed.** Every other stale leftover is removed: on the store's first use in a process, when
  a key's lock is taken, and on ``delete`` (logout), where the key's complete ones go at any age
  (a logged-out login must not be adopted back).
* **Its writer's** (:func:`may_rename`): a temporary file that a live writer may still rename is
  neither adopted nor removed, whatever the lock: renamed from under it, that writer's own rename
  would fail, and its save with it (a ``Store.save`` without the lock, from another thread or
  process). Those are this process's saves in flight (each of its temporary files is
  :func:`claim`-ed from before it exists until it is renamed or removed) and the files of a live
  process of this node younger than ``grace``. A writer on another node cannot be known alive:
  its complete files are adopted under the lock as above (a writer that saves under the lock
  holds it), since waiting out the grace could spend the retired refresh token.

A *reservation* (:func:`reserve`) is a temporary file whose blocks are allocated before a token
request is sent; the save of the answer overwrites it (:func:`write_into`), so that a disk that
filled up meanwhile cannot lose the answer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from . import _owner

__all__ = ["Leftover", "claim", "leftovers", "may_rename", "mount_point", "release", "reserve",
           "stale", "tmp_name", "write_into", "writing"]

#: A leftover of a live process of this node is stale after this long (pids are reused).
_SAME_NODE_LIMIT: Final = 86400.0
_NAME = re.compile(r"\.(?P<main>[0-9a-f]{40}\.json)\."
                   r"(?:(?P<node>[0-9a-f]{12})-(?P<pid>[0-9]{1,10})-[0-9a-f]{8}|"
                   r"(?P<old_pid>[0-9]{1,10})\.[0-9]{1,20})\.tmp")
#: errnos of a file system that cannot allocate in advance (then zeros are written instead).
_NO_FALLOCATE: Final = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})
_ZEROS: Final = bytes(65536)


@dataclass(frozen=True)
class Leftover:
    """A temporary file of the token file ``main``, and who wrote it (None: not known)."""

    name: str
    main: str
    node: str | None
    pid: int | None


def tmp_name(main: str) -> str:
    """A new temporary file name for the token file named ``main``."""
    return f".{main}.{_owner.node()}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def leftovers(names: Iterable[str]) -> list[Leftover]:
    """The temporary files among the directory entries ``names``."""
    found = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None:
            continue
        if match["node"] is not None:
            found.append(Leftover(name, match["main"], match["node"], int(match["pid"])))
        else:
            found.append(Leftover(name, match["main"], None, int(match["old_pid"])))
    return found


def stale(left: Leftover, age: float, grace: float) -> bool:
    """Whether the writer of ``left`` (modified ``age`` seconds ago) cannot still be at work."""
    if left.node == _owner.node() and left.pid is not None:
        return not _owner.alive(left.pid) or age > _SAME_NODE_LIMIT
    return age > grace


#: The names of this process's temporary files whose writer is still to rename or remove them.
_in_flight: set[str] = set()
_in_flight_guard = threading.Lock()


def _forget_in_flight() -> None:  # pragma: no cover - runs in a forked child
    # A forked child's temporary files carry its own pid: its parent's are another process's.
    global _in_flight_guard
    _in_flight_guard = threading.Lock()  # a thread of the parent may have held it at the fork
    _in_flight.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_flight)


def claim(name: str) -> None:
    """Before this process creates the temporary file ``name``: until :func:`release`, no sweep
    of this process adopts or removes it (:func:`may_rename`)."""
    with _in_flight_guard:
        _in_flight.add(name)


def release(name: str) -> None:
    """Once the temporary file ``name`` is renamed or removed."""
    with _in_flight_guard:
        _in_flight.discard(name)


@contextlib.contextmanager
def writing(name: str) -> Iterator[None]:
    """:func:`claim` and :func:`release` around the whole life of the temporary file ``name``."""
    claim(name)
    try:
        yield
    finally:
        release(name)


def may_rename(left: Leftover, age: float, grace: float) -> bool:
    """Whether a live writer may still rename ``left`` (modified ``age`` seconds ago): one of this
    process's saves in flight, or a live process of this node that wrote it within ``grace``."""
    if left.node != _owner.node() or left.pid is None:
        return False  # another node's writer, or an older name: the lock and the grace decide
    if left.pid == os.getpid():
        # Exact: a file of this pid that no save here has in flight is a dead writer's (a
        # process before this one with the same pid, or a save that could not remove it).
        with _in_flight_guard:
            return left.name in _in_flight
    return age <= grace and _owner.alive(left.pid)


def reserve(path: str, size: int) -> None:
    """Create ``path`` (0600) with ``size`` bytes allocated on disk, or raise OSError (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        except (AttributeError, OSError) as exc:  # AttributeError: macOS has no posix_fallocate
            if isinstance(exc, OSError) and exc.errno not in _NO_FALLOCATE:
                raise
            written = 0
            while written < size:
                written += os.write(fd, _ZEROS[: size - written])
        # NFS reports a full disk only when the data reaches the server: here, not at the save.
        os.fsync(fd)
    finally:
        os.close(fd)


def write_into(path: str, payload: bytes) -> None:
    """Overwrite the reserved file ``path`` with ``payload`` (its blocks are allocated already),
    cut it to that length and fsync it. FileNotFoundError when it is gone."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        view = memoryview(payload)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(fd, view[offset:], offset)
        os.ftruncate(fd, len(payload))
        os.fsync(fd)
    finally:
        os.close(fd)


def mount_point(path: str) -> str:
    """The mount point of the file system that holds ``path`` (for messages)."""
    try:
        here = os.path.realpath(path)
        device = os.stat(here).st_dev
        while True:
            parent = os.path.dirname(here)
            if parent == here or os.stat(parent).st_dev != device:
                return here
            here = parent
    except OSError:
        return path
