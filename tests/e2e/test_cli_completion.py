"""Shell completion as docs/cli.md tells a person to set it up: ``_KEYTURN_COMPLETE``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.support.clihelper import Cli


def test_bash_completion_of_commands_and_options(cli: Cli) -> None:
    words = {"_KEYTURN_COMPLETE": "bash_complete", "COMP_WORDS": "keyturn lo", "COMP_CWORD": "1"}
    commands = cli.run(env=words)
    assert commands.returncode == 0, commands.stderr
    assert commands.stdout.split() == ["plain,login", "plain,logout"]
    options = cli.run(env={**words, "COMP_WORDS": "keyturn token --he", "COMP_CWORD": "2"})
    assert "plain,--header" in options.stdout.split(), options.stdout


def test_the_documented_bash_line_installs_the_completion(cli: Cli) -> None:
    # The installed script (next to this interpreter), as the person's shell runs it.
    script = Path(sys.executable).parent / "keyturn"
    # Not a skip: the README's test command installs keyturn, so a missing script is a broken install.
    assert script.exists() or shutil.which("keyturn") is not None, (
        "the keyturn console script is not installed: pip install -e '.[test]'")
    program = str(script) if script.exists() else "keyturn"
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert 'eval "$(_KEYTURN_COMPLETE=bash_source keyturn)"' in docs
    done = cli.shell('eval "$(_KEYTURN_COMPLETE=bash_source "$1")" && complete -p "$(basename "$1")"',
                     [program])
    assert done.returncode == 0, done.stderr
    assert "-F _keyturn_completion keyturn" in done.stdout, done.stdout
