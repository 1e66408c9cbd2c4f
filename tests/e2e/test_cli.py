"""``keyturn`` as a person or a script uses it: a subprocess against the real provider."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from keyturn.config import load_profile
from tests.support.clihelper import Cli
from tests.support.providerfixture import Provider, approve_device_code
from tests.support.resource_server import ResourceServer


def _cc_config(provider: Provider, *, inline: bool = False, extra: str = "") -> str:
    info = provider.clients["basic"]
    secret = f'client_secret = "{info.client_secret}"' if inline else 'client_secret_env = "CC_SECRET"'
    return (f'[profiles.p]\ngrant = "client_credentials"\nissuer = "{provider.issuer}"\n'
            f'client_id = "basic"\n{secret}\n{extra}')


def _token_files(cli: Cli) -> list[Path]:
    # fastpath.json is the fast path's index (paths and keys only, no secrets).
    return [p for p in (cli.cache_home / "keyturn").glob("*.json") if p.name != "fastpath.json"]


@pytest.fixture
def cc(cli: Cli, provider: Provider) -> Cli:
    cli.write_config(_cc_config(provider))
    cli.env["CC_SECRET"] = str(provider.clients["basic"].client_secret)
    return cli


def test_token_for_a_client_credentials_profile_is_cached(cc: Cli, fresh_stats: Provider) -> None:
    first = cc.run("token", "--profile", "p")
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert token and "\n" not in token and first.stderr == ""
    second = cc.run("token", "--profile", "p")
    assert second.returncode == 0 and second.stdout.strip() == token
    assert fresh_stats.token_requests("basic") == 1
    files = _token_files(cc)
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0
    index = cc.cache_home / "keyturn" / "fastpath.json"
    assert index.stat().st_mode & 0o077 == 0
    text = index.read_text()
    assert token not in text and str(cc.env["CC_SECRET"]) not in text


def test_curl_with_keyturn_token_reaches_a_protected_endpoint(cc: Cli, provider: Provider) -> None:
    info = provider.clients["basic"]
    assert info.client_secret is not None
    api = ResourceServer(provider.introspection_endpoint, info.client_id, info.client_secret)
    with api.running():
        done = cc.shell('curl -sf -H "Authorization: Bearer $($KEYTURN token --profile p)" "$1"',
                        [api.url])
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ok"] is True
        refused = cc.shell('curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer x" "$1"',
                           [api.url])
        assert refused.stdout == "401"


def test_fast_path_answers_without_http_stack_or_cli_framework(cc: Cli) -> None:
    warm = cc.run("token", "--profile", "p")
    assert warm.returncode == 0, warm.stderr
    probe = (
        "import sys\n"
        "from keyturn._fastpath import main\n"
        "rc = main(['token', '--profile', 'p'])\n"
        "heavy = [m for m in ('httpx', 'click', 'rich', 'typer', 'keyturn.sources', 'keyturn.cli',"
        " 'keyturn.transport', 'tomllib') if m in sys.modules]\n"
        "print('RESULT', rc, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=cc.env, capture_output=True, text=True,
                          timeout=60)
    assert "RESULT 0 []" in done.stderr, done.stderr
    assert done.stdout.strip() == warm.stdout.strip()


def test_fast_path_falls_through_when_the_cache_cannot_answer(cc: Cli) -> None:
    # No cached token yet: the same in-process call must fetch through the full CLI.
    probe = (
        "import sys\n"
        "from keyturn._fastpath import main\n"
        "rc = main(['token', '--profile', 'p'])\n"
        "print('RESULT', rc, 'httpx' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=cc.env, capture_output=True, text=True,
                          timeout=60)
    assert "RESULT 0 True" in done.stderr, done.stderr
    assert done.stdout.strip()


def test_fast_path_notices_a_changed_config_or_a_missing_secret(cc: Cli, provider: Provider) -> None:
    token = cc.run("token", "--profile", "p").stdout.strip()
    assert cc.run("token", "--profile", "p").stdout.strip() == token  # from the fast path
    unset = cc.run("token", "--profile", "p", env={"CC_SECRET": ""})
    assert unset.returncode == 3 and unset.stdout == ""
    cc.write_config(_cc_config(provider).replace(provider.issuer, "http://127.0.0.1:9"))
    moved = cc.run("token", "--profile", "p")
    assert moved.returncode == 6 and token not in moved.stdout, moved.stderr


def test_min_valid_refreshes_first(cc: Cli, fresh_stats: Provider) -> None:
    first = cc.run("token", "--profile", "p").stdout.strip()
    same = cc.run("token", "--profile", "p", "--min-valid", "10").stdout.strip()
    assert same == first and fresh_stats.token_requests("basic") == 1
    forced = cc.run("token", "--profile", "p", "--min-valid", "999999")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() != first
    assert fresh_stats.token_requests("basic") == 2


@pytest.mark.parametrize("warm", [False, True], ids=["full-cli", "fast-path"])
def test_output_formats(cc: Cli, warm: bool) -> None:
    if warm:
        assert cc.run("token", "--profile", "p").returncode == 0
    as_json = cc.run("token", "--profile", "p", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    token = data["access_token"]
    assert data["token_type"].lower() == "bearer"
    assert data["expires_at"] > time.time() and 0 < data["expires_in"] <= data["expires_at"] - time.time() + 1
    header = cc.run("token", "--profile", "p", "--header").stdout
    assert header == f"Authorization: Bearer {token}\n"
    exec_credential = json.loads(cc.run("token", "--profile", "p", "--exec-credential").stdout)
    assert exec_credential["apiVersion"] == "client.authentication.k8s.io/v1"
    assert exec_credential["kind"] == "ExecCredential"
    assert exec_credential["status"]["token"] == token
    stamp = exec_credential["status"]["expirationTimestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(data["expires_at"])) == stamp


def test_status_and_logout_revoke(cc: Cli, provider: Provider) -> None:
    none_yet = json.loads(cc.run("status", "--json").stdout)
    assert none_yet[0]["profile"] == "p" and none_yet[0]["logged_in"] is False
    token = cc.run("token", "--profile", "p").stdout.strip()
    rows = json.loads(cc.run("status", "--json").stdout)
    assert rows[0]["logged_in"] is True and rows[0]["access_token_valid"] is True
    table = cc.run("status")
    assert table.returncode == 0 and "valid until" in table.stdout and token not in table.stdout
    info = provider.clients["basic"]
    assert info.client_secret is not None
    api = ResourceServer(provider.introspection_endpoint, info.client_id, info.client_secret)
    with api.running():
        assert api.introspect(token) is True
        out = cc.run("logout", "--profile", "p")
        assert out.returncode == 0, out.stderr
        assert api.introspect(token) is False  # revoked at the provider (RFC 7009)
    assert _token_files(cc) == []
    assert json.loads(cc.run("status", "--json").stdout)[0]["logged_in"] is False


def test_secret_from_a_file(cli: Cli, provider: Provider, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(str(provider.clients["basic"].client_secret) + "\n")
    cli.write_config(_cc_config(provider).replace('client_secret_env = "CC_SECRET"',
                                                  f'client_secret_file = "{secret_file}"'), 0o644)
    done = cli.run("token", "--profile", "p")
    assert done.returncode == 0, done.stderr


def test_missing_secret_env_is_a_config_error(cc: Cli) -> None:
    done = cc.run("token", "--profile", "p", env={"CC_SECRET": ""})
    assert done.returncode == 3
    assert "CC_SECRET" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_world_readable_config_with_inline_secret_is_refused(cli: Cli, provider: Provider) -> None:
    cli.write_config(_cc_config(provider, inline=True), 0o644)
    refused = cli.run("token", "--profile", "p")
    assert refused.returncode == 3
    assert "chmod 600" in refused.stderr and refused.stdout == ""
    assert str(provider.clients["basic"].client_secret) not in refused.stderr
    cli.write_config(_cc_config(provider, inline=True), 0o600)
    assert cli.run("token", "--profile", "p").returncode == 0


def _device_config(provider: Provider) -> str:
    return f'[profiles.dev]\ngrant = "device_code"\nissuer = "{provider.issuer}"\nclient_id = "public"\n'


def test_token_needing_a_login_exits_4_with_one_stderr_line(cli: Cli, provider: Provider) -> None:
    cli.write_config(_device_config(provider))
    done = cli.run("token", "--profile", "dev")
    assert done.returncode == 4
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "keyturn login --profile dev" in lines[0], done.stderr
    # The same for an ad-hoc source given on the command line.
    adhoc = cli.run("token", "--issuer", provider.issuer, "--client-id", "public", "--flow", "device")
    assert adhoc.returncode == 4 and len(adhoc.stderr.strip().splitlines()) == 1


def test_unknown_profile_and_usage_errors(cc: Cli) -> None:
    missing = cc.run("token", "--profile", "nope")
    assert missing.returncode == 3 and "no profile 'nope'" in missing.stderr
    assert cc.run("token", "--bogus").returncode == 2


def test_device_login_then_silent_token_whoami_and_status(cli: Cli, provider: Provider) -> None:
    cli.write_config(_device_config(provider))
    provider.set_device_knobs(interval=1)
    try:
        login = cli.popen("login", "--profile", "dev")
        assert login.stderr is not None
        approved: list[Any] = []
        seen: list[str] = []
        for _ in range(50):
            line = login.stderr.readline()
            seen.append(line)
            match = re.search(r"or open (\S+) to skip", line)
            if match:
                worker = threading.Thread(
                    target=lambda: approved.append(approve_device_code(provider, match.group(1))))
                worker.start()
                break
            if not line:
                break
        else:
            pytest.fail("no verification URL")
        assert match, "".join(seen)
        _out, err = login.communicate(timeout=60)
        worker.join(timeout=30)
        assert login.returncode == 0, err
        assert approved and "Logged in as alice (profile dev); access token valid until " in err
    finally:
        provider.set_device_knobs(interval=None, slow_down_times=0)
    token = cli.run("token", "--profile", "dev")
    assert token.returncode == 0, token.stderr
    who = json.loads(cli.run("whoami", "--profile", "dev", "--json").stdout)
    assert who["claims"]["sub"] == "alice"
    assert isinstance(who["claims"]["exp"], int)  # --json keeps epoch seconds, for programs
    # For a person: local times and how far away they are, no raw epoch seconds.
    shown = cli.run("whoami", "--profile", "dev")
    assert shown.returncode == 0, shown.stderr
    assert "sub: alice" in shown.stdout and "access token expires " in shown.stdout
    assert re.search(r"^exp: \d\d:\d\d:\d\d \(in \d", shown.stdout, re.M), shown.stdout
    assert "(in " in shown.stdout and not re.search(r"(?<![\w-])\d{10}(?![\w-])", shown.stdout)
    rows = json.loads(cli.run("status", "--json").stdout)
    assert rows[0]["refresh_token"] is True


@pytest.mark.parametrize("table", [
    {"grant": "client_credentials", "client_id": "c", "client_secret": "s", "scope": "b a a"},
    {"grant": "client_credentials", "client_id": "c", "private_key": None, "auth_method": "none",
     "resource": ["https://r.example/2", "https://r.example/1"], "audience": "x",
     "extra_params": {"k": "v"}},
    {"grant": "device_code", "client_id": "public"},
    {"grant": "device_code", "client_id": "public", "scope": ["openid", "api:read"]},
    {"grant": "refresh_token", "client_id": "public", "refresh_token": "rt-1"},
])
def test_profile_cache_key_matches_the_source(table: dict[str, Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path computes the key without building the source: they must agree exactly.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    table = {k: v for k, v in table.items() if v is not None}
    profile = load_profile(None, overrides={"issuer": "http://127.0.0.1:9/", **table})
    source = profile.build(interactive=False)
    assert profile.cache_key() == source.cache.key
