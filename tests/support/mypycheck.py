"""Type-check a user's code with mypy --strict, for tests that show what the type checker refuses."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mypy import api


def mypy_errors(directory: Path, lines: Sequence[str]) -> tuple[dict[int, set[str]], str]:
    """The error codes mypy --strict gives each line (1-based) of a module made of ``lines``,
    written in ``directory``, and mypy's output (for assertion messages)."""
    user = directory / "user_code.py"
    user.write_text("\n".join(lines) + "\n")
    stdout, stderr, _ = api.run(["--strict", "--no-incremental", "--no-error-summary",
                                 "--hide-error-context", str(user)])
    assert not stderr, stderr
    errors: dict[int, set[str]] = {}
    for match in re.finditer(r"user_code\.py:(\d+): error: .*\[([a-z-]+)\]", stdout):
        errors.setdefault(int(match.group(1)), set()).add(match.group(2))
    return errors, stdout
