"""``keyturn serve admin`` (the real command line, as a process) on the storage of a running
server, SQLite and Redis: a user's logins listed without a token, one revoked (its refresh is
refused with invalid_grant, the other login still refreshes), all revoked, the clients."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
import redis

from keyturn.protocol.grants import GRANT_REFRESH_TOKEN
from keyturn.server.config import Lifetimes, load_config
from keyturn.server.device_flow import DeviceGrant
from keyturn.server.passwords import hash_password
from keyturn.server.runner import DATABASE_NAME, ServerThread
from keyturn.server.storage.base import Login, RefreshRecord
from keyturn.server.storage.memory import MemoryStorage
from keyturn.server.storage.redis import RedisStorage
from keyturn.server.storage.sqlite import SQLiteStorage
from tests.support.clihelper import Cli
from tests.support.serverkit import (
    ALICE_PASSWORD,
    CLI_SECRET,
    basic,
    make_config,
    page_approve,
    poll,
)

BOB_PASSWORD = "bob-admin-password-77"


@dataclass
class Running:
    server: ServerThread
    storage_args: list[str]


@pytest.fixture(params=["sqlite", "redis"])
def running(request: pytest.FixtureRequest, tmp_path) -> Iterator[Running]:
    config = make_config()
    config = replace(config, users={**config.users, "bob": (
        hash_password(BOB_PASSWORD, n=2**12), {"name": "Bob"})})
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        config = replace(config, redis_url=url)
        args = ["--redis", url]
    else:
        args = ["--data-dir", str(tmp_path / "data")]
    with ServerThread(config, data_dir=tmp_path / "data") as server:
        yield Running(server, args)


def login(issuer: str, *, user: str = "alice", password: str = ALICE_PASSWORD,
          confidential: bool = False) -> dict:
    """A whole device login; the token answer."""
    auth = basic("cli", CLI_SECRET) if confidential else None
    form = {} if confidential else {"client_id": "demo"}
    started = httpx.post(f"{issuer}/device_authorization", headers=auth,
                         data={**form, "scope": "openid offline_access"})
    assert started.status_code == 200, started.text
    device = started.json()
    assert page_approve(issuer, device["user_code"], username=user,
                        password=password).status_code == 200
    answer = poll(issuer, device["device_code"], headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json() | {"client_id": "cli" if confidential else "demo"}


def refresh(issuer: str, token: dict) -> httpx.Response:
    confidential = token["client_id"] == "cli"
    return httpx.post(f"{issuer}/token", headers=basic("cli", CLI_SECRET) if confidential else None,
                      data={"grant_type": GRANT_REFRESH_TOKEN,
                            "refresh_token": token["refresh_token"],
                            **({} if confidential else {"client_id": "demo"})})


def admin(cli: Cli, running: Running, *args: str, server_module: bool = False
          ) -> tuple[int, str, str]:
    """``keyturn serve admin ARGS``, or ``python -m keyturn.server admin ARGS`` (argparse, for
    sites without the CLI extra)."""
    if server_module:
        result = subprocess.run([sys.executable, "-m", "keyturn.server", "admin", *args,
                                 *running.storage_args], env=cli.env, capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
    else:
        result = cli.run("serve", "admin", *args, *running.storage_args)
    return result.returncode, result.stdout, result.stderr


def test_list_revoke_one_then_all(running: Running, tmp_path) -> None:
    issuer = running.server.issuer
    first = login(issuer)
    second = login(issuer, confidential=True)
    bobs = login(issuer, user="bob", password=BOB_PASSWORD)
    cli = Cli(tmp_path)

    code, out, err = admin(cli, running, "logins", "alice", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [entry["client_id"] for entry in listed] == ["cli", "demo"]  # the latest first
    assert all(entry["user"] == "alice" and entry["scope"] == "openid offline_access"
               and entry["signed_in_at"] <= entry["last_used_at"] < entry["expires_at"]
               for entry in listed)
    for token in (first, second, bobs):  # never a token, in any form
        for secret in (token["refresh_token"], token["access_token"], token["id_token"]):
            assert secret not in out and secret not in err
    code, text, _ = admin(cli, running, "logins", "alice")
    assert code == 0
    assert text.splitlines()[0].split() == ["LOGIN", "CLIENT", "SIGNED", "IN", "LAST", "USED",
                                            "EXPIRES", "SCOPE"]
    assert all(entry["login"] in text for entry in listed)

    # A mistyped id revokes nothing.
    code, out, err = admin(cli, running, "revoke", "alice", listed[0]["login"], "no-such-login")
    assert code == 1
    assert "has no live login 'no-such-login'" in err and "nothing was revoked" in err
    refreshed = refresh(issuer, second)
    assert refreshed.status_code == 200  # the first id was not revoked either
    second = refreshed.json() | {"client_id": "cli"}  # rotated: the new one is the login's

    demo_login = next(entry["login"] for entry in listed if entry["client_id"] == "demo")
    code, out, err = admin(cli, running, "revoke", "alice", demo_login)
    assert code == 0, err
    assert f"revoked login {demo_login} of 'alice' (client demo)" in out
    refused = refresh(issuer, first)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    # Its access token is dead too wherever it is checked at the server.
    assert httpx.get(f"{issuer}/userinfo", headers={
        "Authorization": f"Bearer {first['access_token']}"}).status_code == 401
    assert refresh(issuer, second).status_code == 200  # the other login lives on

    code, out, err = admin(cli, running, "revoke", "alice", "--all", server_module=True)
    assert code == 0, err
    assert out.splitlines() == [f"revoked login {listed[0]['login']} of 'alice' (client cli)"]
    assert refresh(issuer, second).status_code == 400
    code, out, _ = admin(cli, running, "logins", "alice")
    # Which storage was read, said: an empty answer from the wrong one would look the same.
    assert out.strip() == f"no live logins for 'alice' in {running.server.storage!r}"
    # Bob's login is his: untouched by alice's --all.
    assert refresh(issuer, bobs).status_code == 200


def test_clients_and_usage_errors(tmp_path) -> None:
    cli = Cli(tmp_path)
    config = tmp_path / "server.toml"
    config.write_text(f"""
