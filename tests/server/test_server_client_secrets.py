"""Wrong client secrets are limited: counted in the storage before the hash is checked, per
(client, address) and per client; past a limit no secret is hashed, and only a secret this
process verified before still works."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest

from keyturn.errors import ConfigError, OAuthError
from keyturn.protocol.grants import GRANT_CLIENT_CREDENTIALS
from keyturn.server import clientauth
from keyturn.server.clientauth import authenticate_client
from keyturn.server.config import ClientConfig, RateLimits, ServerConfig, load_config
from keyturn.server.runner import ServerThread
from keyturn.server.service import AuthorizationServer
from keyturn.server.storage.base import ServerStorage
from keyturn.server.storage.redis import RedisStorage
from keyturn.server.storage.sqlite import SQLiteStorage
from keyturn.server.tokens import load_signer
from tests.support.serverkit import _cheap_hash, basic, make_config

SECRET = "vault-secret-value-4242"


class Hasher:
    """Counts the checks of a secret against its hash (and may make each one slow)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()
        self._real = clientauth.verify_password

    def __call__(self, password: str, encoded: str) -> bool:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self._real(password, encoded)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Hasher:
    counting = Hasher()
    monkeypatch.setattr(clientauth, "verify_password", counting)
    # A cache of its own: secrets verified by other tests are not known here.
    monkeypatch.setattr(clientauth, "_verified", clientauth._VerifiedSecrets())
    return counting


def vault_config(**limits: int) -> ServerConfig:
    """A confidential client ``vault`` with a hash made now (no cache has seen its secret)."""
    config = make_config(rate_limits=RateLimits(window=3600, **limits))
    vault = ClientConfig("vault", "Vault", (GRANT_CLIENT_CREDENTIALS,), ("api",),
                         secret_hash=_cheap_hash(SECRET))
    return replace(config, clients={**config.clients, "vault": vault})


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path) -> Callable[[], ServerStorage]:
    """Opens the test's store (another connection each call, as another replica would): one
    SQLite file, or one Redis under one prefix."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"kt-{uuid.uuid4().hex[:8]}"
        return lambda: RedisStorage(url, prefix=prefix)
    return lambda: SQLiteStorage(tmp_path / "db.sqlite3")


@contextmanager
def running(config: ServerConfig, store: Callable[[], ServerStorage], **options: str
            ) -> Iterator[ServerThread]:
    with ServerThread(config, storage=store(), **options) as server:
        yield server


def token(issuer: str, secret: str, address: str | None = None) -> httpx.Response:
    headers = basic("vault", secret)
    if address is not None:
        headers["X-Forwarded-For"] = address
    return httpx.post(f"{issuer}/token", data={"grant_type": "client_credentials"},
                      headers=headers)


def refused(response: httpx.Response) -> bool:
    """The answer to a wrong secret (RFC 6749 §5.2)."""
    return (response.status_code == 401 and response.json()["error"] == "invalid_client"
            and response.headers["www-authenticate"].startswith("Basic"))


def test_past_the_limit_no_secret_is_hashed_and_a_verified_one_still_works(store, hasher):
    with running(vault_config(secret_per_address=3, secret_per_client=100), store) as server:
        assert token(server.issuer, SECRET).status_code == 200
        assert hasher.calls == 1
        # the right secret gave its try back: three wrong ones are still checked
        assert all(refused(token(server.issuer, f"wrong-{i}")) for i in range(3))
        assert hasher.calls == 4
        wrong = token(server.issuer, "wrong-again")
        assert refused(wrong) and hasher.calls == 4
        # the answer does not say that the limit was reached
        assert wrong.json() == token(server.issuer, "wrong-0").json()
        # the client that authenticated before is not locked out, and costs no hash
        assert token(server.issuer, SECRET).status_code == 200
        assert hasher.calls == 4
        # a replica that has not verified the secret yet does not hash it either: a right guess
        # past the limit is refused like a wrong one
        clientauth._verified = clientauth._VerifiedSecrets()
        assert refused(token(server.issuer, SECRET)) and hasher.calls == 4
        # another client's secrets are counted apart
        assert httpx.post(f"{server.issuer}/token", data={"grant_type": "client_credentials"},
                          headers=basic("service", "wrong")).status_code == 401
        assert hasher.calls == 5


@pytest.mark.parametrize("trusted", [True, False])
def test_the_per_address_limit_leaves_other_addresses_alone(tmp_path, hasher, trusted):
    """Behind a proxy named in forwarded_allow_ips, wrong secrets count per X-Forwarded-For
    client; otherwise the header is ignored and every request is the proxy's."""
    with ServerThread(vault_config(secret_per_address=2, secret_per_client=100),
                      data_dir=tmp_path, forwarded_allow_ips="127.0.0.1" if trusted else None
                      ) as server:
        for _ in range(3):
            assert refused(token(server.issuer, "guess", address="203.0.113.7"))
        assert hasher.calls == 2
        response = token(server.issuer, SECRET, address="198.51.100.1")
        if trusted:
            assert response.status_code == 200 and hasher.calls == 3
        else:
            assert refused(response) and hasher.calls == 2


