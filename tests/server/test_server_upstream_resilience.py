"""An upstream sign-in across replicas, restarts and an upstream outage (issue 12 §1).

* Two keyturn replicas share one real redis-server and one issuer (as behind a load balancer):
  the sign-in starts on A, and the upstream's callback is delivered to B.
* On SQLite, the login survives a restart of the server between the button and the callback.
* The upstream is stopped for real: the callback of a login already started, and a new button
  press, get a clear page; nothing is approved.

One provider for the module, stopped by the last test.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from keyturn.server.config import parse_config
from keyturn.server.runner import ServerThread
from keyturn.server.storage.redis import RedisStorage
from tests.server.test_server_process import server_process
from tests.server.test_server_upstream import Person, claims_of, free_port, pending, shows_consent_for
from tests.support.providerfixture import Provider, complete_authorization, make_client, start_provider
from tests.support.redisfixture import RedisServer
from tests.support.serverkit import make_config, poll, start_device


@dataclass
class Site:
    provider: Provider
    upstreams: dict[str, Any]
    replica_port: int    # the issuer of both replicas (A listens there)
    sqlite_port: int
    process_port: int    # keyturn serve as a process
    client_secret: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("upstream-resilience")
    replica_port, sqlite_port, process_port = free_port(), free_port(), free_port()
    gateway = make_client(
        "keyturn-gw", "client_secret_basic", grant_types=["authorization_code"],
        response_types=["code"],
        redirect_uris=[f"http://127.0.0.1:{port}/device/callback"
                       for port in (replica_port, sqlite_port, process_port)])
    provider = start_provider([gateway], work)
    secret = work / "campus.secret"
    secret.write_text(gateway["client_secret"])
    secret.chmod(0o600)
    tables = {"campus": {"issuer": provider.issuer, "client_id": "keyturn-gw",
                         "client_secret_file": str(secret), "display_name": "Campus",
                         "subject_claim": "preferred_username", "copy_claims": ["email"],
                         "allow": [{"claim": "email", "ends_with": "@example.test"}]}}
    try:
        yield Site(provider, parse_config({"upstreams": tables}).upstreams, replica_port,
                   sqlite_port, process_port, gateway["client_secret"])
    finally:
        provider.stop()


def on_port(url: str, port: int) -> str:
    """``url`` sent to another port of 127.0.0.1: what a load balancer does."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, parts.query, ""))


def test_the_callback_lands_on_another_replica(site: Site, redis_server: RedisServer) -> None:
    issuer = f"http://127.0.0.1:{site.replica_port}"
    config = replace(make_config(), issuer=issuer, upstreams=site.upstreams)
    prefix = f"kt-{uuid.uuid4().hex[:8]}"
    a = ServerThread(config, storage=RedisStorage(redis_server.url, prefix=prefix),
                     port=site.replica_port)
    b = ServerThread(config, storage=RedisStorage(redis_server.url, prefix=prefix))
    person = Person(issuer)
    try:
        started = start_device(issuer, scope="openid email")
        to_upstream = person.start("campus", started["user_code"])  # on A
        callback = complete_authorization(site.provider, to_upstream, login="alice")
        assert callback.startswith(f"{issuer}/device/callback?")
        consent = person.back(on_port(callback, b.port))  # on B
        assert shows_consent_for(consent, "alice")
        # The same callback again, now on A: B took the login; nothing is left to take.
        again = person.back(callback)
        assert again.status_code == 400 and "already used" in again.text
        person.issuer = on_port(issuer, b.port)
        assert "approved" in person.decide(consent).text.lower()
        tokens = poll(issuer, started["device_code"]).json()  # on A
        assert claims_of(tokens["id_token"])["email"] == "alice@example.test"
        assert claims_of(tokens["id_token"])["iss"] == issuer
    finally:
        person.close()
        a.stop()
        b.stop()


def test_a_login_survives_a_restart_of_the_server(site: Site, tmp_path: Path) -> None:
    config = replace(make_config(), upstreams=site.upstreams)
    data = tmp_path / "keyturn"
    first = ServerThread(config, data_dir=data, port=site.sqlite_port)
    issuer = first.issuer
    person = Person(issuer)
    try:
        started = start_device(issuer, scope="openid email")
        to_upstream = person.start("campus", started["user_code"])
    finally:
        first.stop()
    callback = complete_authorization(site.provider, to_upstream, login="alice")
    second = ServerThread(config, data_dir=data, port=site.sqlite_port)
    try:
        consent = person.back(callback)
        assert shows_consent_for(consent, "alice")
        person.decide(consent)
        assert poll(issuer, started["device_code"]).status_code == 200
    finally:
        person.close()
        second.stop()


