"""The record a FileStore token file holds, in one place: its format number and field names, and
"the token fields of a record of key K". FileStore writes and reads records with it
(:mod:`keyturn.stores._tokenfile`, which turns the fields into a :class:`~keyturn.token.Token`), and
``keyturn token``'s fast path (:mod:`keyturn._fastpath`) reads them with it, so a token file means
the same to both. Standard library only, and no ``typing`` or ``dataclasses`` at run time: the fast
path imports it.

One line of JSON::

    {"format": 1, "key": "<cache key>", "written_at": 1700000000.0, "generation": 7,
     "token": {...Token.to_record()...}}
"""

from __future__ import annotations

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final

__all__ = ["FORMAT", "FORMAT_FIELD", "GENERATION", "KEY", "TOKEN", "WRITTEN_AT", "key_of", "make",
           "token_fields"]

#: The format number a record carries; a record of another (or none) is not a keyturn token file.
FORMAT: Final = 1

#: The field names of a record.
FORMAT_FIELD: Final = "format"
KEY: Final = "key"
WRITTEN_AT: Final = "written_at"
GENERATION: Final = "generation"
TOKEN: Final = "token"


def make(key: str, token: Mapping[str, Any], *, generation: int, written_at: float) -> dict[str, Any]:
    """The record of ``token`` (``Token.to_record()``) saved under ``key``."""
    return {FORMAT_FIELD: FORMAT, KEY: key, WRITTEN_AT: written_at, GENERATION: generation,
            TOKEN: token}


def key_of(record: object) -> str | None:
    """The cache key ``record`` was saved under, or None when it is no record of this format."""
    if not isinstance(record, dict) or record.get(FORMAT_FIELD) != FORMAT:
        return None
    key = record.get(KEY)
    return key if isinstance(key, str) else None


def token_fields(record: object, key: str) -> dict[str, Any] | None:
    """The token fields (``Token.to_record()``) of ``record`` when it is a record of this format
    saved under ``key``, else None."""
    if key_of(record) != key:
        return None
    assert isinstance(record, dict)  # key_of said so
    token = record.get(TOKEN)
    return token if isinstance(token, dict) else None
