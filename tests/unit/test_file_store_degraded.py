"""A file system that cannot lock (NFS without lockd answers ENOLCK): keyturn says so once and
falls back to a lock within the process, documented in stores/file.py and the README."""

from __future__ import annotations

import errno
import logging
import threading

import keyturn.stores.file as file_module
from keyturn import FileStore, Token


def test_no_lock_support_warns_once_and_falls_back(tmp_path, monkeypatch, caplog):
    def flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(file_module.fcntl, "flock", flock)
    store = FileStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.file"):
        with store.lock("a"):
            store.save("a", Token(access_token="t1"))
        with store.lock("a"):
            pass
    warnings = [r for r in caplog.records if "cannot lock" in r.getMessage()]
    assert len(warnings) == 1
    assert "RedisStore" in warnings[0].getMessage()
    assert store.degraded
    # Within the process the lock still excludes: a second holder waits.
    lock = store.lock("a")
    lock.acquire()
    acquired = threading.Event()

    def other() -> None:
        with store.lock("a"):
            acquired.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert not acquired.wait(0.2)
    lock.release()
    assert acquired.wait(5)
    thread.join()
    assert store.load("a").access_token == "t1"
