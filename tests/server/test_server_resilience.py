"""The server under storage outages and unbounded use, against real components.

* An outage (the real redis-server stopped; a real SQLite file locked by another connection, or
  its volume gone) answers /token and /device_authorization with 503 ``temporarily_unavailable``
  and a Retry-After, and the /device page with a short page: no traceback, no storage detail. The
  server serves again once the storage is back.
* Expired rows are purged periodically (counted in the real SQLite file); every Redis key but the
  settings has a TTL.
* New device grants are limited per address and per client (429 with Retry-After).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from keyturn.errors import StoreError
from keyturn.protocol.grants import GRANT_REFRESH_TOKEN
from keyturn.server.config import RateLimits
from keyturn.server.device_flow import LETTERS, new_device_grant
from keyturn.server.errors import OUTAGE_RETRY_AFTER
from keyturn.server.runner import ServerThread
from keyturn.server.storage.base import RefreshRecord
from keyturn.server.storage.redis import RedisStorage
from keyturn.server.storage.sqlite import SQLiteStorage
from tests.support.redisfixture import RedisServer, start_redis
from tests.support.serverkit import ALICE_PASSWORD, CLI_SECRET, basic, make_config, page_approve, poll

#: Bounds of the waits for the purge (the server's own interval is 1 s in these tests).
PURGE_DEADLINE = 20.0


def _login(issuer: str, scope: str = "openid offline_access") -> dict:
    started = httpx.post(f"{issuer}/device_authorization", data={"client_id": "demo",
                                                                 "scope": scope})
    assert started.status_code == 200, started.text
    assert page_approve(issuer, started.json()["user_code"]).status_code == 200
    response = poll(issuer, started.json()["device_code"])
    assert response.status_code == 200, response.text
    return response.json()


def _refresh(issuer: str, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{issuer}/token", data={"grant_type": GRANT_REFRESH_TOKEN,
                                               "refresh_token": refresh_token,
                                               "client_id": "demo"})


def _assert_outage_json(response: httpx.Response, *hidden: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == str(OUTAGE_RETRY_AFTER)
    assert response.headers["cache-control"] == "no-store"
    for text in ("Traceback", 'File "', "sqlite", "redis", "locked", "127.0.0.1", *hidden):
        assert text.lower() not in response.text.lower()


# -- Redis stopped for real ----------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start again (same port)."""
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_redis_down_is_503_then_served_again(own_redis: RedisServer) -> None:
    storage = RedisStorage(own_redis.url, prefix=f"kt-{uuid.uuid4().hex[:8]}")
    with ServerThread(make_config(), storage=storage) as running:
        issuer = running.issuer
        refresh_token = _login(issuer)["refresh_token"]
        browser = httpx.Client(timeout=10)
        page = browser.get(f"{issuer}/device")
        csrf = re.search(r'name=csrf value="([^"]+)"', page.text)
        assert csrf is not None
        own_redis.stop()
        try:
            hidden = (str(own_redis.port), "connection")
            _assert_outage_json(_refresh(issuer, refresh_token), *hidden)
            _assert_outage_json(httpx.post(f"{issuer}/device_authorization",
                                           data={"client_id": "demo"}), *hidden)
            # A confidential client too: its secret check is counted in the storage.
            _assert_outage_json(httpx.post(f"{issuer}/device_authorization",
                                           data={"scope": "openid"},
                                           headers=basic("cli", CLI_SECRET)), *hidden)
            # The /device page: a person reads a short page, not JSON and not a traceback.
            submitted = browser.post(f"{issuer}/device", data={
                "csrf": csrf.group(1), "user_code": "BCDF-GHJK", "username": "alice",
                "password": ALICE_PASSWORD})
            assert submitted.status_code == 503
            assert submitted.headers["content-type"].startswith("text/plain")
            assert submitted.headers["retry-after"] == str(OUTAGE_RETRY_AFTER)
            assert "try again" in submitted.text
            for text in ("Traceback", "redis", str(own_redis.port), ALICE_PASSWORD):
                assert text not in submitted.text
            health = httpx.get(f"{issuer}/health")
            assert health.status_code == 503
            assert health.headers["retry-after"] == str(OUTAGE_RETRY_AFTER)
        finally:
            own_redis.start()
            browser.close()
        # Back: Redis lost its data (no persistence), but the server serves new logins again.
        assert httpx.post(f"{issuer}/device_authorization",
                          data={"client_id": "demo"}).status_code == 200


