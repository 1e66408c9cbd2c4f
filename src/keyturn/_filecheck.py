"""Whether a token directory or file on disk may be trusted (os and stat only: the fast path uses it).

A token file is trusted only when nobody but the current user can have written it, and nobody but
the user can read it: the directory and the file belong to the user (``os.getuid()``), are a real
directory and a regular file (never followed through a symbolic link), and no other user can write
them; the file is also unreadable by others (FileStore writes 0600). :class:`keyturn.stores.file
.FileStore` and ``keyturn token``'s fast path (:mod:`keyturn._fastpath`) both ask here, so the rule
lives once. Each problem is one sentence that says what to fix; none holds a secret (token file
names are digests of the cache key).
"""

from __future__ import annotations

import os
import stat

# Not ``typing``: the fast path must not pay for importing it; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["UntrustedFile", "directory_problem", "file_problem", "open_checked"]

#: Mode bits that let another user add, replace or change entries (directory) or bytes (file).
_WRITABLE_BY_OTHERS = 0o022
#: Mode bits that let another user do anything at all with a token file.
_ANY_OTHERS = 0o077
_WHERE = "set cache_dir (or FileStore(path=...))"


class UntrustedFile(Exception):
    """A token directory or file that :func:`directory_problem` or :func:`file_problem` refuses."""


def _foreign(info: os.stat_result) -> bool:
    return hasattr(os, "getuid") and info.st_uid != os.getuid()


def directory_problem(info: os.stat_result, path: str, *, tightening: bool = False) -> str | None:
    """Why the token directory ``path`` (its ``lstat``/``fstat`` is ``info``) may not be trusted,
    or None. ``tightening``: the caller is about to chmod a directory of the user's to 0700 itself
    (FileStore does), so other users' write bits on it are not a problem."""
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link, not a directory: {_WHERE} to the one it names"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory: {_WHERE} elsewhere"
    if _foreign(info):
        return f"{path} belongs to another user: tokens must live in a directory of your own; " \
               f"{_WHERE} to one"
    if not tightening and stat.S_IMODE(info.st_mode) & _WRITABLE_BY_OTHERS:
        return f"{path} can be written by other users: run chmod 700 {path}"
    return None


def file_problem(info: os.stat_result, path: str, *, private: bool = True) -> str | None:
    """Why the file ``path`` (its ``fstat`` is ``info``) may not be trusted, or None.
    ``private``: it holds tokens, so others may not even read it (else: not write it)."""
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link, not a file keyturn wrote: remove it"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file: remove it"
    if _foreign(info):
        return f"{path} belongs to another user, so it holds no token of yours: remove it"
    mode = stat.S_IMODE(info.st_mode)
    if mode & (_ANY_OTHERS if private else _WRITABLE_BY_OTHERS):
        return (f"{path} is open to other users (mode {mode:04o}, keyturn writes 0600): its token "
                "may have been read or replaced; remove it and log in again")
    return None


def _opened(path: str, flags: int, dir_fd: int | None,
            describe: Callable[[os.stat_result], str | None]) -> int:
    """``os.open`` that says in words why a symbolic link (O_NOFOLLOW's ELOOP) or a non-directory
    (O_DIRECTORY's ENOTDIR) was refused; ``describe`` is the problem function for ``path``."""
    try:
        return os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        try:
            info = os.lstat(path, dir_fd=dir_fd)
        except OSError:
            info = None
        problem = describe(info) if info is not None else None
        if problem is None:
            raise
        raise UntrustedFile(problem) from None


def open_checked(path: str, *, private: bool = True) -> int:
    """A read-only descriptor of ``path`` once its directory and the opened file pass the checks.

    The checks look at what was opened (``fstat``; the file is opened relative to the checked
    directory's descriptor), so nothing can be swapped in between. ``O_NONBLOCK``: a FIFO planted
    as the file fails the check instead of blocking the open for ever. Raises
    :class:`UntrustedFile`, or :class:`OSError` (FileNotFoundError when there is no file).
    """
    directory, name = os.path.split(path)
    directory = directory or "."
    dir_fd = _opened(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, None,
                     lambda info: directory_problem(info, directory))
    try:
        problem = directory_problem(os.fstat(dir_fd), directory)
        if problem is not None:
            raise UntrustedFile(problem)
        fd = _opened(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd,
                     lambda info: file_problem(info, path, private=private))
    finally:
        os.close(dir_fd)
    try:
        problem = file_problem(os.fstat(fd), path, private=private)
    except BaseException:
        os.close(fd)
        raise
    if problem is not None:
        os.close(fd)
        raise UntrustedFile(problem)
    return fd
