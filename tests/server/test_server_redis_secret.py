"""The Redis password kept off the command line (issue 12 §2): a real redis-server with
``--requirepass``, and ``keyturn serve`` given its URL through ``KEYTURN_REDIS_URL`` or the
configuration (``redis_url_env``, ``redis_url_file``, ``redis_url`` in a 0600 file), never in argv
(``/proc/<pid>/cmdline``, which every local user can read); and the signing keyring under
``keyturn-server:setting:signing_key`` is ciphertext when a key-encryption key is configured."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from keyturn.server.keys import SEALED_PREFIX
from keyturn.server.passwords import hash_password

KEK_ENV = "KT_TEST_REDIS_KEK"


class PasswordRedis:
    """One redis-server that refuses every command before ``AUTH``."""

    def __init__(self, work: Path) -> None:
        import socket

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.password = secrets.token_urlsafe(18)
        # The password goes to redis-server on stdin (a config file read from "-"), so that
        # this test's own helper keeps it out of argv too.
        self.process = subprocess.Popen(
            [binary, "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=work, text=True)
        assert self.process.stdin is not None
        self.process.stdin.write(f"port {self.port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n"
                                 f"dir {work}\nrequirepass {self.password}\n")
        self.process.stdin.close()
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.client = self._client(self.password)
        for _ in range(500):
            try:
                self.client.ping()
                return
            except Exception:  # not listening yet
                if self.process.poll() is not None:
                    raise RuntimeError("redis-server exited") from None
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def _client(self, password: str | None) -> object:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=password)

    def stop(self) -> None:
        self.client.close()  # type: ignore[attr-defined]
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordRedis]:
    server = PasswordRedis(tmp_path_factory.mktemp("redis-auth"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_auth(secured_redis: PasswordRedis) -> PasswordRedis:
    secured_redis.client.flushall()  # type: ignore[attr-defined]
    return secured_redis


def write_config(path: Path, extra: str = "", mode: int = 0o600) -> Path:
    path.write_text(f"""signing_key_secret_env = "{KEK_ENV}"
{extra}
[lifetimes]
interval = 1

[clients.cli]
name = "Cluster CLI"
grants = ["device_code", "refresh_token"]
scopes = ["openid", "offline_access"]

