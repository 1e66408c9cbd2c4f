"""Several accounts at one provider (issue 11.5): two profiles with the same issuer, client and
scope and a different ``account`` keep two saved logins; ``keyturn token`` (its fast path too)
prints each one's token, ``keyturn status`` shows the account, and ``--account`` selects one
ad hoc."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn._fastpath import cached_answer
from tests.support.clihelper import Cli
from tests.support.providerfixture import Provider, approve_device_code


def _device_login(cli: Cli, provider: Provider, login: str, *args: str) -> str:
    """``keyturn login ARGS`` approved as user ``login`` at the provider; its stderr."""
    provider.set_device_knobs(interval=1)
    try:
        process = cli.popen("login", *args)
        assert process.stderr is not None
        approved: list[Any] = []
        seen: list[str] = []
        worker: threading.Thread | None = None
        for _ in range(50):
            line = process.stderr.readline()
            seen.append(line)
            match = re.search(r"or open (\S+) to skip", line)
            if match:
                url = match.group(1)
                worker = threading.Thread(
                    target=lambda: approved.append(approve_device_code(provider, url, login)))
                worker.start()
                break
            if not line:
                break
        if worker is None:
            process.kill()
            pytest.fail("no verification URL: " + "".join(seen))
        _out, err = process.communicate(timeout=60)
        worker.join(timeout=30)
        assert approved and process.returncode == 0, "".join(seen) + err
        return "".join(seen) + err
    finally:
        provider.set_device_knobs(interval=None, slow_down_times=0)


def _subject(provider: Provider, token: str) -> str:
    """Whose token it is, as the provider's introspection endpoint says."""
    answer = httpx.post(provider.introspection_endpoint, data={"token": token},
                        auth=provider.clients["basic"].basic_auth, trust_env=False).json()
    assert answer["active"] is True, answer
    return str(answer["sub"])


def _token_files(cli: Cli) -> list[Path]:
    return sorted(p for p in (cli.cache_home / "keyturn").glob("*.json") if p.name != "fastpath.json")


@pytest.fixture
def two(cli: Cli, provider: Provider) -> Cli:
    # A client with 1 h tokens (the public one's last 3 s): the fast path answers from the file.
    info = provider.clients["confidential-device"]
    assert info.client_secret is not None
    cli.env["DEV_SECRET"] = info.client_secret
    common = (f'grant = "device_code"\nissuer = "{provider.issuer}"\n'
              'client_id = "confidential-device"\nclient_secret_env = "DEV_SECRET"\n')
    cli.write_config(f'[profiles.work]\n{common}account = "alice"\n\n'
                     f'[profiles.test]\n{common}account = "bob"\n')
    return cli


def test_two_accounts_keep_two_logins_and_token_prints_each(two: Cli, provider: Provider) -> None:
    said = _device_login(two, provider, "alice", "--profile", "work")
    assert "profile work, account alice" in said
    _device_login(two, provider, "bob", "--profile", "test")
    assert len(_token_files(two)) == 2  # two saved logins, not one overwritten

    tokens = {}
    for profile, user in (("work", "alice"), ("test", "bob")):
        done = two.run("token", "--profile", profile)
        assert done.returncode == 0, done.stderr
        tokens[profile] = done.stdout.strip()
        assert _subject(provider, tokens[profile]) == user
        # The fast path (no HTTP stack, no click) finds the same login by the profile's key.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("XDG_CONFIG_HOME", str(two.config_home))
            env.setenv("XDG_CACHE_HOME", str(two.cache_home))
            env.setenv("DEV_SECRET", two.env["DEV_SECRET"])
            assert cached_answer(["token", "--profile", profile]) == tokens[profile]
    assert tokens["work"] != tokens["test"]

    rows = {row["profile"]: row for row in json.loads(two.run("status", "--json").stdout)}
    assert rows["work"]["account"] == "alice" and rows["test"]["account"] == "bob"
    assert rows["work"]["logged_in"] and rows["test"]["logged_in"]
    plain = two.run("status").stdout.splitlines()
    header = plain[0]
    assert "account" in header.split()
    work_line = next(line for line in plain if line.startswith("work "))
    assert work_line.index("alice") == header.index("account")
    only_bob = json.loads(two.run("status", "--account", "bob", "--json").stdout)
    assert [row["profile"] for row in only_bob] == ["test"]

    # logout forgets one account's login and leaves the other's.
    gone = two.run("logout", "--profile", "work")
    assert gone.returncode == 0 and "(profile work, account alice)" in gone.stderr, gone.stderr
    assert two.run("token", "--profile", "test").stdout.strip() == tokens["test"]
    assert two.run("token", "--profile", "work").returncode == 4  # login required


def test_account_option_selects_an_ad_hoc_login(cli: Cli, provider: Provider) -> None:
    adhoc = ["--issuer", provider.issuer, "--client-id", "public", "--flow", "device"]
    _device_login(cli, provider, "carol", *adhoc, "--account", "carol")
    done = cli.run("token", *adhoc, "--account", "carol")
    assert done.returncode == 0, done.stderr
    assert _subject(provider, done.stdout.strip()) == "carol"
    with pytest.MonkeyPatch.context() as env:  # the fast path answers --account too
        env.setenv("XDG_CONFIG_HOME", str(cli.config_home))
        env.setenv("XDG_CACHE_HOME", str(cli.cache_home))
        assert cached_answer(["token", *adhoc, "--account", "carol"]) == done.stdout.strip()
        assert cached_answer(["token", *adhoc]) is None  # another login, not made
    # Without the account it is another login, which has not been made: the hint names the way.
    other = cli.run("token", *adhoc)
    assert other.returncode == 4 and "--account" not in other.stderr
    hint = cli.run("token", *adhoc, "--account", "dave")
    assert hint.returncode == 4 and "--account dave" in hint.stderr, hint.stderr
    [row] = json.loads(cli.run("status", "--json").stdout)
    assert row["account"] == "carol" and row["logged_in"] is True


def test_a_bad_account_is_a_config_error(cli: Cli, provider: Provider) -> None:
    done = cli.run("token", "--issuer", provider.issuer, "--client-id", "public", "--account", "")
    assert done.returncode == 3 and "account=" in done.stderr, done.stderr
