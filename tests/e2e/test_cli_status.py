"""``keyturn status`` as a script and a newcomer meet it (issue 11.6): a subprocess, its stdout a
pipe (no terminal), against the real provider."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from tests.support.clihelper import Cli
from tests.support.providerfixture import Provider

LONG_ISSUER = "http://127.0.0.1:9/realms/a-rather-long-realm-name/protocol/openid-connect/issuer"


def _profiles(provider: Provider) -> str:
    return (f'[profiles.good]\ngrant = "client_credentials"\nissuer = "{provider.issuer}"\n'
            'client_id = "basic"\nclient_secret_env = "CC_SECRET"\n'
            f'[profiles.long]\ngrant = "device_code"\nissuer = "{LONG_ISSUER}"\n'
            'client_id = "a-public-client"\n')


@pytest.fixture
def two(cli: Cli, provider: Provider) -> Cli:
    """Profiles: ``good`` (logged in with client credentials), ``long`` (a long issuer, no
    login)."""
    cli.write_config(_profiles(provider))
    cli.env["CC_SECRET"] = str(provider.clients["basic"].client_secret)
    token = cli.run("token", "--profile", "good")
    assert token.returncode == 0, token.stderr
    return cli


@pytest.fixture
def three(two: Cli, provider: Provider, tmp_path: Path) -> Cli:
    """And two broken ones: ``nofile`` (its secret file is missing) and ``nosecret`` (its secret's
    variable is unset)."""
    two.write_config(
        _profiles(provider)
        + f'[profiles.nofile]\ngrant = "client_credentials"\nissuer = "{provider.issuer}"\n'
        f'client_id = "basic"\nclient_secret_file = "{tmp_path / "missing"}"\n'
        f'[profiles.nosecret]\ngrant = "client_credentials"\nissuer = "{provider.issuer}"\n'
        'client_id = "basic"\nclient_secret_env = "KEYTURN_TEST_UNSET"\n')
    return two


def test_a_broken_profile_is_shown_in_its_row_and_the_others_as_usual(three: Cli) -> None:
    result = three.run("status")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert sorted(lines) == ["good", "long", "nofile", "nosecret"], result.stdout
    assert "valid until" in lines["good"] and "none (log in)" in lines["long"]
    assert "client_secret_env names $KEYTURN_TEST_UNSET, which is not set" in lines["nosecret"]
    assert "cannot read client_secret_file" in lines["nofile"] and "missing" in lines["nofile"]
    assert str(three.env["CC_SECRET"]) not in result.stdout + result.stderr
    # One profile asked for by name: its problem is the command's error, as for any command.
    alone = three.run("status", "--profile", "nosecret")
    assert alone.returncode == 3 and alone.stdout == ""
    assert alone.stderr.startswith("keyturn: ") and "KEYTURN_TEST_UNSET" in alone.stderr


def test_off_a_terminal_one_plain_aligned_line_per_profile(two: Cli) -> None:
    out = two.run("status").stdout  # COLUMNS unset: a pipe, where rich would use 80 columns
    header, *rows = out.splitlines()
    assert len(rows) == 2, out
    assert not set(out) & set("┏┃━│─┡╇└┴"), out  # no box drawing
    assert "…" not in out
    for column in ("profile", "grant", "issuer", "client id", "access token", "refresh token",
                   "re-login due"):
        assert column in header
    assert "problem" not in header  # a column only when some profile has one
    long_row = next(row for row in rows if row.startswith("long "))
    assert LONG_ISSUER in long_row and "a-public-client" in long_row  # whole, on its line
    # Aligned: each column starts at the same place on every line.
    for column, cell in (("issuer", LONG_ISSUER), ("client id", "a-public-client"),
                         ("access token", "none (log in)")):
        assert long_row.index(cell) == header.index(column)
    good_row = next(row for row in rows if row.startswith("good "))
    assert good_row.index("basic") == header.index("client id")
    assert good_row.index("valid until") == header.index("access token")


def test_a_problem_is_the_last_column_and_the_rows_stay_aligned(three: Cli) -> None:
    header, *rows = three.run("status").stdout.splitlines()
    assert header.split()[-1] == "problem" and len(rows) == 4
    broken = next(row for row in rows if row.startswith("nosecret "))
    assert broken.index("profile 'nosecret'") == header.index("problem")
    assert broken.index("basic") == header.index("client id")


def test_json_has_each_profile_with_its_problem(three: Cli, provider: Provider) -> None:
    result = three.run("status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["profile"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == ["good", "long", "nofile", "nosecret"]
    good = rows["good"]
    assert (good["grant"], good["issuer"], good["client_id"]) == (
        "client_credentials", provider.issuer, "basic")
    assert good["logged_in"] is True and good["access_token_valid"] is True
    assert isinstance(good["expires_at"], float) and good["problem"] is None
    assert rows["long"]["issuer"] == LONG_ISSUER and rows["long"]["logged_in"] is False
    broken = rows["nosecret"]
    assert "KEYTURN_TEST_UNSET, which is not set" in broken["problem"]
    assert (broken["grant"], broken["issuer"], broken["client_id"], broken["logged_in"]) == (
        "client_credentials", provider.issuer, "basic", False)
    assert "cannot read client_secret_file" in rows["nofile"]["problem"]
    # The same list when the output is a terminal's or not: --json never prints a table.
    assert set(good) >= {"profile", "grant", "issuer", "client_id", "logged_in", "expires_at",
                         "refresh_token", "relogin_due_at", "scope", "problem"}


def test_at_a_terminal_a_table(three: Cli) -> None:
    leader, follower = pty.openpty()  # stdout a terminal, as a person's is
    try:
        status = subprocess.Popen([*three.command, "status"], env={**three.env, "COLUMNS": "400"},
                                  stdin=subprocess.DEVNULL, stdout=follower,
                                  stderr=subprocess.PIPE)
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert status.wait(timeout=60) == 0
    finally:
        os.close(leader)
    out = b"".join(chunks).decode()
    assert "keyturn profiles" in out and "┃" in out and "problem" in out, out
    assert "which is not set" in out and "valid until" in out
