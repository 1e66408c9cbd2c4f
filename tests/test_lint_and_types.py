"""Lint and types are part of the tests: ruff on the code and tests, mypy --strict on src/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mypycheck import cache_dir

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff():
    if shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists():
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    result = run(sys.executable, "-m", "ruff", "check", "src", "tests", "examples", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict():
    result = run(sys.executable, "-m", "mypy", "src")  # strict = true in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts():
    """The layers: protocol/ does no I/O, the server imports no client source, no cycles between
    sibling modules ([tool.importlinter] in pyproject.toml)."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    result = run(str(lint), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_names_are_typed_for_users(tmp_path):
    """keyturn ships py.typed: `from keyturn import X` must type-check under --strict for every
    public name (lazy loading must not hide them from mypy)."""
    import keyturn

    assert set(keyturn.__all__) == set(keyturn._LAZY)
    user = tmp_path / "user_code.py"
    user.write_text(f"from keyturn import {', '.join(keyturn.__all__)}\n\n"
                    f"print({', '.join(keyturn.__all__)})\n")
    result = run(sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache_dir(), str(user))
    assert result.returncode == 0, result.stdout + result.stderr