[clients.cli]
name = "Cluster CLI"
grants = ["device_code", "refresh_token"]
scopes = ["openid", "offline_access"]

[clients.batch]
grants = ["client_credentials"]
scopes = ["api:read"]
secret_hash = "{hash_password(CLI_SECRET, n=2**12)}"
""")
    result = cli.run("serve", "admin", "clients", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["CLIENT", "TYPE", "GRANTS", "SCOPES", "NAME"]
    assert lines[1] == ["cli", "public", "device_code,refresh_token", "openid", "offline_access",
                        "Cluster", "CLI"]
    assert lines[2] == ["batch", "confidential", "client_credentials", "api:read", "batch"]
    assert CLI_SECRET not in result.stdout and "scrypt" not in result.stdout
    as_json = json.loads(cli.run("serve", "admin", "clients", "--config", str(config),
                                 "--json").stdout)
    assert [c["type"] for c in as_json] == ["public", "confidential"]
    # Without a storage named, nothing is guessed (the demo server's is a temporary directory).
    result = cli.run("serve", "admin", "logins", "alice")
    assert result.returncode == 3
    assert "admin logins needs the server's storage: give --config" in result.stderr
    result = cli.run("serve", "admin", "revoke", "alice", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "name the logins to revoke" in result.stderr
    # Redis down: one line naming it without its password, exit 3.
    result = cli.run("serve", "admin", "logins", "alice", "--redis",
                     "redis://:hunter2-password@127.0.0.1:1/0")
    assert result.returncode == 3
    assert "cannot read the server's storage RedisStorage('redis://127.0.0.1:1/0'" in result.stderr
    assert "hunter2" not in result.stderr and len(result.stderr.splitlines()) == 1


def _record(token: str, family: str, subject: str, created: float, expires: float,
            auth_time: float | None = None) -> RefreshRecord:
    return RefreshRecord(token_hash=token, family_id=family, client_id="demo", subject=subject,
                         scope=("openid",), created_at=created, expires_at=expires,
                         auth_time=auth_time)


def test_memory_storage_lists_logins_by_family() -> None:
    """The rules every backend shares (storage.base.live_logins), on the in-memory one."""
    storage = MemoryStorage()
    storage.add_refresh_token(_record("a1", "fa", "alice", 100, 1000, auth_time=90))
    storage.add_refresh_token(_record("a2", "fa", "alice", 200, 1100, auth_time=90))  # rotated
    storage.add_refresh_token(_record("b1", "fb", "alice", 150, 400))  # expires before "now"
    storage.add_refresh_token(_record("c1", "fc", "alice", 120, 1000))
    storage.add_refresh_token(_record("d1", "fd", "alice", 130, 1000))
    storage.add_refresh_token(_record("e1", "fe", "bob", 130, 1000))
    storage.revoke_family("fd", 2000)
    assert storage.logins("alice", 500) == [
        Login(family_id="fa", client_id="demo", subject="alice", scope=("openid",),
              signed_in_at=90, last_used_at=200, expires_at=1100),
        Login(family_id="fc", client_id="demo", subject="alice", scope=("openid",),
              signed_in_at=120, last_used_at=120, expires_at=1000)]
    assert [login.family_id for login in storage.logins("bob", 500)] == ["fe"]
    assert storage.logins("carol", 500) == []


def test_revoke_lasts_as_long_as_the_login_without_the_config(tmp_path) -> None:
    """With --data-dir only (no --config, so no lifetimes), a revocation is kept until the
    login's own end (its refresh token's expiry, here 90 days), not a default 30 days: once the
    mark is purged, the still unexpired refresh token would work again."""
    ninety_days = 90 * 24 * 3600
    data = tmp_path / "data"
    config = make_config(lifetimes=Lifetimes(interval=1, refresh_token=ninety_days))
    with ServerThread(config, data_dir=data) as server:
        token = login(server.issuer)
        result = Cli(tmp_path).run("serve", "admin", "revoke", "alice", "--all",
                                   "--data-dir", str(data))
        assert result.returncode == 0, result.stderr
        family = result.stdout.split()[2]  # "revoked login FAMILY of 'alice' (client demo)"
        assert refresh(server.issuer, token).status_code == 400
    storage = SQLiteStorage(data / DATABASE_NAME)
    try:
        storage.purge(time.time() + ninety_days - 24 * 3600)  # day 89: the token is still valid
        assert storage.family_revoked(family)
        storage.purge(time.time() + ninety_days + 2 * 3600)  # and the mark does end
        assert not storage.family_revoked(family)
    finally:
        storage.close()


def test_refuses_a_storage_no_server_ran_on(tmp_path, redis_url: str) -> None:
    """A mistyped --data-dir, a SQLite file no server ran on, an empty Redis (the server's URL
    in an EnvironmentFile= that sudo does not pass on): exit 3 naming the storage tried and how
    to name the server's, never "no live logins" (nor a revocation of nothing), nothing made."""
    cli = Cli(tmp_path)
    typo = tmp_path / "typo-dir"
    for args in (["logins", "alice"], ["revoke", "alice", "--all"]):
        result = cli.run("serve", "admin", *args, "--data-dir", str(typo))
        assert result.returncode == 3, result.stdout
        assert f"no server's storage at {str(typo / DATABASE_NAME)!r}" in result.stderr
        assert "--config" in result.stderr and "--redis / KEYTURN_REDIS_URL" in result.stderr
        assert "no live logins" not in result.stdout
    assert not typo.exists()
    empty = SQLiteStorage(tmp_path / "empty" / DATABASE_NAME)
    empty.close()
    result = cli.run("serve", "admin", "logins", "alice", "--data-dir", str(tmp_path / "empty"))
    assert result.returncode == 3
    assert f"{empty!r} holds no keyturn server's data" in result.stderr
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "admin", "revoke", "alice",
                             "--all", "--redis", redis_url], env=cli.env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 3
    assert "RedisStorage(" in result.stderr and "holds no keyturn server's data" in result.stderr
    assert "KEYTURN_REDIS_URL" in result.stderr


