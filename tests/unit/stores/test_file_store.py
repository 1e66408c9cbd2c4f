"""keyturn.stores.file.FileStore: private, atomic, locked across processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import keyturn.stores.file as file_module
from keyturn.errors import StoreError
from keyturn.stores.file import FileStore, default_cache_dir, file_name
from keyturn.token import Token

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and flock")

KEY = "keyturn:v1:abc"
TOKEN = Token(access_token="AT-secret", expires_at=1_700_003_600.0, issued_at=1_700_000_000.0,
              scope=("a", "b"), refresh_token="RT-secret", extra={"x": 1})


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "keyturn"


@pytest.fixture
def store(store_dir: Path) -> FileStore:
    return FileStore(store_dir)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _token_file(store_dir: Path, key: str = KEY) -> Path:
    return store_dir / f"{file_name(key)}.json"


# -- records ----------------------------------------------------------------------------------------


def test_save_load_delete(store: FileStore) -> None:
    assert store.load(KEY) is None
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    assert FileStore(store.path).load(KEY) == TOKEN  # another instance, another process alike
    store.delete(KEY)
    assert store.load(KEY) is None
    store.delete(KEY)  # deleting nothing is fine


def test_save_replaces(store: FileStore) -> None:
    store.save(KEY, TOKEN)
    newer = TOKEN.with_refresh_token("RT-2")
    store.save(KEY, newer)
    assert store.load(KEY) == newer


def test_keys_are_separate_and_not_in_file_names(store: FileStore, store_dir: Path) -> None:
    store.save("a", Token(access_token="A"))
    store.save("b", Token(access_token="B"))
    assert store.load("a") == Token(access_token="A")
    assert store.load("b") == Token(access_token="B")
    names = " ".join(os.listdir(store_dir))
    assert "keyturn:v1" not in names


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "keyturn"
    assert FileStore().path == tmp_path / "xdg" / "keyturn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "keyturn"


# -- permissions and atomicity ---------------------------------------------------------------------------


def test_directory_0700_and_files_0600(store: FileStore, store_dir: Path) -> None:
    old_umask = os.umask(0o000)  # the most permissive umask must not leak into modes
    try:
        store.save(KEY, TOKEN)
        with store.lock(KEY):
            pass
    finally:
        os.umask(old_umask)
    assert _mode(store_dir) == 0o700
    for name in os.listdir(store_dir):
        assert _mode(store_dir / name) == 0o600, name
    assert _token_file(store_dir).exists()


def test_loose_directory_permissions_are_tightened(store_dir: Path) -> None:
    store_dir.mkdir(parents=True)
    os.chmod(store_dir, 0o755)
    FileStore(store_dir).load(KEY)
    assert _mode(store_dir) == 0o700


def test_atomic_replace_leaves_no_temporary_files(store: FileStore, store_dir: Path) -> None:
    for n in range(20):
        store.save(KEY, Token(access_token=f"AT{n}"))
    assert sorted(os.listdir(store_dir)) == [f"{file_name(KEY)}.json"]
    assert store.load(KEY) == Token(access_token="AT19")


def test_failed_write_leaves_the_old_token_and_no_temporary_file(
    store: FileStore, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(KEY, TOKEN)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_module.os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left") as info:
        store.save(KEY, Token(access_token="NEW-secret"))
    monkeypatch.undo()
    assert "NEW-secret" not in str(info.value)
    assert store.load(KEY) == TOKEN
    assert sorted(os.listdir(store_dir)) == [f"{file_name(KEY)}.json"]


def test_concurrent_writers_never_tear_a_record(store: FileStore) -> None:
    # Saves without the lock (a tool's Store.save), from eight threads at once: the first one's
    # first-use sweep runs among the others' saves, and must leave their temporary files alone.
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        barrier.wait()
        try:
            for i in range(10):
                store.save(KEY, Token(access_token=f"W{n}-{i}" + "x" * 4096))
        except BaseException as exc:  # a thread's exception would only be a warning
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    loaded = store.load(KEY)
    assert loaded is not None and loaded.access_token.endswith("x" * 4096)
    assert not [name for name in os.listdir(store.path) if "corrupt" in name or name.endswith(".tmp")]


# -- damaged files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"",
    b'{"format": 1, "key": "keyturn:v1:abc", "token": {"access_token": "AT", "exp',
    b"\x00\x00\x00\x00",
    b"[1, 2, 3]",
    b'{"format": 1, "key": "keyturn:v1:abc"}',
    b'{"format": 1, "key": "keyturn:v1:abc", "token": {"expires_at": 1}}',
    b'{"format": 99, "key": "keyturn:v1:abc", "token": {"access_token": "AT"}}',
    b'{"format": 1, "key": "keyturn:v1:abc", "token": {"access_token": "AT", "expires_at": "x"}}',
], ids=["empty", "truncated", "binary", "array", "no-token", "no-access-token", "future-format",
        "bad-expiry"])
def test_corrupt_file_is_moved_aside_with_one_warning(
    store: FileStore, store_dir: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    store.save(KEY, TOKEN)
    path = _token_file(store_dir)
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.file"):
        assert store.load(KEY) is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "AT-secret" not in caplog.text and "RT-secret" not in caplog.text
    assert not path.exists()
    aside = [name for name in os.listdir(store_dir) if name.startswith(path.name + ".corrupt-")]
    assert len(aside) == 1
    assert (store_dir / aside[0]).read_bytes() == content
    # Gone for good: the next load is a plain miss, without another warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.file"):
        assert store.load(KEY) is None
    assert caplog.records == []
    # And a save starts afresh.
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN


def test_a_record_for_another_key_is_not_returned(store: FileStore, store_dir: Path) -> None:
    store.save("other-key", TOKEN)
    # Someone copies (or a hash collision puts) another key's record where ours belongs.
    _token_file(store_dir, "other-key").replace(_token_file(store_dir))
    assert store.load(KEY) is None
    record = json.loads(next(store_dir.glob("*.corrupt-*")).read_text())
    assert record["key"] == "other-key"


def test_a_symlinked_token_file_is_refused(store: FileStore, store_dir: Path, tmp_path: Path) -> None:
    store.save(KEY, TOKEN)
    target = tmp_path / "elsewhere.json"
    _token_file(store_dir).replace(target)
    _token_file(store_dir).symlink_to(target)
    with pytest.raises(StoreError):
        store.load(KEY)


# -- the directory ----------------------------------------------------------------------------------------


def test_directory_owned_by_someone_else(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_dir.mkdir(parents=True, mode=0o700)
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 4242)
    with pytest.raises(StoreError, match="another user"):
        FileStore(store_dir).load(KEY)
    with pytest.raises(StoreError, match="another user"):
        FileStore(store_dir).save(KEY, TOKEN)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_directory_really_owned_by_someone_else(store_dir: Path) -> None:
    store_dir.mkdir(parents=True, mode=0o700)
    os.chown(store_dir, 65534, 65534)
    with pytest.raises(StoreError, match="another user"):
        FileStore(store_dir).load(KEY)


def test_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("hello")
    with pytest.raises(StoreError):
        FileStore(path).load(KEY)
    with pytest.raises(StoreError):
        FileStore(path).save(KEY, TOKEN)
    assert path.read_text() == "hello"


def test_path_that_is_a_symlink_to_a_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(StoreError, match="not a directory"):
        FileStore(link).load(KEY)


# -- locking ---------------------------------------------------------------------------------------------


def test_lock_excludes_another_instance(store_dir: Path) -> None:
    first, second = FileStore(store_dir), FileStore(store_dir)
    held = first.lock(KEY)
    assert held.try_acquire()
    try:
        assert not second.lock(KEY).try_acquire()
        assert not first.lock(KEY).try_acquire()  # nor another lock object of the same instance
        assert second.lock("another-key").try_acquire() is True
    finally:
        held.release()
    again = second.lock(KEY)
    assert again.try_acquire()
    again.release()


def test_lock_as_context_manager_releases_on_error(store: FileStore) -> None:
    with pytest.raises(RuntimeError), store.lock(KEY):
        raise RuntimeError("boom")
    lock = FileStore(store.path).lock(KEY)
    assert lock.try_acquire()
    lock.release()


def test_blocking_acquire_waits_for_the_holder(store_dir: Path) -> None:
    first, second = FileStore(store_dir), FileStore(store_dir)
    held = first.lock(KEY)
    held.acquire()
    started, acquired = threading.Event(), threading.Event()

    def contender() -> None:
        started.set()
        with second.lock(KEY):
            acquired.set()

    thread = threading.Thread(target=contender, daemon=True)
    thread.start()
    assert started.wait(10)
    assert not acquired.is_set()
    held.release()
    assert acquired.wait(10)
    thread.join(10)


async def test_async_acquire(store_dir: Path) -> None:
    lock = FileStore(store_dir).lock(KEY)
    async with lock:
        assert not FileStore(store_dir).lock(KEY).try_acquire()
    assert FileStore(store_dir).lock(KEY).try_acquire()


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # hold the lock until killed
"""


def test_lock_of_a_killed_process_is_taken_over(store: FileStore, store_dir: Path) -> None:
    lock = store.lock(KEY)  # creates the directory
    lock_path = store_dir / f"{file_name(KEY)}.lock"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"locked\n"
        assert not lock.try_acquire()
        assert not FileStore(store_dir).lock(KEY).try_acquire()
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        assert lock.try_acquire()  # the kernel dropped the dead holder's flock
        lock.release()
        with store.lock(KEY):  # a blocking acquire does not wait either
            store.save(KEY, TOKEN)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert store.load(KEY) == TOKEN


def test_repr(store: FileStore) -> None:
    assert repr(store) == f"FileStore({str(store.path)!r})"
