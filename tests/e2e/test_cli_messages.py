"""What the command line says when there is no config file: it names the file as missing and
points at what an installed keyturn has (``--help``), never at a docs/ path (issue 11.6)."""

from __future__ import annotations

import pytest

from tests.support.clihelper import Cli


@pytest.mark.parametrize("command", ["token", "login", "whoami", "logout"])
def test_no_config_file_is_named_as_missing(cli: Cli, command: str) -> None:
    assert not cli.config_file.exists()
    done = cli.run(command)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"no config file at {cli.config_file}" in lines[0]
    assert "--issuer and --client-id" in lines[0]
    assert "docs/" not in done.stderr and "no default in" not in done.stderr


def test_a_named_profile_without_a_config_file(cli: Cli) -> None:
    done = cli.run("token", "--profile", "hpc")
    assert done.returncode == 3, done.stderr
    assert "no profile 'hpc'" in done.stderr
    assert f"there is no config file at {cli.config_file}" in done.stderr
    assert "[profiles.hpc]" in done.stderr and "docs/" not in done.stderr


def test_a_config_file_without_a_default_is_named_as_there(cli: Cli) -> None:
    cli.write_config('[profiles.a]\nissuer = "https://a.invalid"\nclient_id = "x"\n'
                     '[profiles.b]\nissuer = "https://b.invalid"\nclient_id = "y"\n')
    done = cli.run("token")
    assert done.returncode == 3, done.stderr
    assert f"no default in {cli.config_file}" in done.stderr
    assert "no config file" not in done.stderr
    named = cli.run("token", "--profile", "c")
    assert f"no profile 'c' in {cli.config_file} (profiles: a, b)" in named.stderr


def test_status_with_nothing_names_the_missing_file_and_help(cli: Cli) -> None:
    done = cli.run("status")
    assert done.returncode == 0, done.stderr
    assert f"no config file at {cli.config_file}" in done.stderr
    assert "`keyturn login --help`" in done.stderr and "docs/" not in done.stderr
    cli.write_config("# nothing yet\n")
    empty = cli.run("status")
    assert f"No profiles in {cli.config_file}" in empty.stderr
    assert "no config file" not in empty.stderr and "docs/" not in empty.stderr
