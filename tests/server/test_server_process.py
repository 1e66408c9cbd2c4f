"""``python -m keyturn.server`` as a real process: the issuer on the first stdout line, a TOML
configuration, two server processes sharing one data directory, and ``keyturn demo``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from keyturn import DeviceCode, MemoryStore
from keyturn.cli.walkthrough import demo
from keyturn.errors import ConfigError
from keyturn.server.config import load_config
from keyturn.server.passwords import hash_password, verify_password
from tests.support.serverkit import page_approve, start_device


@contextmanager
def server_process(*args: str) -> Iterator[tuple[str, list[str], subprocess.Popen[str]]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "keyturn.server", "serve", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        assert issuer.startswith("http://127.0.0.1:"), issuer
        extra = [process.stdout.readline().strip()] if "--config" not in args else []
        yield issuer, extra, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def write_config(path: Path, password: str, rate: str = "") -> Path:
    path.write_text(f"""
[lifetimes]
interval = 1

[clients.cli]
name = "Cluster CLI"
grants = ["device_code", "refresh_token"]
scopes = ["openid", "offline_access"]

[users.bob]
password_hash = "{hash_password(password, n=2**12)}"
name = "Bob"
{rate}
""")
    return path


def test_demo_configuration_prints_issuer_then_password():
    with server_process() as (issuer, extra, _):
        assert "user 'demo' with password" in extra[0]
        password = extra[0].rsplit(" ", 1)[1]
        doc = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
        assert doc["issuer"] == issuer
        started = start_device(issuer, scope="openid")
        assert page_approve(issuer, started["user_code"], username="demo",
                            password=password).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_two_processes_share_one_store(tmp_path, request, backend):
    """A device code made on one server process is approved on a second and redeemed on the first:
    one SQLite data directory, or one Redis (replicas behind a load balancer)."""
    config = write_config(tmp_path / "server.toml", "bob-pw")
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        store = ["--redis", url, "--data-dir", str(tmp_path / "unused")]
    else:
        store = ["--data-dir", str(tmp_path / "data")]
    with server_process("--config", str(config), *store) as (one, _, _), \
            server_process("--config", str(config), *store) as (two, _, _):
        assert one != two
        started = httpx.post(f"{one}/device_authorization",
                             data={"client_id": "cli", "scope": "openid"}).json()
        page = page_approve(two, started["user_code"], username="bob", password="bob-pw")
        assert page.status_code == 200
        # the issuer differs, so the second verifies tokens of its own issuer only; the grant is shared
        response = httpx.post(f"{one}/token", data={
            "client_id": "cli", "device_code": started["device_code"],
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code"})
        assert response.status_code == 200, response.text
        again = httpx.post(f"{two}/token", data={
            "client_id": "cli", "device_code": started["device_code"],
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code"})
        # Across processes: the retried poll within the grace gets the one answer (no second set).
        assert again.status_code == 200 and again.json() == response.json()
        assert (httpx.get(f"{one}/jwks").json() == httpx.get(f"{two}/jwks").json())


def test_configuration_file_drives_keyturn_client(tmp_path):
    config = write_config(tmp_path / "server.toml", "bob-pw")
    with server_process("--config", str(config), "--data-dir", str(tmp_path / "d")) as (issuer, _, _):
        source = DeviceCode(issuer=issuer, client_id="cli", store=MemoryStore(),
                            prompt=lambda v: page_approve(issuer, v.user_code, username="bob",
                                                          password="bob-pw"))
        assert source.get_token().claims["sub"] == "bob"


@pytest.mark.parametrize(("text", "message"), [
    ("[clients.x]\ngrants = ['password']\n", "unsupported grant"),
    ("[clients.x]\ngrants = ['client_credentials']\n", "needs a confidential client"),
    ("[users.u]\nname = 'x'\n", "password_hash"),
    ("[lifetimes]\ninterval = -1\n", "positive"),
    ("[lifetimes]\nintervall = 5\n", "unknown key"),
    ("issuer = 'ftp://x'\n", "http"),
    ("not toml", "not valid TOML"),
])
def test_bad_configuration_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_bad_configuration_exits_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[lifetimes]\ninterval = 0\n")
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "interval" in result.stderr


def test_hash_password_command():
    result = subprocess.run([sys.executable, "-m", "keyturn.server", "hash-password"],
                            input="s3cret\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert verify_password("s3cret", result.stdout.strip())
    assert not verify_password("other", result.stdout.strip())


def test_argon2_hashes_are_accepted():
    import argon2
    encoded = argon2.PasswordHasher().hash("pw")
    assert verify_password("pw", encoded) and not verify_password("no", encoded)
    assert not verify_password("pw", "scrypt$garbage") and not verify_password("pw", "plain")


def test_demo_walkthrough():
    out = io.StringIO()

    def approve(verification, password):
        assert page_approve(verification.verification_uri.rsplit("/device", 1)[0],
                            verification.user_code, username="demo",
                            password=password).status_code == 200

    claims = demo(out=out, approve=approve, interval=1)
    text = out.getvalue()
    assert claims["sub"] == "demo" and claims["client_id"] == "demo"
    assert "user name: demo" in text and "password:" in text
    assert "Step 2" in text and "Step 3 - a silent refresh" in text


def test_listening_socket_is_tcp_so_nagle_is_off():
    # asyncio sets TCP_NODELAY on accepted connections only when the socket's proto is TCP; with
    # proto 0 every keep-alive answer waited ~40 ms for the client's delayed ACK.
    import socket

    from keyturn.server.runner import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