def test_the_per_client_limit_stops_guesses_from_many_addresses(tmp_path, hasher):
    with ServerThread(vault_config(secret_per_address=100, secret_per_client=3),
                      data_dir=tmp_path, forwarded_allow_ips="127.0.0.1") as server:
        for i in range(5):
            assert refused(token(server.issuer, "guess", address=f"203.0.113.{i}"))
        assert hasher.calls == 3
        assert refused(token(server.issuer, SECRET, address="198.51.100.1"))
        assert hasher.calls == 3


def test_every_endpoint_with_client_authentication_is_limited(tmp_path, hasher):
    with ServerThread(vault_config(secret_per_address=1, secret_per_client=100),
                      data_dir=tmp_path) as server:
        for path in ("/token", "/device_authorization", "/revoke", "/introspect"):
            response = httpx.post(f"{server.issuer}{path}", data={
                "client_id": "vault", "client_secret": "guess", "token": "x"})
            assert refused(response), path
        assert hasher.calls == 1


@pytest.mark.parametrize("scope", ["per_address", "per_client"])
def test_wrong_secrets_sent_at_once_cannot_overrun_the_limit(store, monkeypatch, scope):
    limits = {"secret_per_address": 3 if scope == "per_address" else 100,
              "secret_per_client": 3 if scope == "per_client" else 100}
    slow = Hasher(delay=0.3)  # every check of the 12 is in flight together
    monkeypatch.setattr(clientauth, "verify_password", slow)
    monkeypatch.setattr(clientauth, "_verified", clientauth._VerifiedSecrets())
    storage = store()
    issuer = "http://127.0.0.1:1"
    server = AuthorizationServer(vault_config(**limits), storage, load_signer(storage, issuer),
                                 issuer)
    now = time.time()
    address = (lambda i: "192.0.2.1") if scope == "per_address" else (lambda i: f"192.0.2.{i}")

    def attempt(i: int) -> str:
        try:
            authenticate_client(server.config.clients, basic("vault", "guess")["Authorization"],
                                {}, server.secret_attempts(address(i), now))
        except OAuthError as exc:
            return exc.error
        return "accepted"

    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(attempt, range(12)))
        assert results == ["invalid_client"] * 12
        assert slow.calls == 3
    finally:
        storage.close()


def test_replicas_share_the_counts(store, hasher):
    """Two servers on one store (one SQLite file, one Redis): guesses made at either count
    against one limit."""
    config = vault_config(secret_per_address=100, secret_per_client=3)
    with running(config, store) as one, running(config, store) as two:
        assert refused(token(one.issuer, "guess-1")) and refused(token(two.issuer, "guess-2"))
        assert refused(token(one.issuer, "guess-3"))
        assert hasher.calls == 3
        assert refused(token(two.issuer, "guess-4")) and refused(token(one.issuer, SECRET))
        assert hasher.calls == 3


def test_the_limits_are_read_from_the_configuration_file(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text("[rate_limits]\nsecret_per_address = 5\nsecret_per_client = 50\n")
    limits = load_config(path).rate_limits
    assert (limits.secret_per_address, limits.secret_per_client, limits.window) == (5, 50, 300)
    assert RateLimits().secret_per_address == 20 and RateLimits().secret_per_client == 200
    path.write_text("[rate_limits]\nsecret_per_client = 0\n")
    with pytest.raises(ConfigError, match="secret_per_client"):
        load_config(path)
