"""``keyturn logout`` says what happened at the server (issue 11.4): revoked there, or why not."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.clihelper import Cli
from tests.support.discoveryserver import DiscoveryServer

SECRET = "s3cret-client-value"


@pytest.fixture
def server() -> Iterator[DiscoveryServer]:
    with DiscoveryServer() as running:
        running.documents[running.oidc_path] = running.document(revocation=False)
        yield running


@pytest.fixture
def cc(cli: Cli, server: DiscoveryServer) -> Cli:
    cli.write_config(f'[profiles.p]\ngrant = "client_credentials"\nissuer = "{server.issuer}"\n'
                     'client_id = "svc"\nclient_secret_env = "CC_SECRET"\n')
    cli.env["CC_SECRET"] = SECRET
    return cli


def _login(cc: Cli) -> str:
    done = cc.run("token", "--profile", "p")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_a_revocation_endpoint_logout_says_the_tokens_stay_valid(
        cc: Cli, server: DiscoveryServer) -> None:
    token = _login(cc)
    done = cc.run("logout", "--profile", "p")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        "Logged out (profile p): forgot the login here; the server names no revocation endpoint, "
        "so its tokens stay valid until they expire")
    assert "--revocation-endpoint" in done.stderr
    assert "`keyturn login --profile p` logs in again" in done.stderr
    assert "revoked its tokens" not in done.stderr and token not in done.stderr
    assert server.revocations() == []


def test_revocation_endpoint_option_revokes_and_json_says_so(cc: Cli, server: DiscoveryServer) -> None:
    token = _login(cc)
    done = cc.run("logout", "--profile", "p", "--revocation-endpoint", server.issuer + "/revoke",
                  "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["revoked"] is True and answer["reason"] is None and answer["forgotten"] is True
    assert answer["login_command"] == "keyturn login --profile p"  # not part of the login
    [revocation] = server.revocations()
    assert revocation.form["token"] == [token]
    assert token not in done.stdout + done.stderr


def test_profile_key_revocation_endpoint_and_the_plain_message(cc: Cli, server: DiscoveryServer) -> None:
    cc.write_config(cc.config_file.read_text()
                    + f'revocation_endpoint = "{server.issuer}/revoke"\n')
    _login(cc)
    done = cc.run("logout", "--profile", "p")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Logged out (profile p): forgot the login here and revoked its "
                                  "tokens at the server;")
    assert len(server.revocations()) == 1


def test_json_without_revocation_and_a_failed_one(cc: Cli, server: DiscoveryServer) -> None:
    _login(cc)
    answer = json.loads(cc.run("logout", "--profile", "p", "--json").stdout)
    assert answer["revoked"] is False and answer["reason"] == "no_revocation_endpoint"
    server.documents[server.oidc_path] = server.document()
    server.revocation_status = 503
    _login(cc)
    done = cc.run("logout", "--profile", "p")
    assert done.returncode == 0, done.stderr  # logged out here all the same
    assert "but the server did not revoke its tokens" in done.stderr
    assert "temporarily_unavailable" in done.stderr and SECRET not in done.stderr
    nothing = cc.run("logout", "--profile", "p", "--json")
    assert json.loads(nothing.stdout)["reason"] == "nothing_saved"
