"""Checks shared by every table of the server's configuration file (config.py and
upstreams/config.py), in a module of their own so that the upstream parser does not import the
configuration that holds its result."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

__all__ = ["known_keys", "private_file"]


def known_keys(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Refuse a key the table does not know: a typo must not be silently ignored."""
    for key in table:
        if key not in known:
            raise ConfigError(f"{where} has an unknown key {key!r} (known: {', '.join(sorted(known))})")


def private_file(path: str, what: str) -> str:
    """A file's text, refused if others may read it: what it holds is a secret."""
    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: "
                          f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(f"{what} {path} is readable by others: run chmod 600 {path}")
    return text.strip()
