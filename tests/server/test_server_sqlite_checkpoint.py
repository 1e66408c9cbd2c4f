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
