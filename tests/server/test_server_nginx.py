"""``keyturn serve`` behind a real nginx TLS proxy, with the nginx block of docs/server.md ("TLS
and reverse proxies"; its names, paths and ports substituted): discovery and a whole device
login over https, the client's address forwarded (and a forged X-Forwarded-For dropped), nginx's
request id in the server's log, no user code in nginx's log, /metrics for the allowed host only,
plain http redirected. The client connects from 127.0.0.2, nginx from 127.0.0.1, so the address
the server logs tells which one it believed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from keyturn.protocol.grants import GRANT_DEVICE_CODE
from keyturn.server.passwords import hash_password
from tests.support.serverkit import ALICE_PASSWORD, page_approve

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "nginx-metrics-token-42"
CLIENT_ADDRESS = "127.0.0.2"


def documented_block() -> str:
    text = (ROOT / "docs" / "server.md").read_text()
    section = text.split("## TLS and reverse proxies", 1)[1]
    match = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Site:
    issuer: str
    http_port: int
    ssl: ssl.SSLContext
    nginx_log: Path
    server_log: Path

    def client(self, address: str = CLIENT_ADDRESS, **kwargs: object) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address, verify=self.ssl)
        return httpx.Client(transport=transport, timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(nginx), "nginx is missing: apt-get install -y nginx"
    tmp = tmp_path_factory.mktemp("nginx")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp / "fullchain.pem", tmp / "privkey.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    https_port, http_port, server_port = _free_port(), _free_port(), _free_port()
    issuer = f"https://127.0.0.1:{https_port}"

    config = tmp / "server.toml"
    config.write_text(f"""
issuer = "{issuer}"
[metrics]
enabled = true
token_env = "NGINX_TEST_METRICS_TOKEN"
[lifetimes]
interval = 1
[clients.demo]
grants = ["device_code", "refresh_token"]
scopes = ["openid", "offline_access"]
[users.alice]
password_hash = "{hash_password(ALICE_PASSWORD, n=2**12)}"
""")
    server_log = tmp / "server.log"
    with server_log.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config),
             "--data-dir", str(tmp / "data"), "--host", "127.0.0.1", "--port", str(server_port),
             "--forwarded-allow-ips", "127.0.0.1", "--log-format", "json"],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "NGINX_TEST_METRICS_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"})
    assert server.stdout is not None
    assert server.stdout.readline().strip() == issuer

    block = documented_block()
    for documented, here in ((" 443 ssl;", f" 127.0.0.1:{https_port} ssl;"),
                             (" 80;", f" 127.0.0.1:{http_port};"),
                             ("/etc/ssl/keyturn/fullchain.pem", str(chain)),
                             ("/etc/ssl/keyturn/privkey.pem", str(key)),
                             ("/var/log/nginx/keyturn.log", str(tmp / "access.log")),
                             ("127.0.0.1:8000", f"127.0.0.1:{server_port}")):
        assert documented in block, documented
        block = block.replace(documented, here)
    # The IPv6 listeners are left out: this machine's loopback may have no ::1.
    block = "\n".join(line for line in block.splitlines() if "listen [::]" not in line)
    (tmp / "keyturn.conf").write_text(block)
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    (tmp / "nginx.conf").write_text(f"""
daemon off;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {tmp}/keyturn.conf;
}}
""")
    proxy = subprocess.Popen([nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c",
                              str(tmp / "nginx.conf")], stderr=subprocess.PIPE, text=True)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        for _ in range(100):  # up to 10 s for nginx to listen
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", https_port), timeout=0.1):
                break
            assert proxy.poll() is None, proxy.stderr.read() if proxy.stderr else ""
            with contextlib.suppress(subprocess.TimeoutExpired):
                proxy.wait(timeout=0.1)
        yield Site(issuer, http_port, context, tmp / "access.log", server_log)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        server.terminate()
        server.wait(timeout=15)


def server_records(site: Site) -> list[dict]:
    return [r for r in map(json.loads, site.server_log.read_text().splitlines())
            if r.get("logger") == "keyturn.server.access"]


def test_a_device_login_through_nginx(site: Site) -> None:
    with site.client() as http:
        metadata = http.get(f"{site.issuer}/.well-known/openid-configuration").json()
        assert metadata["issuer"] == site.issuer
        assert metadata["device_authorization_endpoint"] == f"{site.issuer}/device_authorization"
        started = http.post(metadata["device_authorization_endpoint"],
                            data={"client_id": "demo", "scope": "openid offline_access"},
                            headers={"X-Forwarded-For": "203.0.113.9"})
        assert started.status_code == 200, started.text
        device = started.json()
        assert device["verification_uri"] == f"{site.issuer}/device"
        page = http.get(device["verification_uri_complete"])
        assert "secure" in page.headers["set-cookie"].lower()  # the issuer is https
    with site.client() as browser:
        assert page_approve(site.issuer, device["user_code"], client=browser).status_code == 200
    with site.client() as http:
        token = http.post(metadata["token_endpoint"], data={
            "grant_type": GRANT_DEVICE_CODE, "device_code": device["device_code"],
            "client_id": "demo"})
        assert token.status_code == 200, token.text

    records = server_records(site)
    mine = [r for r in records if r["route"] in ("/device_authorization", "/token", "/device")]
    assert mine
    # The address nginx forwarded (the client's own), not nginx's, nor the one the client forged.
    assert {r["client"] for r in mine} == {CLIENT_ADDRESS}
    # nginx's $request_id (32 hex digits) names each request in the server's log.
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["request_id"]) for r in mine)
    nginx_log = site.nginx_log.read_text()
    assert '"GET /device"' in nginx_log  # logged, without its query string
    assert device["user_code"] not in nginx_log and "user_code" not in nginx_log
    assert all(line.split()[0] == CLIENT_ADDRESS for line in nginx_log.splitlines())


def test_metrics_only_for_the_allowed_host_and_its_token(site: Site) -> None:
    with site.client() as http:
        assert http.get(f"{site.issuer}/metrics").status_code == 403  # nginx: not allowed
    with site.client("127.0.0.1") as http:
        assert http.get(f"{site.issuer}/metrics").status_code == 401  # keyturn: no token
        scraped = http.get(f"{site.issuer}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200
        assert 'keyturn_requests_total{route="/.well-known/openid-configuration"' in scraped.text
        # The allowed host's own forwarded headers are replaced in this location too.
        forged = http.get(f"{site.issuer}/metrics", headers={
            "Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "198.51.100.77",
            "X-Request-ID": "client-chosen-id-123"})
        assert forged.status_code == 200
    for _ in range(50):  # the access line is written as the answer goes out: up to 5 s
        scrapes = [r for r in server_records(site) if r["route"] == "/metrics"]
        if len(scrapes) == 3:
            break
        time.sleep(0.1)
    assert len(scrapes) == 3
    assert {r["client"] for r in scrapes} == {"127.0.0.1"}  # nginx's peer, never the forged one
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["request_id"]) for r in scrapes)


def test_plain_http_is_only_a_redirect(site: Site) -> None:
    with site.client() as http:
        response = http.post(f"http://127.0.0.1:{site.http_port}/token", data={"x": "y"})
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://127.0.0.1/token")
