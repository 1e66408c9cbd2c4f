"""The keyturn command line as a subprocess, with its own config and cache directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.clihelper import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