def test_keyturn_serve_as_a_process_signs_in_through_the_upstream(site: Site,
                                                                  tmp_path: Path) -> None:
    """The configuration file as an operator writes it (the secret inline: the file is 0600)."""
    issuer = f"http://127.0.0.1:{site.process_port}"
    conf = tmp_path / "keyturn.toml"
    conf.write_text(f"""
issuer = "{issuer}"
data_dir = "{tmp_path / 'data'}"

[clients.demo]
grants = ["device_code"]
scopes = ["openid", "email"]

[upstreams.campus]
issuer = "{site.provider.issuer}"
client_id = "keyturn-gw"
client_secret = "{site.client_secret}"
display_name = "Campus"
subject_claim = "preferred_username"
copy_claims = ["email"]
allow = [{{claim = "email", ends_with = "@example.test"}}]
""")
    conf.chmod(0o600)
    with server_process("--config", str(conf), "--port", str(site.process_port)) as (shown, _, _):
        assert shown == issuer
        page = httpx.get(f"{issuer}/device").text
        assert "Sign in with Campus" in page and "name=password" not in page  # no local users
        person = Person(issuer)
        try:
            started = start_device(issuer, scope="openid email")
            callback = complete_authorization(site.provider,
                                              person.start("campus", started["user_code"]),
                                              login="carol")
            person.decide(person.back(callback))
        finally:
            person.close()
        tokens = poll(issuer, started["device_code"]).json()
        assert claims_of(tokens["id_token"])["sub"] == "carol"


def test_an_upstream_that_is_down_gets_a_clear_page_and_approves_nothing(
        site: Site, tmp_path: Path) -> None:
    config = replace(make_config(), upstreams=site.upstreams)
    keyturn = ServerThread(config, data_dir=tmp_path / "keyturn", port=site.sqlite_port)
    person = Person(keyturn.issuer)
    try:
        started = start_device(keyturn.issuer)
        callback = complete_authorization(site.provider,
                                          person.start("campus", started["user_code"]),
                                          login="alice")
        site.provider.stop()  # for real: the Node process is gone, its port refuses
        assert not site.provider.alive
        down = person.back(callback)
        assert down.status_code == 502
        assert "Campus could not be reached" in down.text and "try again later" in down.text
        assert "ticket" not in down.text and "Traceback" not in down.text
        assert pending(keyturn.issuer, started["device_code"])
        # A new press: discovery is read again after the failure, and fails the same clear way.
        pressed = person.press("campus", started["user_code"])
        assert pressed.status_code == 502 and "Campus could not be reached" in pressed.text
        assert pressed.headers["retry-after"] == "60"
        assert pending(keyturn.issuer, started["device_code"])
    finally:
        person.close()
        keyturn.stop()


class StuckUpstream:
    """A TCP port that accepts and never answers (an upstream that hangs), counting
    connections; :meth:`close` drops them all, so whoever waits gets an error at once."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.arrived = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)
            self.arrived.release()

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def test_people_pressing_while_the_upstream_hangs_do_not_wait_in_line(tmp_path: Path) -> None:
    """Three presses at once against an upstream that never answers: all three discovery
    requests are out together (none waits for another's timeout); when the upstream drops them,
    each person gets the clear page."""
    stuck = StuckUpstream()
    tables = {"slow": {"issuer": f"http://127.0.0.1:{stuck.port}", "client_id": "c",
                       "client_secret": "s", "display_name": "Slow IdP", "allow_all": True}}
    config = replace(make_config(), upstreams=parse_config({"upstreams": tables}).upstreams)
    keyturn = ServerThread(config, data_dir=tmp_path / "keyturn")
    people = [Person(keyturn.issuer) for _ in range(3)]
    answers: list[int] = []
    try:
        codes = [start_device(keyturn.issuer)["user_code"] for _ in people]
        pressing = [threading.Thread(target=lambda p=p, c=c: answers.append(
            p.press("slow", c).status_code)) for p, c in zip(people, codes, strict=True)]
        for thread in pressing:
            thread.start()
        # Bounded by the 10 s an upstream request may take: were the presses in line, only the
        # first would be connected before then.
        assert all(stuck.arrived.acquire(timeout=8) for _ in people)
        stuck.close()
        for thread in pressing:
            thread.join(timeout=30)
        assert answers == [502, 502, 502]
    finally:
        stuck.close()
        for person in people:
            person.close()
        keyturn.stop()
