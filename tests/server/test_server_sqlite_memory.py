"""SQLite's page caches stay bounded: there is one connection per thread that touches the
storage (the event loop's and anyio's threadpool, 40 threads by default), each with its own
cache, which fills lazily up to the database's size (review R19 of 12.3: 64 MiB each could
reach 2.6 GB per worker)."""

from __future__ import annotations

import threading
import time

from keyturn.server.storage.sqlite import SQLiteStorage

THREADS = 41  # the loop and anyio's default threadpool
BUDGET_KIB = 512 * 1024  # what every connection's cache may hold together, per process


def test_the_page_caches_of_every_threads_connection_stay_within_budget(tmp_path):
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    try:
        ready = threading.Barrier(THREADS)

        def use() -> None:
            ready.wait(10)  # all alive at once: each its own thread, its own connection
            storage.hit("key", 300, time.time())

        threads = [threading.Thread(target=use) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        connections = list(storage._connections)
        assert len(connections) >= THREADS
        # A negative cache_size is in KiB (SQLite's PRAGMA cache_size).
        total = sum(-int(db.execute("PRAGMA cache_size").fetchone()[0]) for db in connections)
        assert total <= BUDGET_KIB
    finally:
        storage.close()
