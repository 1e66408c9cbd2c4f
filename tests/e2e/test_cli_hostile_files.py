"""The command line on a token file (and a fast-path index, and a config) that holds deeply nested
JSON or TOML: a one-line message and an exit status, never a traceback; a damaged token file is
moved aside and the login reported as missing, or the token fetched again; the fast path answers
from none of them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from keyturn.config import load_profile
from keyturn.stores.file import FileStore, file_name
from keyturn.token import Token
from tests.support.clihelper import Cli
from tests.support.providerfixture import Provider

SECRET = "AT-secret-cli-hostile-31337"
REFRESH = "RT-secret-cli-hostile-27182"
NESTED = b"[" * 100_000 + b"]" * 100_000
CONFIG = '[profiles.dev]\ngrant = "device_code"\nissuer = "http://127.0.0.1:9"\nclient_id = "public"\n'


@pytest.fixture
def token_file(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dev profile's token file, saved by keyturn and then overwritten with nested JSON."""
    for name in ("KEYTURN_PROFILE", "KEYTURN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cli.config_home))
    cli.write_config(CONFIG)
    key = load_profile("dev").cache_key()
    now = time.time()
    FileStore(cli.cache_home / "keyturn").save(key, Token(
        access_token=SECRET, expires_at=now + 600, issued_at=now, refresh_token=REFRESH))
    path = cli.cache_home / "keyturn" / f"{file_name(key)}.json"
    assert path.exists()
    path.write_bytes(NESTED)
    return path


def clean(result: subprocess.CompletedProcess[str]) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "RecursionError" not in text, text[-2000:]
    assert SECRET not in text and REFRESH not in text


def quarantined(path: Path) -> list[str]:
    return [name for name in os.listdir(path.parent) if name.startswith(path.name + ".corrupt-")]


def test_status_reports_no_login_and_moves_the_file_aside(cli: Cli, token_file: Path) -> None:
    result = cli.run("status", "--json")
    clean(result)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(row["profile"], row["logged_in"]) for row in rows] == [("dev", False)]
    assert not token_file.exists() and len(quarantined(token_file)) == 1
    table = cli.run("status", env={"COLUMNS": "200"})
    clean(table)
    assert table.returncode == 0 and "none (log in)" in table.stdout


def test_token_moves_the_file_aside_and_fails_with_one_line(cli: Cli, token_file: Path) -> None:
    # The fast path cannot read the file and hands over to the full command line, which moves it
    # aside, says why, and then (never interactive) fails as a missing login does here: the
    # profile's issuer does not answer.
    result = cli.run("token", "--profile", "dev")
    clean(result)
    assert result.stdout == ""
    assert "was damaged (it nests arrays or objects deeper than 64 levels)" in result.stderr
    assert result.returncode == 6, (result.returncode, result.stderr)  # TransportError
    assert result.stderr.splitlines()[-1].startswith("keyturn: ")
    assert len(quarantined(token_file)) == 1


def test_a_nested_fast_path_index_is_ignored(cli: Cli, token_file: Path) -> None:
    (cli.cache_home / "keyturn" / "fastpath.json").write_bytes(NESTED)
    status = cli.run("status", "--json")
    clean(status)
    assert status.returncode == 0 and json.loads(status.stdout)[0]["logged_in"] is False
    token = cli.run("token", "--profile", "dev")
    clean(token)
    assert token.returncode == 6 and token.stderr.splitlines()[-1].startswith("keyturn: ")


def test_a_deeply_nested_config_is_a_config_error(cli: Cli) -> None:
    cli.write_config(CONFIG + "odd = " + "[" * 100_000 + "\n")
    for args in (("token", "--profile", "dev"), ("status",)):
        result = cli.run(*args)
        clean(result)
        assert result.returncode != 0
        assert "nested too deeply" in result.stderr, result.stderr


def _nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(("extra", "why"), [
    (_nested(70), "it nests arrays or objects deeper than 64 levels"),
    ("x", "the token object is malformed: its extra is neither an object nor null"),
])
def test_a_token_file_filestore_moves_aside_is_refetched(cli: Cli, fresh_stats: Provider,
                                                         extra: object, why: str) -> None:
    # Report V, item 1: the fast path printed the token of such a record (found through its
    # index) until it expired; FileStore moves it aside. Now the full command line runs: it moves
    # the file aside, says why, and fetches a token again.
    info = fresh_stats.clients["basic"]
    cli.write_config(f'[profiles.p]\ngrant = "client_credentials"\nissuer = "{fresh_stats.issuer}"\n'
                     'client_id = "basic"\nclient_secret_env = "CC_SECRET"\n')
    cli.env["CC_SECRET"] = str(info.client_secret)
    first = cli.run("token", "--profile", "p")
    assert first.returncode == 0, first.stderr
    old = first.stdout.strip()
    assert cli.run("token", "--profile", "p").stdout.strip() == old  # the fast path, by its index
    assert (cli.cache_home / "keyturn" / "fastpath.json").exists()
    (path,) = [p for p in (cli.cache_home / "keyturn").glob("*.json") if p.name != "fastpath.json"]
    record = json.loads(path.read_bytes())
    record["token"]["extra"] = extra
    path.write_text(json.dumps(record))  # the file stays private (0600)
    again = cli.run("token", "--profile", "p")
    assert again.returncode == 0, again.stderr
    new = again.stdout.strip()
    assert new and new != old and old not in again.stderr
    assert f"was damaged ({why})" in again.stderr
    assert len(quarantined(path)) == 1 and path.exists()
    assert fresh_stats.token_requests("basic") == 2
    assert cli.run("token", "--profile", "p").stdout.strip() == new  # the fast path again