def test_redis_logins_from_before_the_index(tmp_path, redis_url: str) -> None:
    """Logins a server made before the per-user hash existed (its refresh tokens in no hash) are
    listed and revoked: the hash is deleted here, as an older server never wrote it."""
    with ServerThread(make_config(redis_url=redis_url), data_dir=tmp_path / "data") as server:
        tokens = [login(server.issuer), login(server.issuer, confidential=True)]
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.delete("keyturn-server:logins:alice") == 1
        finally:
            client.close()
        cli = Cli(tmp_path)
        result = cli.run("serve", "admin", "logins", "alice", "--json", "--redis", redis_url)
        assert result.returncode == 0, result.stderr
        assert sorted(entry["client_id"] for entry in json.loads(result.stdout)) == ["cli", "demo"]
        result = cli.run("serve", "admin", "revoke", "alice", "--all", "--redis", redis_url)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 2
        assert [refresh(server.issuer, token).status_code for token in tokens] == [400, 400]


def test_admin_runs_without_the_metrics_token_serve_needs(tmp_path, monkeypatch) -> None:
    """admin serves no /metrics: a [metrics] token_env missing from its environment (sudo does
    not pass the unit's EnvironmentFile= on) does not stop it; serve still refuses to start
    without it (/metrics would be open to anyone)."""
    config = tmp_path / "server.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[metrics]\nenabled = true\n'
                      'token_env = "KEYTURN_TEST_METRICS_TOKEN"\n[clients.demo]\n'
                      'grants = ["device_code", "refresh_token"]\nscopes = ["openid"]\n')
    monkeypatch.setenv("KEYTURN_TEST_METRICS_TOKEN", "admin-test-metrics-token-99")
    with ServerThread(load_config(config), data_dir=tmp_path / "data"):
        pass  # the server's storage, with its keyring
    cli = Cli(tmp_path)  # its environment holds no KEYTURN_* variable
    assert "KEYTURN_TEST_METRICS_TOKEN" not in cli.env
    result = cli.run("serve", "admin", "logins", "alice", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no live logins for 'alice' in SQLiteStorage(")
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config",
                             str(config), "--port", "0", "--host", "127.0.0.1"], env=cli.env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 3
    assert "[metrics] token_env names KEYTURN_TEST_METRICS_TOKEN, which is not set" in result.stderr


def test_redis_index_drops_ended_logins_as_new_ones_come(redis_url: str) -> None:
    """The per-user hash has one TTL (its newest login's) and none per field: a new login prunes
    the ended ones, so a user who signs in often does not grow it without end. On a real
    redis-server, through the redemption script, with the logins' times chosen: B lives long
    (the hash with it), A has ended, C comes now."""
    storage = RedisStorage(redis_url)
    now = time.time()

    def redeem(family: str, created: float, expires: float) -> None:
        grant = DeviceGrant(device_code_hash=f"dc-{family}", user_code=f"BCDFGHJ{family}",
                            client_id="demo", scope=("openid",), created_at=now,
                            expires_at=now + 600, interval=1)
        assert storage.create_device_grant(grant)
        approved = grant.approve("alice", now)
        assert storage.swap_device_grant(approved)
        consumed = replace(approved, version=approved.version + 1, family_id=family)
        assert storage.redeem_device_grant(consumed, _record(f"rt-{family}", family, "alice",
                                                             created, expires), None)

    try:
        redeem("B", now - 10, now + 1000)
        redeem("A", now - 100, now - 50)  # ended: its field stays until a new login comes
        assert len(storage.logins("alice", now - 200)) == 2
        redeem("C", now, now + 1000)
        client = redis.Redis.from_url(redis_url)
        try:
            held = sorted(name.decode() for name in client.hkeys("keyturn-server:logins:alice"))
        finally:
            client.close()
        assert held == ["B", "C"]
    finally:
        storage.close()


def test_rotate_keys_refuses_a_data_dir_that_is_not_there(tmp_path) -> None:
    """A mistyped --data-dir: rotate-keys would make a keyring no server reads (and say it
    rotated); it exits 3 naming the file it looked for, and makes nothing."""
    typo = tmp_path / "typo-dir"
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "rotate-keys", "--data-dir",
                             str(typo)], env=Cli(tmp_path).env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 3, result.stdout
    assert f"no server's storage at {str(typo / DATABASE_NAME)!r}" in result.stderr
    assert not typo.exists()
