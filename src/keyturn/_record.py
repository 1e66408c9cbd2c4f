"""The record a FileStore token file holds, in one place: its format number and field names, and
which records are valid ones of a key K (:func:`fault`) and their token fields (:func:`token_fields`).
FileStore writes and reads records with it (:mod:`keyturn.stores._tokenfile`, which turns the
fields into a :class:`~keyturn.token.Token`), and ``keyturn token``'s fast path
(:mod:`keyturn._fastpath`) reads them with it. So the fast path never answers from a record that
FileStore would move aside as damaged: both parse the file (strictjson, or :mod:`keyturn._fastjson`,
which parses the same texts except that it leaves the depth limit to :func:`fault`) and then ask
:func:`fault`. The fast path refuses more than FileStore, never less: an empty access token (a
login that holds only a refresh token) or one due for refresh is no answer, the full command line
refreshes it. Standard library only, and no ``typing`` or ``dataclasses`` at run time: the fast
path imports it, on every ``keyturn token``.

One line of JSON::

    {"format": 1, "key": "<cache key>", "written_at": 1700000000.0, "generation": 7,
     "token": {...Token.to_record()...}}
"""

from __future__ import annotations

from ._jsondepth import MAX_DEPTH, depth_exceeds

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final

__all__ = ["FORMAT", "FORMAT_FIELD", "GENERATION", "KEY", "TOKEN", "WRITTEN_AT", "fault", "key_of",
           "make", "token_fault", "token_fields"]

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


#: What ``Token.to_record()`` writes in each token field, and so all a valid record holds there
#: (a field left out reads as None; older versions wrote no more than these).
_STRINGS: Final = ("token_type", "refresh_token", "id_token")  # str or None
_NUMBERS: Final = ("expires_at", "issued_at", "refresh_expires_at")  # seconds, or None
#: The largest finite double: a larger JSON integer parses, then fails ``float()``.
_DOUBLE_MAX: Final = 1.7976931348623157e308


def token_fault(fields: Mapping[str, Any]) -> str | None:
    """Why the token fields ``fields`` are not what ``Token.to_record()`` writes, in words that
    quote none of their values; None when they are: ``access_token`` a string (empty in a login
    that holds only a refresh token); ``token_type``, ``refresh_token`` and ``id_token`` strings or
    None; ``expires_at``, ``issued_at`` and ``refresh_expires_at`` numbers (not booleans) or None;
    ``scope`` a list of strings or None; ``extra`` an object or None. ``Token.from_record`` turns
    such fields into a Token without fail."""
    if type(fields.get("access_token")) is not str:
        return "its access_token is not a string"
    for name in _STRINGS:
        value = fields.get(name)
        if value is not None and type(value) is not str:
            return f"its {name} is neither a string nor null"
    for name in _NUMBERS:
        value = fields.get(name)
        # type(), not isinstance(): True is an int, and no count of seconds.
        if value is not None and not (type(value) is float or (
                type(value) is int and -_DOUBLE_MAX <= value <= _DOUBLE_MAX)):
            return f"its {name} is neither a number nor null"
    scope = fields.get("scope")
    if scope is not None and (type(scope) is not list
                              or not all(type(item) is str for item in scope)):
        return "its scope is neither a list of strings nor null"
    extra = fields.get("extra")
    if extra is not None and type(extra) is not dict:
        return "its extra is neither an object nor null"
    return None


def fault(record: object, key: str) -> str | None:
    """Why ``record`` (parsed JSON) is not a valid record of this format saved under ``key``, in
    words that quote none of its values; None when it is one. Nested deeper than strictjson's
    limit (:data:`keyturn._jsondepth.MAX_DEPTH`, which strictjson refuses first when FileStore
    reads) is not valid either."""
    if key_of(record) != key:
        return "not a keyturn token file of this key"
    assert isinstance(record, dict)  # key_of said so
    if depth_exceeds(record, MAX_DEPTH):
        return f"it nests arrays or objects deeper than {MAX_DEPTH} levels"
    token = record.get(TOKEN)
    if not isinstance(token, dict):
        return "the record holds no token object"
    why = token_fault(token)
    return None if why is None else f"the token object is malformed: {why}"


def token_fields(record: object, key: str) -> dict[str, Any] | None:
    """The token fields (``Token.to_record()``) of ``record`` when it is a valid record of this
    format saved under ``key`` (:func:`fault` finds nothing wrong), else None."""
    if fault(record, key) is not None:
        return None
    assert isinstance(record, dict)  # fault said so
    token: dict[str, Any] = record[TOKEN]
    return token
