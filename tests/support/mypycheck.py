"""Type-check a user's code with mypy --strict, for tests that show what the type checker refuses."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mypy import api

_cache: str | None = None


def cache_dir() -> str:
    """One mypy cache for this test process's checks, in a fresh directory removed at exit:
    keyturn, httpx and typeshed are analysed by the first check only, and each user module after
    that on its own (mypy's incremental mode reports what a full run does; it skips re-analysing
    modules that did not change, and nothing changes them during a session)."""
    global _cache
    if _cache is None:
        _cache = tempfile.mkdtemp(prefix="keyturn-mypy-")
        atexit.register(shutil.rmtree, _cache, True)
    return _cache


def mypy_errors(directory: Path, lines: Sequence[str]) -> tuple[dict[int, set[str]], str]:
    """The error codes mypy --strict gives each line (1-based) of a module made of ``lines``,
    written in ``directory``, and mypy's output (for assertion messages)."""
    user = directory / "user_code.py"
    user.write_text("\n".join(lines) + "\n")
    stdout, stderr, _ = api.run(["--strict", "--cache-dir", cache_dir(), "--no-error-summary",
                                 "--hide-error-context", str(user)])
    assert not stderr, stderr
    errors: dict[int, set[str]] = {}
    for match in re.finditer(r"user_code\.py:(\d+): error: .*\[([a-z-]+)\]", stdout):
        errors.setdefault(int(match.group(1)), set()).add(match.group(2))
    return errors, stdout
