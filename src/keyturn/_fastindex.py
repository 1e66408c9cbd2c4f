"""The fast path's index: which token file answers which ``keyturn token`` command line.

The full command line (:mod:`keyturn.cli`) writes an entry each time it answers or logs in: the
token file, the cache key, the leeway, and what the profile's resolution depended on (the config
file and the secret files, by mtime, size and inode; the names of the secret variables). The fast
path (:mod:`keyturn._fastpath`) reads it, and believes an entry only while all of that is
unchanged, so it need not parse the config file. ``keyturn status`` reads it to list the logins of
ad-hoc command lines. No secret is ever written here: paths, a cache key, variable names.

An index another user could have written is no index (:mod:`keyturn._filecheck`): its entries name
the file whose token is printed, so a planted entry would be printed. Standard library only.
"""

from __future__ import annotations

import os

from . import _fastjson
from ._filecheck import UntrustedFile, open_checked
from .paths import config_file, fast_path_index

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

__all__ = ["find", "index_key", "index_path", "remember", "remembered_ad_hoc"]

#: Entries kept; the oldest goes first (a user runs a handful of command lines, not hundreds).
MAX_ENTRIES = 64


index_path = fast_path_index


def index_key(name: str | None, overrides: Mapping[str, Any]) -> str:
    """The index key of a command line: everything that decides which profile it resolves to."""
    return _fastjson.dumps([config_file(), os.environ.get("KEYTURN_PROFILE"), name,
                            sorted(overrides.items())])


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mtime_ns, info.st_size, info.st_ino]


def _read() -> dict[str, Any]:
    """The index, or {} when there is none, or it is damaged, or another user could have written
    it (its entries name the token file to print: one planted there would be printed)."""
    try:
        with os.fdopen(open_checked(index_path(), private=False), "rb") as handle:
            index = _fastjson.loads(handle.read())
    except (OSError, ValueError, RecursionError, UntrustedFile):
        return {}
    return index if isinstance(index, dict) else {}


def find(name: str | None, overrides: Mapping[str, Any]) -> tuple[str, str, float] | None:
    """(token file, cache key, leeway) remembered for this command line, if still true of the
    config. Raises on an entry of the wrong shape (OSError, ValueError, KeyError, TypeError,
    AttributeError): the caller then reads the config instead."""
    entry = _read().get(index_key(name, overrides))
    if not entry:
        return None
    # The profile resolves as it did when the entry was written only while the config file and
    # the secret files are unchanged and the secret variables are still set.
    if any(_stat(path) != seen for path, seen in entry["files"]):
        return None
    if not all(os.environ.get(variable) for variable in entry["env"]):
        return None
    return str(entry["store"]), str(entry["key"]), float(entry["leeway"])


def remember(name: str | None, overrides: Mapping[str, Any], *, store_file: str, key: str,
             leeway: float, env: Sequence[str], files: Sequence[str]) -> None:
    """Record, for the fast path, which token file answers this command line (no secrets: paths,
    the cache key, and the names of the variables and files the profile's secrets come from)."""
    import json  # only here, where the full command line writes: the fast path only reads

    path = index_path()
    # Entries of an index another user could have written are dropped, not carried over.
    index = _read()
    config = _fastjson.loads(index_key(name, overrides))[0]
    index[index_key(name, overrides)] = {
        "store": store_file, "key": key, "leeway": leeway, "env": list(env),
        "files": [[p, _stat(p)] for p in [config, *files]],
    }
    while len(index) > MAX_ENTRIES:
        index.pop(next(iter(index)))
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(index))
        os.replace(tmp, path)
    except OSError:
        pass  # only the fast path is lost: the next call reads the config instead


def remembered_ad_hoc() -> list[dict[str, Any]]:
    """The ``--issuer/--client-id/...`` settings of the ad-hoc command lines the index remembers
    for the current configuration (``keyturn status`` lists their logins beside the profiles)."""
    index = _read()
    current = _fastjson.loads(index_key(None, {}))
    found: list[dict[str, Any]] = []
    for key in index:
        try:
            config, env_profile, name, items = _fastjson.loads(key)
            overrides = dict(items)
        except (ValueError, TypeError, RecursionError):
            continue
        if ([config, env_profile, name] == current[:3] and overrides.get("issuer")
                and overrides not in found):
            found.append(overrides)
    return found
