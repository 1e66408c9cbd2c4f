"""A process killed with SIGKILL at any moment of a FileStore write leaves the previous token file
intact, and the lock of a dead process is taken over."""

from __future__ import annotations

import os
import random
import signal
import time

from keyturn import FileStore, Token

KILLS = 200


def token(n: int) -> Token:
    return Token(access_token=f"access-{n}-" + "x" * 2000, expires_at=time.time() + 3600,
                 issued_at=time.time(), refresh_token=f"refresh-{n}")


def test_sigkill_during_writes_never_damages_the_token_file(tmp_path):
    store = FileStore(tmp_path)
    key = "crash-test"
    store.save(key, token(0))
    rng = random.Random(1234)
    outcomes = {"old": 0, "new": 0}
    for round_ in range(KILLS):
        before = store.load(key)
        assert before is not None
        ready_read, ready_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: write new tokens as fast as it can until it is killed
            os.close(ready_read)
            os.write(ready_write, b"x")
            n = 0
            while True:
                n += 1
                store.save(key, token(1_000_000 * (round_ + 1) + n))
        os.close(ready_write)
        os.read(ready_read, 1)  # the child is running
        os.close(ready_read)
        time.sleep(rng.uniform(0, 0.004))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        after = store.load(key)
        assert after is not None, f"round {round_}: the token file was lost"
        # One whole record, never a mix of two writes or a truncated one.
        number = after.access_token.split("-")[1]
        assert after.access_token == token(int(number)).access_token
        assert after.refresh_token == f"refresh-{number}"
        outcomes["old" if after.access_token == before.access_token else "new"] += 1
    # Nothing was quarantined as damaged, and the kills landed both before and after renames.
    assert list(tmp_path.glob("*.corrupt-*")) == []
    assert outcomes["new"] > 0
    # Only private files: the token file and perhaps temp files of killed writers.
    for path in tmp_path.iterdir():
        assert (path.stat().st_mode & 0o077) == 0, path


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    store = FileStore(tmp_path)
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_read)
        lock = FileStore(tmp_path).lock("k")
        lock.acquire()
        os.write(ready_write, b"x")
        time.sleep(60)
        os._exit(0)
    os.close(ready_write)
    os.read(ready_read, 1)
    other = store.lock("k")
    assert not other.try_acquire()  # held by the child
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert other.try_acquire()
    other.release()
