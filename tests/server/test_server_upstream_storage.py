"""The storage's take-once values (put_once / take_once / peek_once), on which an upstream
sign-in's login waits for its callback: the same promises from memory, a real SQLite file (two
connections, as two server processes) and a real redis-server (several replicas' clients)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyturn.server.storage.base import ServerStorage
from keyturn.server.storage.memory import MemoryStorage
from keyturn.server.storage.redis import RedisStorage
from keyturn.server.storage.sqlite import SQLiteStorage
from tests.support.redisfixture import RedisServer

NOW = 1_900_000_000.0


@pytest.fixture(params=["memory", "sqlite", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[ServerStorage]]:
    """Several handles on one storage (one for memory, which no other process can share)."""
    if request.param == "memory":
        made: list[ServerStorage] = [MemoryStorage()]
    elif request.param == "sqlite":
        made = [SQLiteStorage(tmp_path / "server.db") for _ in range(4)]
    else:
        redis: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"kt-{uuid.uuid4().hex[:8]}"
        # Real time for Redis: its TTLs run on the server's clock.
        import time

        made = [RedisStorage(redis.url, prefix=prefix, clock=time.time) for _ in range(4)]
    yield made
    for store in made:
        store.close()


def test_a_value_is_put_once_and_taken_once(stores: list[ServerStorage]) -> None:
    import time

    now = time.time()
    first, last = stores[0], stores[-1]
    assert first.put_once("k", "one", now, now + 60)
    assert not last.put_once("k", "two", now, now + 60)  # taken key: nothing overwritten
    assert last.peek_once("k", now) == "one" and first.peek_once("k", now) == "one"
    assert last.take_once("k", now) == "one"
    assert first.take_once("k", now) is None and first.peek_once("k", now) is None
    assert first.put_once("k", "again", now, now + 60)  # free once taken
    assert first.take_once("other", now) is None


# Redis expires a key by its own clock (its TTL): the other backends compare the `now` given.
@pytest.mark.parametrize("stores", ["memory", "sqlite"], indirect=True)
def test_an_expired_value_is_gone(stores: list[ServerStorage]) -> None:
    store = stores[0]
    assert store.put_once("k", "v", NOW, NOW + 10)
    assert store.peek_once("k", NOW + 10) is None
    assert store.take_once("k", NOW + 10) is None
    assert store.put_once("k", "v", NOW, NOW + 10)
    assert store.put_once("k", "new", NOW + 11, NOW + 20)  # an expired value may be replaced
    assert store.take_once("k", NOW + 12) == "new"
    store.put_once("gone", "v", NOW, NOW + 10)
    store.purge(NOW + 11)
    assert store.peek_once("gone", NOW) is None


def test_of_many_takers_at_once_exactly_one_gets_the_value(stores: list[ServerStorage]) -> None:
    """Two replicas (here threads with their own connections) taking one login's key."""
    import time

    now = time.time()
    for round_ in range(20):
        key = f"race-{round_}"
        assert stores[0].put_once(key, "login", now, now + 60)
        start = threading.Barrier(8)
        got: list[str | None] = []
        lock = threading.Lock()

        def take(store: ServerStorage, key: str = key, start: threading.Barrier = start) -> None:
            start.wait(timeout=10)
            value = store.take_once(key, now)
            with lock:
                got.append(value)

        threads = [threading.Thread(target=take, args=(stores[i % len(stores)],))
                   for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert got.count("login") == 1 and got.count(None) == 7, got
