"""``--scope`` and ``--flow`` of ``token``, ``whoami`` and ``logout`` select the saved login (the
scope and the grant are part of its cache key), and their help says so (issue 11.6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.clihelper import Cli
from tests.support.providerfixture import Provider


@pytest.fixture
def cc(cli: Cli, provider: Provider) -> Cli:
    info = provider.clients["basic"]
    cli.write_config(f'[profiles.p]\ngrant = "client_credentials"\nissuer = "{provider.issuer}"\n'
                     'client_id = "basic"\nclient_secret_env = "CC_SECRET"\n')
    cli.env["CC_SECRET"] = str(info.client_secret)
    return cli


def _token_files(cli: Cli) -> list[Path]:
    return sorted(p for p in (cli.cache_home / "keyturn").glob("*.json") if p.name != "fastpath.json")


@pytest.mark.parametrize("command", ["token", "whoami", "logout"])
def test_help_says_scope_and_flow_select_the_saved_login(cli: Cli, command: str) -> None:
    done = cli.run(command, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--scope SCOPES Space-separated scopes (ad hoc or override); selects the saved login " \
           "made with these scopes" in text
    assert "--flow FLOW device, browser, client_credentials, refresh_token; selects the saved " \
           "login made with this flow" in text


def test_login_help_does_not_claim_a_saved_login(cli: Cli) -> None:
    text = " ".join(cli.run("login", "--help").stdout.split())
    assert "--scope SCOPES Space-separated scopes (ad hoc or override)." in text
    assert "selects the saved login" not in text


def test_scope_selects_which_saved_login_logout_forgets(cc: Cli) -> None:
    assert cc.run("token", "--profile", "p").returncode == 0
    narrow = cc.run("token", "--profile", "p", "--scope", "api:read")
    assert narrow.returncode == 0, narrow.stderr
    assert len(_token_files(cc)) == 2  # two logins: the scope is part of which one it is
    out = cc.run("logout", "--profile", "p", "--scope", "api:read")
    assert out.returncode == 0 and out.stderr.startswith("Logged out"), out.stderr
    assert "`keyturn login --profile p --scope api:read` logs in again" in out.stderr
    assert len(_token_files(cc)) == 1
    again = cc.run("logout", "--profile", "p", "--scope", "api:read")
    assert again.stderr.startswith("No saved tokens"), again.stderr
    assert cc.run("logout", "--profile", "p").stderr.startswith("Logged out")
    assert _token_files(cc) == []


def test_flow_selects_which_saved_login(cc: Cli) -> None:
    assert cc.run("token", "--profile", "p").returncode == 0
    saved = _token_files(cc)
    # The device flow's login of this client is another one: there is none, and the client
    # credentials token is left alone.
    whoami = cc.run("whoami", "--profile", "p", "--flow", "device")
    assert whoami.returncode == 4, whoami.stderr
    # The login command it names is that login's, the --flow included.
    assert "login required for profile p: run `keyturn login --profile p --flow device`" \
        in whoami.stderr
    token = cc.run("token", "--profile", "p", "--flow", "device")
    assert token.returncode == 4 and "`keyturn login --profile p --flow device`" in token.stderr
    device = cc.run("logout", "--profile", "p", "--flow", "device")
    assert device.returncode == 0 and device.stderr.startswith("No saved tokens"), device.stderr
    assert _token_files(cc) == saved
    same = cc.run("logout", "--profile", "p", "--flow", "client_credentials")
    assert same.stderr.startswith("Logged out"), same.stderr
    assert _token_files(cc) == []