def _logged_outage(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(f"storage unavailable ({kind}) on ")]


def test_redis_out_of_memory_is_503(own_redis: RedisServer, caplog) -> None:
    """maxmemory reached with the noeviction policy: Redis refuses every write with OOM."""
    storage = RedisStorage(own_redis.url, prefix=f"kt-{uuid.uuid4().hex[:8]}")
    with ServerThread(make_config(), storage=storage) as running:
        issuer = running.issuer
        assert own_redis.command("CONFIG SET maxmemory-policy noeviction").startswith(b"+OK")
        assert own_redis.command("CONFIG SET maxmemory 1").startswith(b"+OK")
        try:
            _assert_outage_json(httpx.post(f"{issuer}/device_authorization",
                                           data={"client_id": "demo"}), "memory", "OOM")
        finally:
            own_redis.command("CONFIG SET maxmemory 0")
        assert len(_logged_outage(caplog, "OutOfMemoryError")) == 1
        assert httpx.post(f"{issuer}/device_authorization",
                          data={"client_id": "demo"}).status_code == 200


def test_redis_refusing_writes_after_a_failed_snapshot_is_503(tmp_path: Path, caplog) -> None:
    """MISCONF: a snapshot failed (its directory is gone: the volume lost) while save points
    are set and stop-writes-on-bgsave-error holds."""
    work = tmp_path / "redis-work"
    work.mkdir()
    redis_server = RedisServer(work).start()
    try:
        storage = RedisStorage(redis_server.url, prefix=f"kt-{uuid.uuid4().hex[:8]}")
        with ServerThread(make_config(), storage=storage) as running:
            assert redis_server.command('CONFIG SET save "3600 1"').startswith(b"+OK")
            assert redis_server.command("CONFIG SET stop-writes-on-bgsave-error yes"
                                        ).startswith(b"+OK")
            shutil.rmtree(work)  # redis-server's working directory: no snapshot can be written
            redis_server.command("BGSAVE")
            for _ in range(250):  # bounded: the snapshot's child fails at once
                if b"rdb_last_bgsave_status:err" in redis_server.command("INFO persistence"):
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the snapshot did not fail")
            _assert_outage_json(httpx.post(f"{running.issuer}/device_authorization",
                                           data={"client_id": "demo"}), "MISCONF", "snapshot")
        assert len(_logged_outage(caplog, "MisconfError")) == 1
    finally:
        redis_server.stop()


# -- SQLite locked by another connection, and its volume gone ------------------------------------


class QuickBusySQLite(SQLiteStorage):
    """The real SQLite storage waiting 0.2 s for a lock instead of 30 s: the lock the test holds
    is real, only the test does not wait half a minute for the server to give up."""

    def _connection(self) -> sqlite3.Connection:
        db = super()._connection()
        db.execute("PRAGMA busy_timeout=200")
        return db


def test_sqlite_locked_by_another_connection_is_503(tmp_path: Path) -> None:
    path = tmp_path / "server.sqlite3"
    with ServerThread(make_config(), storage=QuickBusySQLite(path)) as running:
        issuer = running.issuer
        refresh_token = _login(issuer)["refresh_token"]
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        try:
            _assert_outage_json(_refresh(issuer, refresh_token))
            _assert_outage_json(httpx.post(f"{issuer}/device_authorization",
                                           data={"client_id": "demo"}))
        finally:
            other.execute("ROLLBACK")
            other.close()
        # The refused refresh changed nothing: the refresh token still works, once.
        again = _refresh(issuer, refresh_token)
        assert again.status_code == 200, again.text


def test_sqlite_volume_gone_is_503_then_served_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    storage = SQLiteStorage(data / "server.sqlite3")
    with ServerThread(make_config(), storage=storage) as running:
        issuer = running.issuer
        refresh_token = _login(issuer)["refresh_token"]
        storage.close()  # no request runs: each thread opens its connection again
        data.rename(tmp_path / "unmounted")  # the file cannot be opened any more
        try:
            _assert_outage_json(_refresh(issuer, refresh_token), str(tmp_path))
            _assert_outage_json(httpx.post(f"{issuer}/device_authorization",
                                           data={"client_id": "demo"}), str(tmp_path))
        finally:
            (tmp_path / "unmounted").rename(data)
        assert _refresh(issuer, refresh_token).status_code == 200


