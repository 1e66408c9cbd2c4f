"""``keyturn serve --log-format json``: the real server as a process, a whole device login, a
refresh and a wrong password; every stderr line is one JSON object, and no secret used shows in
stdout or stderr."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from keyturn.errors import ConfigError
from keyturn.protocol.grants import GRANT_REFRESH_TOKEN
from keyturn.server.config import parse_config
from keyturn.server.logformat import ACCESS_FIELDS
from keyturn.server.passwords import hash_password
from keyturn.server.runner import ServerThread
from tests.support.serverkit import basic, make_config, page_approve, poll

PASSWORD = "bob-json-password-4711"
WRONG_PASSWORD = "bob-wrong-guess-0815"
CLIENT_SECRET = "cli-json-secret-value-2718"
QUERY_SECRET = "query-secret-3141"
REQUEST_ID = "nginx-request-id-0123456789abcdef"


def write_config(path: Path) -> Path:
    path.write_text(f"""
[lifetimes]
interval = 1

[clients.cli]
grants = ["device_code", "refresh_token"]
scopes = ["openid", "profile", "offline_access"]
secret_hash = "{hash_password(CLIENT_SECRET, n=2**12)}"

[users.bob]
password_hash = "{hash_password(PASSWORD, n=2**12)}"
name = "Bob"
""")
    path.chmod(0o600)
    return path


def test_log_format_in_the_configuration() -> None:
    assert parse_config({}).log_format == "text"
    assert parse_config({"log_format": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match='log_format must be "text" or "json"'):
        parse_config({"log_format": "yaml"})


def test_every_line_is_json_and_holds_no_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path / "server.toml")
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config),
             "--data-dir", str(tmp_path / "data"), "--log-format", "json"],
            stdout=out, stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            issuer = _issuer(process, stdout)
            secrets = _login(issuer)
        finally:
            process.send_signal(signal.SIGTERM)  # the shutdown's lines are checked too
            process.wait(timeout=15)
    # The first stdout line is the issuer (design.md §3), and there is nothing else: no log.
    assert stdout.read_text().splitlines() == [issuer]
    lines = stderr.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert all(isinstance(record, dict) for record in records)
    text = stdout.read_text() + stderr.read_text()
    for secret in secrets:
        assert secret not in text
    messages = [r["message"] for r in records if r.get("logger") == "uvicorn.error"]
    assert any("Started server process" in m for m in messages)
    assert any("Finished server process" in m for m in messages)
    access = [r for r in records if r.get("logger") == "keyturn.server.access"]
    assert {(r["method"], r["route"], r["status"]) for r in access} >= {
        ("POST", "/device_authorization", 200), ("POST", "/token", 400), ("POST", "/token", 200),
        ("GET", "/device", 200), ("POST", "/device", 200), ("POST", "/device/decision", 200),
        ("GET", None, 404)}
    for record in access:
        assert set(record) == {"time", "level", "logger", "method", "route", "status",
                               "duration_ms", "client", "client_id", "request_id"}
        assert record["client"] == "127.0.0.1"
        assert record["duration_ms"] >= 0
    tokens = [r for r in access if r["route"] == "/token"]
    assert tokens and all(r["client_id"] == "cli" for r in tokens)
    assert all(r["client_id"] is None for r in access if r["route"] == "/device")
    # This client reaches the server itself (no --forwarded-allow-ips): the X-Request-ID the
    # three requests of the approval sent is not believed; each request gets a new id (a proxy's
    # is kept: test_a_request_id_is_believed_from_a_named_proxy_only, test_server_nginx).
    ids = [r["request_id"] for r in access]
    assert REQUEST_ID not in ids
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize("trusted", [True, False], ids=["named proxy", "any client"])
def test_a_request_id_is_believed_from_a_named_proxy_only(tmp_path: Path, trusted: bool,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """X-Request-ID is taken from a peer named in forwarded_allow_ips, if well-formed; from any
    other peer (a client could give its request another's id) a new one is made."""
    sent = [REQUEST_ID, "bad id <script>"]
    with caplog.at_level(logging.INFO, logger="keyturn.server.access"), ServerThread(
            make_config(), data_dir=tmp_path,
            forwarded_allow_ips="127.0.0.1" if trusted else None) as server:
        for request_id in sent:
            assert httpx.get(f"{server.issuer}/jwks",
                             headers={"X-Request-ID": request_id}).status_code == 200
    # Read after the server stopped: every request's line has been written.
    ids = [getattr(r, ACCESS_FIELDS)["request_id"] for r in caplog.records
           if r.name == "keyturn.server.access"]
    assert len(ids) == 2
    assert (ids[0] == REQUEST_ID) is trusted
    assert ids[1] not in sent and len(ids[1]) == 16  # malformed: replaced, trusted or not


def _issuer(process: subprocess.Popen[str], stdout: Path) -> str:
    for _ in range(300):  # up to 30 s for the first line
        lines = stdout.read_text().splitlines()
        if lines:
            return lines[0]
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
    raise AssertionError("no issuer line")


def _login(issuer: str) -> list[str]:
    """A device login, a refresh and a wrong password; returns every secret that was sent."""
    auth = basic("cli", CLIENT_SECRET)
    started = httpx.post(f"{issuer}/device_authorization", headers=auth,
                         data={"scope": "openid offline_access"})
    assert started.status_code == 200, started.text
    device = started.json()
    assert poll(issuer, device["device_code"], headers=auth).status_code == 400  # pending
    refused = page_approve(issuer, device["user_code"], username="bob", password=WRONG_PASSWORD)
    assert "ticket" not in refused.text
    with httpx.Client(timeout=10, headers={"X-Request-ID": REQUEST_ID}) as browser:
        approved = page_approve(issuer, device["user_code"], username="bob", password=PASSWORD,
                                client=browser)
    assert approved.status_code == 200
    token = poll(issuer, device["device_code"], headers={**auth, "X-Request-ID": "bad id <script>"})
    assert token.status_code == 200, token.text
    refreshed = httpx.post(f"{issuer}/token", headers=auth, data={
        "grant_type": GRANT_REFRESH_TOKEN, "refresh_token": token.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert httpx.get(f"{issuer}/device/{device['user_code']}",
                     params={"code": QUERY_SECRET}).status_code == 404
    return [PASSWORD, WRONG_PASSWORD, CLIENT_SECRET, QUERY_SECRET, device["device_code"],
            device["user_code"], device["user_code"].replace("-", ""),
            *(token.json()[k] for k in ("access_token", "refresh_token", "id_token")),
            *(refreshed.json()[k] for k in ("access_token", "refresh_token", "id_token"))]
