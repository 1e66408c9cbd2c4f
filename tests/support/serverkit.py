"""Helpers for the authorization server's tests: a configuration, a running server, approval.

Imported by name (``from tests.support.serverkit import ...``); ``tests/server/conftest.py`` exports
its ``server`` fixture.

The server runs in-process on a free 127.0.0.1 port (``ServerThread``: real uvicorn, real SQLite);
the verification page is driven over HTTP with one cookie jar, as a browser would.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from keyturn.protocol.grants import GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN
from keyturn.server.config import ClientConfig, Lifetimes, RateLimits, ServerConfig
from keyturn.server.passwords import hash_password
from keyturn.server.runner import ServerThread
from keyturn.server.storage.redis import RedisStorage

ALICE_PASSWORD = "alice-correct-horse"
CLI_SECRET = "cli-secret-value-1234"
SERVICE_SECRET = "service-secret-value-5678"
RS_SECRET = "resource-server-secret-90"


def _cheap_hash(secret: str) -> str:
    return hash_password(secret, n=2**12)  # fast for tests; the default cost is for production


def make_config(**changes: object) -> ServerConfig:
    both = (GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN)
    config = ServerConfig(
        clients={
            "demo": ClientConfig("demo", "Demo CLI", both, ("openid", "profile", "email",
                                                               "offline_access")),
            "nogrant": ClientConfig("nogrant", "No device", (GRANT_REFRESH_TOKEN,), ("openid",)),
            "cli": ClientConfig("cli", "Confidential CLI", both,
                                ("openid", "api", "profile", "offline_access"),
                                secret_hash=_cheap_hash(CLI_SECRET)),
            "service": ClientConfig("service", "Batch service", (GRANT_CLIENT_CREDENTIALS,),
                                    ("api:read", "api:write"),
                                    secret_hash=_cheap_hash(SERVICE_SECRET)),
            "rs": ClientConfig("rs", "Resource server", (GRANT_CLIENT_CREDENTIALS,), ("introspect",),
                               secret_hash=_cheap_hash(RS_SECRET)),
        },
        users={"alice": (_cheap_hash(ALICE_PASSWORD), {"name": "Alice Example",
                                                       "email": "alice@example.invalid"})},
        lifetimes=Lifetimes(interval=1),
        rate_limits=RateLimits(window=3600, per_address=1000, overall=1000,
                               secret_per_address=1000, secret_per_client=1000),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerThread]:
    """The server on SQLite, then on a real redis-server (the same tests run on both)."""
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        storage = RedisStorage(redis_server.url, prefix=f"kt-{uuid.uuid4().hex[:8]}")
        running = ServerThread(make_config(), storage=storage)
    else:
        running = ServerThread(make_config(), data_dir=tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


_CSRF = re.compile(r'name=csrf value="([^"]+)"')
_TICKET = re.compile(r'name=ticket value="([^"]+)"')


def page_approve(issuer: str, user_code: str, *, username: str = "alice",
                 password: str = ALICE_PASSWORD, decision: str = "approve",
                 client: httpx.Client | None = None) -> httpx.Response:
    """Drive /device as a person would: open it, enter code and password, press a button.
    Returns the last response (the result page, or the page that refused)."""
    own = client is None
    browser = client or httpx.Client(timeout=10)
    try:
        page = browser.get(f"{issuer}/device", params={"user_code": user_code})
        assert page.status_code == 200
        csrf = _CSRF.search(page.text)
        assert csrf, page.text
        consent = browser.post(f"{issuer}/device", data={
            "csrf": csrf.group(1), "user_code": user_code, "username": username,
            "password": password})
        ticket = _TICKET.search(consent.text)
        if consent.status_code != 200 or ticket is None:
            return consent
        return browser.post(f"{issuer}/device/decision", data={
            "csrf": csrf.group(1), "ticket": ticket.group(1), "decision": decision})
    finally:
        if own:
            browser.close()


# -- plain HTTP, where a test sends exactly one thing --------------------------------------------


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def start_device(issuer: str, **form: str) -> dict:
    form.setdefault("client_id", "demo")
    response = httpx.post(f"{issuer}/device_authorization", data=form)
    assert response.status_code == 200, response.text
    return response.json()


def poll(issuer: str, device_code: str, *, headers: dict | None = None, **form: str) -> httpx.Response:
    data = {"grant_type": GRANT_DEVICE_CODE, "device_code": device_code, **form}
    if headers is None:
        data.setdefault("client_id", "demo")
    return httpx.post(f"{issuer}/token", data=data, headers=headers or {})
