"""A storage that waits holds only the requests that need it, never the event loop (review R19
of issue 12.3, H1/H2): with a SQLite write lock held by another process, or a Redis server that
stops answering, discovery, the JWKS and /health still answer while a device authorization waits;
a Redis that does not answer within the storage's timeout is an outage (503
temporarily_unavailable with Retry-After), not a request held open for ever."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from pathlib import Path

import httpx

from keyturn.server.runner import DATABASE_NAME, ServerThread
from keyturn.server.storage.redis import RedisStorage
from keyturn.server.storage.sqlite import SQLiteStorage
from tests.support.redisfixture import start_redis
from tests.support.serverkit import make_config

DEVICE_FORM = {"client_id": "demo", "scope": "openid"}


class SignalledSQLite(SQLiteStorage):
    """The real SQLite storage, telling the test when a device authorization's first write (its
    pending-grant count) has begun."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = threading.Event()

    def hit(self, key: str, window: int, now: float, amount: int = 1) -> int:
        self.writing.set()
        return super().hit(key, window, now, amount)


def test_a_locked_sqlite_file_holds_only_the_writes_waiting_on_it(tmp_path: Path) -> None:
    storage = SignalledSQLite(tmp_path / DATABASE_NAME)
    with ServerThread(make_config(), storage=storage) as running:
        assert httpx.get(f"{running.issuer}/jwks").status_code == 200
        holder = sqlite3.connect(tmp_path / DATABASE_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # what another process's long write holds
        answers: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{running.issuer}/device_authorization", data=DEVICE_FORM, timeout=60)))
        try:
            waiting.start()
            assert storage.writing.wait(20), "the device authorization never reached its write"
            for path in ("/.well-known/openid-configuration", "/jwks"):
                assert httpx.get(running.issuer + path, timeout=10).status_code == 200
            assert not answers  # still waiting on the lock
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            waiting.join(60)
        assert answers[0].status_code == 200 and "device_code" in answers[0].json()


def test_a_redis_that_stops_answering_is_an_outage_and_holds_nothing_else(tmp_path: Path) -> None:
    redis = start_redis(tmp_path)
    try:
        storage = RedisStorage(redis.url, timeout=1.0)
        with ServerThread(make_config(), storage=storage) as running:
            assert httpx.post(f"{running.issuer}/device_authorization",
                              data=DEVICE_FORM).status_code == 200
            assert redis.process is not None
            os.kill(redis.process.pid, signal.SIGSTOP)  # answers nothing, closes nothing
            try:
                answers: list[httpx.Response] = []
                waiting = threading.Thread(target=lambda: answers.append(httpx.post(
                    f"{running.issuer}/device_authorization", data=DEVICE_FORM, timeout=30)))
                waiting.start()
                # Meanwhile the endpoints that need no storage answer, and /health says why.
                for path in ("/.well-known/openid-configuration", "/jwks"):
                    assert httpx.get(running.issuer + path, timeout=10).status_code == 200
                assert httpx.get(f"{running.issuer}/health", timeout=30).status_code == 503
                waiting.join(30)
                assert answers, "the device authorization was held past the storage's timeout"
                refused = answers[0]
                assert refused.status_code == 503
                assert refused.json()["error"] == "temporarily_unavailable"
                assert int(refused.headers["retry-after"]) > 0
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
            assert httpx.post(f"{running.issuer}/device_authorization",
                              data=DEVICE_FORM).status_code == 200
    finally:
        redis.stop()
