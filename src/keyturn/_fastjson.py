"""``json.loads`` and ``json.dumps`` for the ``keyturn token`` fast path, without importing :mod:`json`.

Importing json costs ``keyturn token`` more than all the rest of its work: json imports re, enum,
functools and collections, about 8 ms where starting Python costs 15. The C scanner and string
encoder that json itself runs live in CPython's built-in ``_json`` module, which imports nothing;
:func:`loads` and :func:`dumps` call them as :mod:`json.decoder` and :mod:`json.encoder` do, with
json's defaults, so they read and write exactly what json does. An interpreter without them (not
CPython) gets json itself. Errors are ValueError (JSONDecodeError is one) or RecursionError, as
json's.
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
    """``json.loads(data)`` of a string or UTF-8 bytes (what keyturn writes); ValueError if it is
    not JSON."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(data)
    text = (data if isinstance(data, str) else data.decode("utf-8")).strip(_WHITESPACE)
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
