"""Render an exception as people and tools see it, with every frame's locals, and look for secrets.

Shared by tests/unit/test_secrets_in_tracebacks.py and tests/integration/test_tracebacks_provider.py
(issue 9, "no secret in traceback locals").
"""

from __future__ import annotations

import io
import re
import traceback
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.traceback import Traceback

__all__ = ["assert_hidden", "capture", "fragments", "leaks", "render_rich", "render_stdlib",
           "renderings", "with_cause", "with_context"]


def render_stdlib(exc: BaseException) -> str:
    te = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return "".join(te.format())


def render_rich(exc: BaseException, **limits: Any) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(Traceback.from_exception(type(exc), exc, exc.__traceback__, show_locals=True,
                                           **limits))
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def fragments(secret: str) -> list[str]:
    """The secret and pieces of it: rich shortens long values and wraps long lines."""
    size = 12
    pieces = [secret[i:i + size] for i in range(0, max(1, len(secret) - size + 1), 6)]
    return [secret, *pieces]


def leaks(text: str, hidden: list[str], labels: dict[str, str] | None = None) -> list[str]:
    """What of ``hidden`` shows in ``text`` (the secret, or 12 characters of it), by label."""
    return sorted({(labels or {}).get(s, f"secret #{hidden.index(s)}") for s in hidden
                   for piece in fragments(s) if piece in text})


def with_cause(exc: BaseException) -> BaseException:
    try:
        raise RuntimeError("the caller's own error") from exc
    except RuntimeError as outer:
        return outer


def with_context(exc: BaseException) -> BaseException:
    try:
        try:
            raise exc
        except Exception:
            raise RuntimeError("the caller failed while handling it")
    except RuntimeError as outer:
        return outer


def capture(call: Callable[[], Any]) -> BaseException:
    """The exception ``call`` raises. This frame holds no secret; the traceback starts here."""
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("no error was raised")


def renderings(exc: BaseException) -> dict[str, str]:
    """``exc`` rendered with locals by the standard library and by rich (with its default
    shortening of long values, and without it)."""
    return {
        "traceback": render_stdlib(exc),
        "rich": render_rich(exc),
        "rich, no limits": render_rich(exc, locals_max_length=10_000, locals_max_string=100_000),
    }


def assert_hidden(exc: BaseException, hidden: list[str], labels: dict[str, str] | None = None,
                  *, shows: str | None = None, frames: str = "keyturn") -> None:
    """Render ``exc`` every way, alone and chained as ``__cause__`` and ``__context__``: none of
    ``hidden`` may appear, and the frames' locals must (a test that finds nothing has looked):
    the text names ``frames`` (whose code raised) and shows locals."""
    assert all(hidden), "a secret of the test is empty"
    for shown in (exc, with_cause(exc), with_context(exc)):
        for how, text in renderings(shown).items():
            assert exc.__class__.__name__ in text, how
            assert frames in text and re.search(r"\b(self|request|flow|exc) +=", text), how
            found = leaks(text, hidden, labels)
            assert not found, f"{how} rendering of {shown!r} shows {found}:\n{text}"
            if shows is not None:
                assert shows in text, f"{how}: expected {shows!r} in:\n{text}"
