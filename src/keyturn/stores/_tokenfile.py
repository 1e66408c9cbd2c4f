"""The record of a FileStore token file as bytes and back: what a save writes, and what a load and
the adoption of a killed writer's leftover (:mod:`._tempfiles`) accept back. The format itself (its
number, its fields, which records are valid and their token fields) is :mod:`keyturn._record`'s,
which the ``keyturn token`` fast path reads token files with too: it answers from no record that
:func:`decode` refuses.

``generation`` is one more than that of the record the save replaced (1 when there was none, or
it had none): it orders two records of one key written under its lock without comparing the wall
clocks of two hosts, which may differ. Records of older keyturn versions have no ``generation``;
they still load, and a comparison with one of them falls back to ``written_at``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .. import _record, strictjson
from ..cachekey import file_name
from ..errors import StoreError
from ..token import Token

__all__ = ["Damaged", "Record", "decode", "encode"]


class Damaged(ValueError):
    """Not a whole, valid record of the token file: ``why`` says what is wrong without quoting it."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True, repr=False)
class Record:
    key: str
    token: Token
    written_at: float  # the writer's wall clock; -inf when the record has none
    generation: int | None  # None in the records of older versions

    def __repr__(self) -> str:  # the token is a secret: never in a repr
        return f"Record(generation={self.generation}, written_at={self.written_at})"

    def newer_than(self, other: Record | None) -> bool:
        """Whether this record was written after ``other`` (None: no valid record)."""
        if other is None:
            return True
        if self.generation is not None and other.generation is not None:
            return self.generation > other.generation
        return self.written_at > other.written_at


def encode(key: str, token: Token, *, generation: int, written_at: float) -> bytes:
    return json.dumps(
        _record.make(key, token.to_record(), generation=generation, written_at=written_at),
        separators=(",", ":"),
    ).encode()


def decode(data: bytes, main: str) -> Record:
    """The record ``data`` of the token file named ``main`` (``<digest>.json``), or Damaged."""
    try:
        record = strictjson.loads(data, as_written=True)
        key = _record.key_of(record)
        if key is None:
            raise Damaged("not a keyturn token file")
        if f"{file_name(key)}.json" != main:
            raise Damaged("the record of another key")
        # The check the fast path makes too (keyturn._record): it answers from no record this
        # refuses. Token.from_record refuses none of the fields it lets through.
        why = _record.fault(record, key)
        if why is not None:
            raise Damaged(why)
        token = Token.from_record(record[_record.TOKEN])
        written = record.get(_record.WRITTEN_AT)
        generation = record.get(_record.GENERATION)
    except Damaged:
        raise
    except strictjson.JsonError as exc:
        raise Damaged(exc.reason) from None
    # RecursionError: a record that parsed but is walked recursively later is damage as well.
    # StoreError: Token.from_record's "malformed". The class names quote no value of the token.
    except (KeyError, AttributeError, TypeError, ValueError, RecursionError, StoreError) as exc:
        raise Damaged(exc.__class__.__name__) from None
    return Record(
        key, token,
        float(written) if type(written) in (int, float) and not math.isnan(written) else -math.inf,
        generation if type(generation) is int and generation >= 0 else None,
    )