def test_sqlite_file_that_is_no_database_is_503(tmp_path: Path, caplog) -> None:
    """The file overwritten (a bad restore, a damaged disk): "file is not a database"."""
    path = tmp_path / "server.sqlite3"
    storage = SQLiteStorage(path)
    with ServerThread(make_config(), storage=storage) as running:
        issuer = running.issuer
        assert httpx.post(f"{issuer}/device_authorization",
                          data={"client_id": "demo"}).status_code == 200
        storage.close()  # no request runs: each thread opens its connection again
        size = path.stat().st_size
        path.write_bytes(b"no database here" * (size // 16 + 1))
        _assert_outage_json(httpx.post(f"{issuer}/device_authorization",
                                       data={"client_id": "demo"}), str(tmp_path))
        assert len(_logged_outage(caplog, "DatabaseError")) == 1


# -- the purge ---------------------------------------------------------------------------------


def _rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return {table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in ("device_grants", "refresh_tokens", "revoked", "counters")}


def _expired_rows(storage: SQLiteStorage, now: float) -> None:
    """One expired row of each kind, written as another replica would (the real storage)."""
    old = now - 3 * 86400
    _, grant = new_device_grant(client_id="demo", scope=("openid",), now=old, lifetime=600,
                                user_codes=LETTERS)
    assert storage.create_device_grant(grant)
    storage.add_refresh_token(RefreshRecord(
        token_hash=uuid.uuid4().hex, family_id="f-old", client_id="demo", subject="alice",
        scope=("openid",), created_at=old, expires_at=old + 600))
    storage.revoke_jti("jti-old", old + 600)
    storage.hit("old-counter", 60, old)


def test_expired_rows_are_purged_periodically(tmp_path: Path) -> None:
    path = tmp_path / "server.sqlite3"
    with ServerThread(make_config(purge_interval=1), storage=SQLiteStorage(path)) as running:
        live = httpx.post(f"{running.issuer}/device_authorization", data={"client_id": "demo"})
        assert live.status_code == 200
        replica = SQLiteStorage(path)
        try:
            before = _rows(path)
            _expired_rows(replica, time.time())
            added = _rows(path)
            assert all(added[table] == before[table] + 1 for table in before), (before, added)
            deadline = time.monotonic() + PURGE_DEADLINE
            while _rows(path) != before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _rows(path) == before  # the expired rows are gone, the live ones stay
        finally:
            replica.close()
        assert _rows(path)["device_grants"] == 1
        # The live grant is still served.
        assert poll(running.issuer, live.json()["device_code"]).json()["error"] == \
            "authorization_pending"


class FirstPurgeFails(SQLiteStorage):
    """The real SQLite storage whose first purge fails with an error that is no outage (fault
    injection: a damaged record)."""

    failures = 0

    def purge(self, now: float) -> None:
        if self.failures == 0:
            self.failures += 1
            raise StoreError("a damaged row")
        super().purge(now)


def test_the_purge_goes_on_after_any_error_and_stops_cleanly(tmp_path: Path, caplog) -> None:
    path = tmp_path / "server.sqlite3"
    storage = FirstPurgeFails(path)
    with ServerThread(make_config(purge_interval=1), storage=storage):
        replica = SQLiteStorage(path)
        try:
            before = _rows(path)
            _expired_rows(replica, time.time())
            deadline = time.monotonic() + PURGE_DEADLINE
            while _rows(path) != before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _rows(path) == before  # a later purge ran
        finally:
            replica.close()
    assert storage.failures == 1
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("purge of")]
    assert said == ["purge of expired storage rows failed (StoreError); next try in 1 s"]
    assert "a damaged row" not in caplog.text
    # A clean shutdown: the lifespan ended without an error.
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_every_redis_key_but_the_settings_expires(redis_url: str) -> None:
    prefix = f"kt-{uuid.uuid4().hex[:8]}"
    with ServerThread(make_config(), storage=RedisStorage(redis_url, prefix=prefix)) as running:
        issuer = running.issuer
        tokens = _login(issuer)
        rotated = _refresh(issuer, tokens["refresh_token"])
        assert rotated.status_code == 200
        for token in (tokens["access_token"], rotated.json()["refresh_token"]):  # jti, family
            revoked = httpx.post(f"{issuer}/revoke", data={"token": token, "client_id": "demo"})
            assert revoked.status_code == 200
        httpx.post(f"{issuer}/token", data={"grant_type": "client_credentials"},
                   headers=basic("service", "wrong"))  # a counted wrong secret
        page_approve(issuer, "BCDF-GHJK")  # a counted wrong user code
        client = redis.Redis.from_url(redis_url)
        try:
            keys = [key.decode() for key in client.scan_iter(f"{prefix}:*")]
            kinds = {key.split(":")[1] for key in keys}
            assert {"dg", "uc", "rt", "rtu", "family", "jti", "ctr", "setting"} <= kinds, kinds
            for key in keys:
                ttl = client.ttl(key)
                if key.split(":")[1] == "setting":
                    assert ttl == -1, key  # the signing key stays
                else:
                    assert ttl > 0, key
        finally:
            client.close()


# -- new device grants limited per address and per client -----------------------------------------


def _limited_config(**limits: int):
    return make_config(rate_limits=RateLimits(window=3600, per_address=1000, overall=1000,
                                              secret_per_address=1000, secret_per_client=1000,
                                              **limits))


def _start_from(issuer: str, address: str, client_id: str = "demo") -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=10) as http:
        return http.post(f"{issuer}/device_authorization", data={"client_id": client_id})


