"""``json.loads`` and ``json.dumps`` for the ``keyturn token`` fast path, without importing :mod:`json`.

Importing json costs ``keyturn token`` more than all the rest of its work: json imports re, enum,
functools and collections, about 8 ms where starting Python costs 15. The C scanner and string
encoder that json itself runs live in CPython's built-in ``_json`` module, which imports nothing;
:func:`loads` and :func:`dumps` call them as :mod:`json.decoder` and :mod:`json.encoder` do, with
json's defaults. An interpreter without them (not CPython) gets json itself.

:func:`loads` reads what ``strictjson.loads(data, as_written=True)`` reads, the way FileStore reads
a token file: bytes are UTF-8, after an optional byte order mark (``utf-8-sig``; json.loads of bytes
would also guess UTF-16 and UTF-32, which strictjson and this refuse), then JSON as json.loads reads
it (``NaN`` and the infinities included, as json.dumps writes them), with one difference: no depth
limit. strictjson refuses arrays and objects nested deeper than :data:`keyturn._jsondepth.MAX_DEPTH`;
here a document nested that deep parses (and one nested far deeper raises RecursionError), and the
fast path's caller refuses it (:func:`keyturn._record.fault`). Errors are ValueError (a
UnicodeDecodeError or JSONDecodeError is one) or RecursionError, as json's; strictjson raises its
JsonError for both.
"""

from __future__ import annotations

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["dumps", "loads"]

#: RFC 8259 §2: "Insignificant whitespace is allowed before or after any of the six structural
#: characters", and around the text: ws = *( %x20 / %x09 / %x0A / %x0D ).
_WHITESPACE = " \t\n\r"

#: The UTF-8 byte order mark, which the utf-8-sig codec drops (once) before decoding.
_BOM = b"\xef\xbb\xbf"


class _Defaults:
    """What :class:`json.JSONDecoder` hands the C scanner by default (json.loads's settings)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    # json.loads reads these three (json.dumps writes them for nan and the infinities).
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


_scan: Callable[[str, int], tuple[Any, int]] | None
_quote: Callable[[str], str] | None
try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner

    # typeshed types the context as a scanner, which has the same attributes: any such object does.
    _scan = make_scanner(_Defaults())  # type: ignore[arg-type]
except ImportError:  # pragma: no cover - not CPython: json's own pure-Python code
    _scan = _quote = None


def loads(data: str | bytes) -> Any:
    """The JSON value of a string, or of UTF-8 bytes after an optional byte order mark (what
    strictjson reads, with no depth limit); ValueError if it is not JSON."""
    if not isinstance(data, str):
        # RFC 8259 §8.1: "implementations that parse JSON texts MAY ignore the presence of a byte
        # order mark rather than treating it as an error"; strictjson does (utf-8-sig), so the fast
        # path does. By hand: the utf-8-sig codec is Python code, imported on first use.
        data = (data[3:] if data[:3] == _BOM else data).decode("utf-8")
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(data)
    text = data.strip(_WHITESPACE)
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # the scanner's "no value here"
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("not JSON: extra data after the value")
    return value


def dumps(value: str | list[Any] | tuple[Any, ...] | None) -> str:
    """``json.dumps(value)`` of a string, None, or a list or tuple of those (and of such lists)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        if _quote is None:  # pragma: no cover
            import json

            return json.dumps(value)
        return _quote(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    raise TypeError(f"the fast path writes no {type(value).__name__} (strings, None and lists only)")
