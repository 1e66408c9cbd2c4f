"""The records of the lease lock files and their claims, and the system calls that read and write them.

A lock or claim file holds one line of JSON, its writer's record (its fields are shown in
:mod:`._leaselock`'s docstring). Here is what a record says (:class:`Seen`), how it is encoded,
and how a file is read, created exclusively and rewritten in place; :mod:`._leaselock` tells how
the lock uses them, and why two contenders never both hold it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import StoreError
from . import _owner

__all__ = ["Seen", "create", "decode", "digest", "encode", "error", "pwrite_all", "read", "unlink"]

#: A record is one short line; more than this is not a record.
_READ_MAX: Final = 4096
_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Seen:
    """What a lock or claim file held when it was read."""

    ident: str  # the record's id; for an unreadable file, a digest of the file
    node: str | None
    pid: int | None
    expires: float | None  # wall clock; None when unreadable
    mtime: float


def digest(body: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def encode(ident: str, expires: float) -> bytes:
    body: dict[str, object] = {
        "id": ident, "host": _owner.hostname(), "node": _owner.node(), "pid": os.getpid(),
        # Whole milliseconds: 13 digits until the year 2286, so a rewrite never changes the length.
        "expires_ms": int(expires * 1000),
    }
    return (json.dumps({**body, "check": digest(body)}, separators=(",", ":")) + "\n").encode()


def decode(data: bytes, info: os.stat_result) -> Seen:
    try:
        record = json.loads(data)
        body = {k: v for k, v in record.items() if k != "check"}
        ident, node, pid, expires = body["id"], body["node"], body["pid"], body["expires_ms"]
        if (record.get("check") != digest(body) or not isinstance(ident, str)
                or not _ID.fullmatch(ident) or not isinstance(node, str)
                or type(pid) is not int or type(expires) is not int):
            raise ValueError("not a lock record")
        return Seen(ident, node, pid, expires / 1000, info.st_mtime)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        # Named by everything that changes when the file does, so that a claim on it is a claim
        # on this very content.
        what = f"{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}:{info.st_size}:".encode() + data
        return Seen("u" + hashlib.sha256(what).hexdigest()[:31], None, None, None, info.st_mtime)


def read(path: Path) -> Seen | None:
    """What the lock or claim file ``path`` holds, or None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error("cannot read the lock file", path, exc) from None
    try:
        info = os.fstat(fd)
        data = os.read(fd, _READ_MAX)
    except OSError as exc:
        if exc.errno == errno.ESTALE:  # NFS: removed on the server meanwhile
            return None
        raise error("cannot read the lock file", path, exc) from None
    finally:
        os.close(fd)
    return decode(data, info)


def create(path: Path, record: bytes, *, durable: bool) -> int | None:
    """A descriptor of ``path``, created exclusively and holding ``record``; None if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        return None
    except OSError as exc:
        raise error("cannot create the lock file", path, exc) from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        pwrite_all(fd, record)
        if durable:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        # Ours to remove: an unreadable file is left alone by others for a whole lease.
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise error("cannot write the lock file", path, exc) from None
    return fd


def pwrite_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def error(what: str, path: Path, exc: OSError) -> StoreError:
    return StoreError(f"{what} {path}: {exc.strerror}")
