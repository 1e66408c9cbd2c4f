"""SQLite's WAL is copied back into the database by the storage's own thread, not by the commit
that crosses the WAL's size mark; the thread ends with the storage (closed, or dropped)."""

from __future__ import annotations

import gc
import time

import pytest

from keyturn.server.storage import sqlite as sqlite_module
from keyturn.server.storage.sqlite import SQLiteStorage


@pytest.fixture
def fast_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_SECONDS", 0.05)


def test_the_wal_is_checkpointed_in_the_background(tmp_path, fast_rounds):
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    try:
        database = tmp_path / "db.sqlite3"
        storage._closing.set()  # no checkpoint while the WAL fills
        storage._checkpointer.join(5)
        before = database.stat().st_size
        for i in range(3000):  # far below the WAL_PAGES mark: no commit checkpoints
            storage.hit(f"key-{i}", 300, time.time())
        assert database.stat().st_size == before  # all of it still in the WAL only
        restarted = SQLiteStorage(database)  # a storage with its thread running
        try:
            deadline = time.monotonic() + 10
            while database.stat().st_size == before and time.monotonic() < deadline:
                time.sleep(0.02)
            assert database.stat().st_size > before  # copied back by the thread
            assert restarted.hit("key-1", 300, time.time()) == 2  # nothing lost
        finally:
            restarted.close()
    finally:
        storage.close()


def test_the_thread_ends_with_the_storage(tmp_path, fast_rounds):
    closed = SQLiteStorage(tmp_path / "a.sqlite3")
    closed.close()
    assert not closed._checkpointer.is_alive()
    dropped = SQLiteStorage(tmp_path / "b.sqlite3")
    thread = dropped._checkpointer
    del dropped
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_the_thread_never_creates_a_deleted_database(tmp_path, fast_rounds):
    # An operator removes the database (to reset it) while the server runs: the thread must not
    # make an empty one with the umask's mode, which the restarted server would keep and write
    # the signing key into (review R19 of 12.3, M2).
    database = tmp_path / "db.sqlite3"
    storage = SQLiteStorage(database)
    try:
        for path in tmp_path.iterdir():
            path.unlink()
        for _ in range(100):  # far more than two rounds of the thread (0.05 s each)
            time.sleep(0.02)
            if list(tmp_path.iterdir()):
                break
        assert storage._checkpointer.is_alive()  # it did run its rounds meanwhile
        assert list(tmp_path.iterdir()) == []
    finally:
        storage.close()
