"""A FileStore's token files on disk: read back whole and trusted, written atomically.

* **Reads** open only a private file of the user's, never through a symbolic link
  (:mod:`keyturn._filecheck`, the rule the ``keyturn token`` fast path applies too), and accept only
  a whole, valid record (:mod:`._tokenfile`). A damaged token file is moved aside, with one warning,
  and reads as a miss.
* **Writes** go to a temporary file in the same directory (or into the file reserved for the save,
  :mod:`._reservations`), are fsynced, then renamed over the old file, and the directory is fsynced:
  a reader, or a process killed mid-write, only ever sees the old or the new token. Immediately
  before the rename the caller's ``fence`` may refuse it (a holder that lost its lease lock raises
  ``LockLost``); whatever stops a write, no token is left behind in a stray file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from .._filecheck import UntrustedFile, open_checked
from ..errors import StoreError
from ..token import Token
from . import _tempfiles as tmpfiles
from . import _tokenfile as tokenfile

__all__ = ["fsync_dir", "load", "record_in", "write_new", "write_reserved"]

log = logging.getLogger("keyturn.stores.file")


def load(path: Path, key: str) -> Token | None:
    """The token of ``key`` in the token file ``path``; None when there is none, or it was damaged
    (then it is moved aside)."""
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
        _quarantine(path, exc.why)
        return None
    return record.token


def _quarantine(path: Path, why: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        os.replace(path, aside)
    except OSError:
        return
    log.warning("token file %s was damaged (%s); moved aside to %s", path, why, aside.name)


def record_in(directory: Path, name: str, main: str) -> tokenfile.Record | None:
    """The whole, valid record of the token file ``main`` held in the directory's file
    ``name`` (the token file itself, or a leftover); None when there is none."""
    try:
        fd = open_checked(str(directory / name))
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


def write_reserved(prepared: Path, path: Path, payload: bytes, fence: Callable[[], None]) -> bool:
    """Write ``payload`` into the reserved file ``prepared`` and rename it over ``path``; False
    when that file cannot be used (the caller then writes a new one). Either way ``prepared`` is
    gone after this, and released (it was claimed when it was reserved, :mod:`._reservations`)."""
    try:
        tmpfiles.write_into(str(prepared), payload)
        fence()
        os.replace(prepared, path)
    except OSError as exc:
        # Gone (a sweep elsewhere judged it abandoned) or unusable: a save of its own.
        log.debug("cannot save into the reserved file %s (%s)", prepared.name, exc.strerror)
        with contextlib.suppress(OSError):
            prepared.unlink()
        return False
    except BaseException:  # LockLost, a KeyboardInterrupt: no token left in a stray file
        with contextlib.suppress(OSError):
            prepared.unlink()
        raise
    finally:
        tmpfiles.release(prepared.name)
    fsync_dir(path.parent)
    return True


def write_new(path: Path, payload: bytes, fence: Callable[[], None]) -> None:
    """Write ``payload`` to a new temporary file (0600) and rename it over ``path``."""
    tmp = path.with_name(tmpfiles.tmp_name(path.name))
    # Claimed before it exists, so that no sweep of this process renames it from under the
    # os.replace below (a save without the lock, among other threads' saves).
    with tmpfiles.writing(tmp.name):
        _write_new(tmp, path, payload, fence)


def _write_new(tmp: Path, path: Path, payload: bytes, fence: Callable[[], None]) -> None:
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
        fence()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:  # a KeyboardInterrupt too: no token left in a stray file
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write the token file {path}: {exc.strerror}") from None
        raise


def fsync_dir(path: Path) -> None:
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
