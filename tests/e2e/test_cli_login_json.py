"""``keyturn login --json`` and ``keyturn logout --json``: one object on stdout, never a token."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import pytest

from tests.support.clihelper import Cli
from tests.support.providerfixture import Provider, approve_device_code
from tests.support.resource_server import ResourceServer


def _device_login(cli: Cli, provider: Provider, *args: str) -> tuple[str, str, int]:
    """A device login approved by the provider's test helper: (stdout, stderr, exit status)."""
    provider.set_device_knobs(interval=1)
    try:
        login = cli.popen("login", *args)
        assert login.stderr is not None
        approved: list[Any] = []
        seen: list[str] = []
        worker: threading.Thread | None = None
        for _ in range(50):
            line = login.stderr.readline()
            seen.append(line)
            match = re.search(r"or open (\S+) to skip", line)
            if match:
                url = match.group(1)
                worker = threading.Thread(
                    target=lambda: approved.append(approve_device_code(provider, url)))
                worker.start()
                break
            if not line:
                break
        if worker is None:
            login.kill()
            pytest.fail("no verification URL: " + "".join(seen))
        out, err = login.communicate(timeout=60)
        worker.join(timeout=30)
        assert approved, "".join(seen) + err
        return out, "".join(seen) + err, login.returncode
    finally:
        provider.set_device_knobs(interval=None, slow_down_times=0)


def test_device_login_and_logout_answer_in_json(cli: Cli, provider: Provider) -> None:
    cli.write_config(f'[profiles.dev]\ngrant = "device_code"\nissuer = "{provider.issuer}"\n'
                     f'client_id = "public"\n')
    out, err, code = _device_login(cli, provider, "--profile", "dev", "--json")
    assert code == 0, err
    data = json.loads(out)  # the whole of stdout is the one object
    assert set(data) == {"profile", "issuer", "client_id", "subject", "name", "expires_at",
                         "refresh_token"}
    assert data["profile"] == "dev" and data["issuer"] == provider.issuer
    assert data["client_id"] == "public" and data["subject"] == "alice"
    assert data["name"] in (None, "alice")  # preferred_username or email, when the id_token has one
    assert isinstance(data["expires_at"], (int, float)) and data["expires_at"] > time.time()
    assert data["refresh_token"] is True
    assert "Logged in" not in out + err  # the closing line is the JSON's, not stderr's
    token = cli.run("token", "--profile", "dev").stdout.strip()
    assert token and token not in out and token not in err

    gone = cli.run("logout", "--profile", "dev", "--json")
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout) == {
        "profile": "dev", "grant": "device_code", "issuer": provider.issuer,
        "client_id": "public", "account": None, "forgotten": True, "refresh_token": True,
        "revoked": True, "reason": None, "detail": None,
        "login_command": "keyturn login --profile dev", "others": []}
    assert gone.stderr == "" and token not in gone.stdout
    again = cli.run("logout", "--profile", "dev", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["forgotten"] is False


def test_client_credentials_login_json_and_logout_revokes(cli: Cli, provider: Provider) -> None:
    info = provider.clients["basic"]
    assert info.client_secret is not None
    cli.write_config(f'[profiles.p]\ngrant = "client_credentials"\nissuer = "{provider.issuer}"\n'
                     f'client_id = "basic"\nclient_secret_env = "CC_SECRET"\n')
    cli.env["CC_SECRET"] = info.client_secret
    done = cli.run("login", "--profile", "p", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["profile"] == "p" and data["client_id"] == "basic"
    assert data["subject"] is None and data["refresh_token"] is False
    assert done.stderr == "" and info.client_secret not in done.stdout
    token = cli.run("token", "--profile", "p").stdout.strip()
    assert token not in done.stdout
    api = ResourceServer(provider.introspection_endpoint, info.client_id, info.client_secret)
    with api.running():
        assert api.introspect(token) is True
        gone = cli.run("logout", "--profile", "p", "--json")
        assert gone.returncode == 0, gone.stderr
        assert api.introspect(token) is False  # --json still revokes
    answer = json.loads(gone.stdout)
    assert answer["forgotten"] is True and answer["refresh_token"] is False
    # An ad-hoc login has no profile name: null, and the command line that logs in again.
    adhoc = cli.run("logout", "--issuer", provider.issuer, "--client-id", "public", "--flow",
                    "device", "--json")
    assert adhoc.returncode == 0, adhoc.stderr
    answer = json.loads(adhoc.stdout)
    assert answer["profile"] is None and answer["forgotten"] is False
    assert answer["login_command"].startswith(f"keyturn login --issuer {provider.issuer} ")


def test_login_json_failure_keeps_the_exit_code_and_stdout_empty(cli: Cli, provider: Provider) -> None:
    cli.write_config(f'[profiles.p]\ngrant = "client_credentials"\nissuer = "{provider.issuer}"\n'
                     f'client_id = "basic"\nclient_secret_env = "CC_SECRET"\n')
    cli.env["CC_SECRET"] = "wrong"
    done = cli.run("login", "--profile", "p", "--json")
    assert done.returncode == 5 and done.stdout == "", done.stderr
