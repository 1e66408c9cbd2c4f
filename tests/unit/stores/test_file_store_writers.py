"""FileStore's sweeps and live writers: a temporary file that a live writer may still rename (a
save of this process in flight, or a live process of this node within the grace) is neither
adopted nor removed, so that a ``Store.save`` without the lock never fails because another
thread's first-use sweep, lock or logout renamed its file away. And ``grace``/``reserve`` set
after construction take effect.

A writer is stopped between its fsync and its rename by holding its ``os.replace`` (in its thread
only) until the test lets it go."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keyturn import FileStore, Token
from keyturn.cachekey import file_name
from keyturn.errors import ConfigError
from keyturn.stores import _owner
from keyturn.stores import _tokenfile as tokenfile

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files and processes")

KEY = "keyturn:v1:writers"
MAIN = f"{file_name(KEY)}.json"


def token(name: str) -> Token:
    return Token(access_token=f"AT-{name}", expires_at=2_000_000_000.0, issued_at=1_700_000_000.0,
                 refresh_token=f"RT-{name}")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@dataclass
class Paused:
    """A save without the lock, in a thread of its own, stopped before its rename."""

    thread: threading.Thread
    go: threading.Event
    failures: list[BaseException] = field(default_factory=list)

    def finish(self) -> None:
        self.go.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


#: Starts a save of the token in the store, and returns once it is stopped before its rename.
StartPaused = Callable[[FileStore, Token], Paused]


@pytest.fixture
def paused(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartPaused]:
    real_replace = os.replace
    at_rename, go = threading.Event(), threading.Event()
    holder: list[Paused] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if holder and threading.current_thread() is holder[0].thread:
            at_rename.set()
            assert go.wait(10)
        real_replace(src, dst)

    def start(store: FileStore, saved: Token) -> Paused:
        def run() -> None:
            try:
                store.save(KEY, saved)
            except BaseException as exc:  # collected: the test fails on any
                pause.failures.append(exc)

        pause = Paused(threading.Thread(target=run), go)
        holder.append(pause)
        pause.thread.start()
        assert at_rename.wait(10), "the save never reached its rename"
        return pause

    monkeypatch.setattr(os, "replace", replace)
    yield start
    go.set()


def _opened(directory: Path) -> FileStore:
    store = FileStore(directory)
    store.save(KEY, token("old"))  # its first-use sweep done
    return store


def test_a_first_use_sweep_leaves_another_threads_save_in_flight_alone(
    tmp_path: Path, paused: StartPaused, caplog: pytest.LogCaptureFixture
) -> None:
    store = _opened(tmp_path)
    save = paused(store, token("new"))
    assert len(_leftovers(tmp_path)) == 1  # a whole, newer record, fsynced: it looks adoptable
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.file"):
        assert FileStore(tmp_path).load(KEY) == token("old")  # a second store's first use
    assert len(_leftovers(tmp_path)) == 1
    save.finish()
    assert save.failures == []
    assert FileStore(tmp_path).load(KEY) == token("new")
    assert _leftovers(tmp_path) == []
    assert "recovered the token file" not in caplog.text


def test_taking_the_lock_leaves_a_save_without_it_in_flight_alone(
    tmp_path: Path, paused: StartPaused
) -> None:
    store = _opened(tmp_path)
    save = paused(store, token("new"))
    with store.lock(KEY):  # the lock settles the key's leftovers
        assert store.load(KEY) == token("old")
    save.finish()
    assert save.failures == []
    assert store.load(KEY) == token("new")


def test_a_save_in_flight_at_a_logout_finishes_after_it(tmp_path: Path, paused: StartPaused) -> None:
    store = _opened(tmp_path)
    save = paused(store, token("new"))
    store.delete(KEY)
    assert store.load(KEY) is None
    save.finish()
    assert save.failures == []  # as if it had started after the logout
    assert store.load(KEY) == token("new")


def test_sweeps_among_saves_without_the_lock_never_fail_them(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    done = threading.Event()
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(30):
                store.save(KEY, Token(access_token=f"W{n}-{i}" + "x" * 4096))
        except BaseException as exc:
            failures.append(exc)

    def sweeper() -> None:
        try:
            while not done.is_set():
                FileStore(tmp_path).load(KEY)  # a first use: a sweep of every key
                with store.lock(KEY):  # and the key's settling
                    pass
        except BaseException as exc:
            failures.append(exc)

    sweeping = threading.Thread(target=sweeper)
    sweeping.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    sweeping.join()
    assert failures == []
    loaded = store.load(KEY)
    assert loaded is not None and loaded.access_token.endswith("x" * 4096)
    assert _leftovers(tmp_path) == []


# -- other writers of this node -----------------------------------------------------------------


def _plant_record(directory: Path, pid: int, age: float) -> Path:
    """A whole record newer than the token file's, as a writer ``pid`` of this node leaves it."""
    path = directory / f".{MAIN}.{_owner.node()}-{pid}-0000abcd.tmp"
    path.write_bytes(tokenfile.encode(KEY, token("left"), generation=99, written_at=time.time()))
    os.chmod(path, 0o600)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_live_process_here_keeps_its_file_for_the_grace_then_it_is_adopted(
    tmp_path: Path,
) -> None:
    _opened(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        left = _plant_record(tmp_path, live.pid, age=5)
        assert FileStore(tmp_path, grace=60.0).load(KEY) == token("old")  # it may still rename it
        assert left.exists()
        os.utime(left, (time.time() - 120, time.time() - 120))  # stuck past the grace
        assert FileStore(tmp_path, grace=60.0).load(KEY) == token("left")
        assert not left.exists()
    finally:
        live.kill()
        live.wait()


def test_a_file_of_this_pid_that_no_save_here_has_in_flight_is_adopted(tmp_path: Path) -> None:
    # A process before this one with the same pid, killed before its rename: this one knows its
    # own saves exactly, so the file is a dead writer's, at any age.
    _opened(tmp_path)
    left = _plant_record(tmp_path, os.getpid(), age=0)
    assert FileStore(tmp_path).load(KEY) == token("left")
    assert not left.exists()


# -- grace and reserve, set after construction -------------------------------------------------


def test_grace_set_later_takes_effect(tmp_path: Path) -> None:
    store = _opened(tmp_path)
    other_host = tmp_path / f".{MAIN}.{'0' * 12}-4242-0000eeee.tmp"
    other_host.write_bytes(b'{"format": 1, "ke')  # half-written, 5 s ago
    os.utime(other_host, (time.time() - 5, time.time() - 5))
    with store.lock(KEY):
        pass
    assert other_host.exists()  # within the default grace of 60 s
    store.grace = 1.0
    assert store.grace == 1.0
    with store.lock(KEY):
        pass
    assert not other_host.exists()


def test_reserve_set_later_takes_effect(tmp_path: Path) -> None:
    store = _opened(tmp_path)
    store.reserve = 100_000
    assert store.reserve == 100_000
    with store.lock(KEY):
        store.prepare_save(KEY)
        (reserved,) = _leftovers(tmp_path)
        assert os.stat(tmp_path / reserved).st_size == 100_000


def test_grace_and_reserve_refuse_negative_values_and_path_is_fixed(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(ConfigError, match="grace must be zero or more"):
        store.grace = -1.0
    with pytest.raises(ConfigError, match="reserve must be zero or more"):
        store.reserve = -1
    assert (store.grace, store.reserve) == (60.0, 256 * 1024)
    with pytest.raises(AttributeError):
        store.path = tmp_path / "elsewhere"  # type: ignore[misc]
