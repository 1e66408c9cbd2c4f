"""The one JSON parser of keyturn: every document from a server, a token file or a JWT goes here.

``json.loads`` alone lets hostile or damaged input escape as an untyped error or as a value that
fails later: ``[`` nested 100,000 deep raises ``RecursionError`` (not a ``ValueError``, so no
``except ValueError`` catches it); one nested a little less deep parses, then breaks whatever
walks it next (``json.dumps`` when the token is saved, after the server rotated the refresh
token: 990 levels parse at the top of a stack, and do not dump twenty frames deeper); ``NaN`` and
``1e999999`` parse to floats no JSON document can hold. :func:`loads` refuses all of them with
:class:`JsonError`, a ``ValueError``, so each caller's ``except ValueError`` turns it into that
caller's typed error (``InvalidResponse``, ``InvalidIdToken``, a quarantined token file) with the
reason in words. No message quotes the input: it may hold a token. What keyturn wrote itself is
read with ``as_written=True``, which takes back what ``json.dumps`` writes (``NaN`` included).

Stdlib only, and cheap (a few microseconds on a token file): every store read goes through it.
"""

from __future__ import annotations

import json
import math
import re

# The depth limit, and its walk, in the one place the token file check (keyturn._record) uses too.
from ._jsondepth import MAX_DEPTH
from ._jsondepth import depth_exceeds as _depth_exceeds

# Not ``typing``: importing it costs the fast path milliseconds (see cachekey.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["MAX_DEPTH", "JsonError", "loads"]

# A lone UTF-16 surrogate can only come from a \uD800-\uDFFF escape: the text was decoded as UTF-8,
# which has none. Only when one appears are the strings checked one by one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonError(ValueError):
    """The text is not JSON keyturn accepts; ``str()`` says why, without quoting the text.

    ``syntax`` is True when the text is not JSON at all (an HTML page, a truncated body), False
    when it is JSON with something keyturn refuses in it (too deep, a number out of range)."""

    def __init__(self, reason: str, *, syntax: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.syntax = syntax


def _refuse_constant(name: str) -> NoReturn:
    # RFC 8259 §6: "Numeric values that cannot be represented in the grammar below (such as
    # Infinity and NaN) are not permitted."
    raise JsonError(f"{name} is not a JSON number (RFC 8259 §6)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # RFC 8259 §6: "This specification allows implementations to set limits on the range and
        # precision of numbers accepted." A number beyond a double is no count of seconds.
        raise JsonError("it holds a number beyond the range of a double (RFC 8259 §6)")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def loads(data: bytes | bytearray | str, *, as_written: bool = False) -> Any:
    """The JSON value of ``data`` (UTF-8 bytes or text), or :class:`JsonError` saying why not.

    ``as_written=True`` is for text keyturn wrote itself with ``json.dumps`` (a token file, a
    server record): ``NaN``, ``Infinity`` and unpaired surrogates, which ``json.dumps`` writes, are
    read back as they were written, so a token saved by an older keyturn is never refused for
    them. The depth limit holds either way: nothing keyturn writes nests that deep.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            # RFC 8259 §8.1: "JSON text exchanged between systems that are not part of a closed
            # ecosystem MUST be encoded using UTF-8"; "implementations that parse JSON texts MAY
            # ignore the presence of a byte order mark".
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise JsonError("it is not UTF-8 text (RFC 8259 §8.1)", syntax=True) from None
    else:
        text = data
    try:
        value = json.loads(text) if as_written else json.loads(
            text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except JsonError:
        raise
    except RecursionError:
        raise JsonError(f"it nests arrays or objects deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's own words ("Expecting value"); exc.doc, the text, stays out.
        raise JsonError(f"it is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                        syntax=True) from None
    except ValueError:
        # The only other ValueError of the parser: an integer of more digits than int() converts
        # (sys.get_int_max_str_digits, 4300 by default).
        raise JsonError("it holds a number with too many digits") from None
    if isinstance(value, (dict, list)) and _depth_exceeds(value, MAX_DEPTH):
        raise JsonError(f"it nests arrays or objects deeper than {MAX_DEPTH} levels")
    if not as_written and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        # RFC 8259 §8.2: with an unpaired surrogate "the behavior of software that receives JSON
        # texts containing such values is unpredictable"; here, a UnicodeEncodeError the moment
        # the string is sent in a header or written to a file.
        raise JsonError("it holds a string with an unpaired UTF-16 surrogate (RFC 8259 §8.2)")
    return value