@pytest.fixture(params=["sqlite", "redis"])
def storage_for(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: RedisStorage(url, prefix=f"kt-{uuid.uuid4().hex[:8]}")
    return lambda: SQLiteStorage(tmp_path / "server.sqlite3")


def _assert_limited(response: httpx.Response, lifetime: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert 0 < int(response.headers["retry-after"]) <= lifetime


def test_new_grants_are_limited_per_address(storage_for) -> None:
    config = _limited_config(pending_per_address=3, pending_per_client=1000)
    with ServerThread(config, storage=storage_for()) as running:
        for _ in range(3):
            assert _start_from(running.issuer, "127.0.0.1").status_code == 200
        _assert_limited(_start_from(running.issuer, "127.0.0.1"), config.lifetimes.device_code)
        assert _start_from(running.issuer, "127.0.0.2").status_code == 200


def test_new_grants_from_one_ipv6_64_share_the_per_address_limit(storage_for) -> None:
    """Behind a proxy (X-Forwarded-For believed from 127.0.0.1): one host owns its whole /64
    (RFC 8981 temporary addresses), so a new source address in it is no new budget."""
    config = _limited_config(pending_per_address=2, pending_per_client=1000)
    with ServerThread(config, storage=storage_for(), forwarded_allow_ips="127.0.0.1") as running:
        def start_as(address: str) -> httpx.Response:
            return httpx.post(f"{running.issuer}/device_authorization", data={"client_id": "demo"},
                              headers={"X-Forwarded-For": address}, timeout=10)

        for host in ("::1", "::2"):
            assert start_as(f"2001:db8:1:2{host}").status_code == 200
        _assert_limited(start_as("2001:db8:1:2:ffff:ffff:ffff:ffff"), config.lifetimes.device_code)
        assert start_as("2001:db8:1:3::1").status_code == 200


def test_new_grants_are_limited_per_client(storage_for) -> None:
    config = _limited_config(pending_per_address=1000, pending_per_client=3)
    with ServerThread(config, storage=storage_for()) as running:
        for number in range(3):
            assert _start_from(running.issuer, f"127.0.0.{number + 1}").status_code == 200
        _assert_limited(_start_from(running.issuer, "127.0.0.9"), config.lifetimes.device_code)
        # Another client is not limited by this one's grants.
        other = httpx.post(f"{running.issuer}/device_authorization", data={"scope": "openid"},
                           headers=basic("cli", CLI_SECRET))
        assert other.status_code == 200, other.text