[users.bob]
password_hash = "{hash_password("bob-redis-pw", n=2**12)}"
""")
    path.chmod(mode)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KEYTURN_REDIS_URL"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@contextmanager
def server_process(config: Path, env: dict[str, str], data_dir: Path
                   ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config),
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        assert issuer.startswith("http://127.0.0.1:"), issuer
        yield issuer, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def assert_state_in_redis(issuer: str, process: subprocess.Popen[str], redis: PasswordRedis,
                          data_dir: Path) -> None:
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    assert b"keyturn.server" in cmdline  # the right process
    assert redis.password.encode() not in cmdline
    started = httpx.post(f"{issuer}/device_authorization", data={"client_id": "cli"})
    assert started.status_code == 200, started.text
    # The grant is in Redis, not in a SQLite file of the data directory.
    assert redis.client.dbsize() > 1  # type: ignore[attr-defined]
    assert not (data_dir / "keyturn-server.sqlite3").exists()
    stored = redis.client.get("keyturn-server:setting:signing_key").decode()  # type: ignore[attr-defined]
    assert stored.startswith(SEALED_PREFIX) and '"d"' not in stored and "kty" not in stored


def kek() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_url_from_the_environment(tmp_path, redis_auth):
    config = write_config(tmp_path / "server.toml")
    env = clean_env(KEYTURN_REDIS_URL=redis_auth.url, **{KEK_ENV: kek()})
    with server_process(config, env, tmp_path / "data") as (issuer, process):
        assert_state_in_redis(issuer, process, redis_auth, tmp_path / "data")


def test_url_from_a_variable_the_configuration_names(tmp_path, redis_auth):
    config = write_config(tmp_path / "server.toml", 'redis_url_env = "SITE_REDIS"')
    env = clean_env(SITE_REDIS=redis_auth.url, **{KEK_ENV: kek()})
    with server_process(config, env, tmp_path / "data") as (issuer, process):
        assert_state_in_redis(issuer, process, redis_auth, tmp_path / "data")


def test_url_from_a_private_file(tmp_path, redis_auth):
    secret = tmp_path / "redis-url"
    secret.write_text(redis_auth.url + "\n")
    secret.chmod(0o600)
    config = write_config(tmp_path / "server.toml", f'redis_url_file = "{secret}"')
    env = clean_env(**{KEK_ENV: kek()})
    with server_process(config, env, tmp_path / "data") as (issuer, process):
        assert_state_in_redis(issuer, process, redis_auth, tmp_path / "data")
    secret.chmod(0o644)
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config",
                             str(config)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 3 and f"run chmod 600 {secret}" in result.stderr
    assert redis_auth.password not in result.stderr


def test_url_inline_in_a_private_configuration(tmp_path, redis_auth):
    config = write_config(tmp_path / "server.toml", f'redis_url = "{redis_auth.url}"')
    env = clean_env(**{KEK_ENV: kek()})
    with server_process(config, env, tmp_path / "data") as (issuer, process):
        assert_state_in_redis(issuer, process, redis_auth, tmp_path / "data")


def test_a_configuration_others_can_read_may_not_hold_the_password(tmp_path, redis_auth):
    config = write_config(tmp_path / "server.toml", f'redis_url = "{redis_auth.url}"', mode=0o644)
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config",
                             str(config)], capture_output=True, text=True, timeout=60,
                            env=clean_env(**{KEK_ENV: kek()}))
    assert result.returncode == 3 and result.stdout == ""
    assert f"readable by others: run chmod 600 {config}" in result.stderr
    assert redis_auth.password not in result.stderr
    assert redis_auth.client.dbsize() == 0  # type: ignore[attr-defined]


def test_rotate_keys_on_redis_with_the_url_from_the_environment(tmp_path, redis_auth):
    config = write_config(tmp_path / "server.toml")
    env = clean_env(KEYTURN_REDIS_URL=redis_auth.url, **{KEK_ENV: kek()})
    with server_process(config, env, tmp_path / "data") as (issuer, _):
        old = [key["kid"] for key in httpx.get(f"{issuer}/jwks").json()["keys"]]
        result = subprocess.run([sys.executable, "-m", "keyturn.server", "rotate-keys",
                                 "--config", str(config)], capture_output=True, text=True,
                                timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        assert redis_auth.password not in result.stdout + result.stderr
    # A running server picks the new key up at its next read of the ring (REFRESH_SECONDS); a
    # server started now reads the rotated ring from Redis at once.
    with server_process(config, env, tmp_path / "data") as (issuer, _):
        kids = [key["kid"] for key in httpx.get(f"{issuer}/jwks").json()["keys"]]
        assert len(old) == 1 and len(kids) == 2 and kids[1] == old[0]
    stored = redis_auth.client.get("keyturn-server:setting:signing_key").decode()  # type: ignore[attr-defined]
    assert stored.startswith(SEALED_PREFIX)


def test_a_wrong_redis_password_stops_the_start_with_one_line(tmp_path, redis_auth):
    wrong = secrets.token_urlsafe(18)
    url = redis_auth.url.replace(redis_auth.password, wrong)
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config",
                             str(write_config(tmp_path / "server.toml"))], capture_output=True,
                            text=True, timeout=60,
                            env=clean_env(KEYTURN_REDIS_URL=url, **{KEK_ENV: kek()}))
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # no traceback
    assert "cannot read the signing keys from RedisStorage('redis://127.0.0.1:" in result.stderr
    assert "AuthenticationError" in result.stderr
    assert wrong not in result.stderr and redis_auth.password not in result.stderr


def query_url(redis: PasswordRedis, password: str) -> str:
    """The password as ``?password=``, which redis-py reads as well as userinfo."""
    return f"redis://127.0.0.1:{redis.port}/0?password={password}"


def test_a_wrong_query_password_stops_the_start_with_one_line_without_it(tmp_path, redis_auth):
    wrong = secrets.token_urlsafe(18)
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config",
                             str(write_config(tmp_path / "server.toml"))], capture_output=True,
                            text=True, timeout=60,
                            env=clean_env(KEYTURN_REDIS_URL=query_url(redis_auth, wrong),
                                          **{KEK_ENV: kek()}))
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # no traceback
    assert (f"cannot read the signing keys from RedisStorage('redis://127.0.0.1:{redis_auth.port}/0',"
            in result.stderr)
    assert "AuthenticationError" in result.stderr
    assert wrong not in result.stderr and "password=" not in result.stderr


def test_the_repr_shows_no_query_password(redis_auth):
    from keyturn.server.storage.redis import RedisStorage

    storage = RedisStorage(query_url(redis_auth, redis_auth.password) + "&username=default")
    try:
        storage.ping()  # the password in the query is really used
        shown = repr(storage)
    finally:
        storage.close()
    assert shown == f"RedisStorage('redis://127.0.0.1:{redis_auth.port}/0', prefix='keyturn-server')"
    assert redis_auth.password not in shown


def test_a_configuration_others_can_read_may_not_hold_a_query_password(tmp_path, redis_auth):
    url = query_url(redis_auth, redis_auth.password)
    config = write_config(tmp_path / "server.toml", f'redis_url = "{url}"', mode=0o644)
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config",
                             str(config)], capture_output=True, text=True, timeout=60,
                            env=clean_env(**{KEK_ENV: kek()}))
    assert result.returncode == 3 and result.stdout == ""
    assert f"readable by others: run chmod 600 {config}" in result.stderr
    assert redis_auth.password not in result.stderr
    assert redis_auth.client.dbsize() == 0  # type: ignore[attr-defined]
