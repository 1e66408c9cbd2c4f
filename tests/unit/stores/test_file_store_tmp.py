"""FileStore's temporary files: a writer killed before its rename leaves a token that is adopted,
not lost; stale leftovers go on the next open and on logout; and a save prepared before a token
request is sent cannot fail for want of space (a real, small tmpfs filled to the last byte).

Writers are killed for real: a forked child whose ``os.replace`` (after its fsync) or ``os.write``
(halfway through the record) is replaced by a SIGKILL of itself."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyturn import FileStore, Token
from keyturn.errors import StoreError
from keyturn.stores import _owner
from keyturn.stores.file import file_name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files and signals")

KEY = "keyturn:v1:tmp"
MAIN = f"{file_name(KEY)}.json"


def token(name: str) -> Token:
    return Token(access_token=f"AT-{name}", expires_at=2_000_000_000.0, issued_at=1_700_000_000.0,
                 refresh_token=f"RT-{name}")


def _killed_writer(directory: Path, saved: Token, at: str, key: str = KEY) -> None:
    """A process that saves ``saved`` and is killed ``at`` "rename" (after its fsync) or "write"
    (with half of the record written)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            def die(*args: object, **kwargs: object) -> None:
                os.kill(os.getpid(), signal.SIGKILL)

            real_write = os.write
            store = FileStore(directory)
            store.load(key)  # opened (its first-use sweep done) before the fault is injected
            if at == "rename":
                os.replace = die  # type: ignore[assignment]
            else:
                def half(fd: int, data: bytes) -> int:
                    real_write(fd, bytes(data[: len(data) // 2]))
                    die()
                    return 0

                os.write = half
            store.save(key, saved)
        finally:
            os._exit(3)  # not reached: the fault kills the process
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _stored_refresh_token(directory: Path) -> str:
    """The refresh token in the token file, read without FileStore (so without its sweep)."""
    record = json.loads((directory / MAIN).read_bytes())
    return str(record["token"]["refresh_token"])


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# -- adoption --------------------------------------------------------------------------------------


def test_a_whole_token_left_before_its_rename_is_adopted_on_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    FileStore(tmp_path).save(KEY, token("old"))
    _killed_writer(tmp_path, token("new"), at="rename")
    assert len(_leftovers(tmp_path)) == 1
    assert _stored_refresh_token(tmp_path) == "RT-old"  # the server's answer is only in the leftover
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.file"):
        loaded = FileStore(tmp_path).load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-new"
    assert _leftovers(tmp_path) == []
    assert [r for r in caplog.records if "recovered the token file" in r.getMessage()]
    assert "RT-new" not in caplog.text and "AT-new" not in caplog.text
    assert os.stat(tmp_path / MAIN).st_mode & 0o777 == 0o600


def test_a_store_already_open_adopts_when_it_takes_the_lock(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, token("old"))
    _killed_writer(tmp_path, token("new"), at="rename")
    with store.lock(KEY):  # what the cache does before it re-reads and refreshes
        loaded = store.load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-new"
    assert _leftovers(tmp_path) == []


def test_a_first_login_killed_before_its_rename_is_adopted(tmp_path: Path) -> None:
    _killed_writer(tmp_path, token("first"), at="rename")
    assert not (tmp_path / MAIN).exists()
    loaded = FileStore(tmp_path).load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-first"


def test_a_leftover_older_than_the_token_file_is_removed_not_adopted(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, token("old"))
    _killed_writer(tmp_path, token("middle"), at="rename")
    store.save(KEY, token("newest"))  # written after the killed writer's record
    loaded = FileStore(tmp_path).load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-newest"
    assert _leftovers(tmp_path) == []  # its writer's pid is dead here: stale, and superseded


def test_a_half_written_leftover_is_removed_and_never_adopted(tmp_path: Path) -> None:
    FileStore(tmp_path).save(KEY, token("old"))
    _killed_writer(tmp_path, token("new"), at="write")
    (left,) = _leftovers(tmp_path)
    assert b"RT-new" not in (tmp_path / left).read_bytes()[-10:]  # really cut short
    loaded = FileStore(tmp_path).load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-old"
    assert _leftovers(tmp_path) == []
    assert not list(tmp_path.glob("*.corrupt-*"))


# -- removal ----------------------------------------------------------------------------------------


def _plant(directory: Path, name: str, age: float, content: bytes = b'{"format": 1, "ke') -> Path:
    path = directory / name
    path.write_bytes(content)
    os.chmod(path, 0o600)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_stale_leftovers_go_on_first_use_and_live_writers_keep_theirs(tmp_path: Path) -> None:
    FileStore(tmp_path).save(KEY, token("old"))
    here, dead, me = _owner.node(), _dead_pid(), os.getpid()
    elsewhere = "0" * 12
    gone = [
        _plant(tmp_path, f".{MAIN}.{here}-{dead}-0000aaaa.tmp", age=1),  # its process is dead
        _plant(tmp_path, f".{MAIN}.{elsewhere}-{me}-0000bbbb.tmp", age=120),  # past the grace
        _plant(tmp_path, f".{MAIN}.4242.139871.tmp", age=120),  # an older keyturn's name
    ]
    kept = [
        _plant(tmp_path, f".{MAIN}.{elsewhere}-{dead}-0000cccc.tmp", age=5),  # another host, young
        _plant(tmp_path, f".{MAIN}.{here}-{me}-0000dddd.tmp", age=120),  # a live process here
        _plant(tmp_path, f".{MAIN}.4242.139871.tmp".replace("4242", "4243"), age=5),
        _plant(tmp_path, ".not-ours.tmp", age=10_000),
        _plant(tmp_path, "fastpath.json.123.tmp", age=10_000),
    ]
    loaded = FileStore(tmp_path, grace=60.0).load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-old"
    assert [p.name for p in gone if p.exists()] == []
    assert [p.name for p in kept if not p.exists()] == []


def test_logout_removes_its_leftovers_even_whole_tokens(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, token("old"))
    store.save("another key", token("other"))
    _killed_writer(tmp_path, token("new"), at="rename")
    other_main = f"{file_name('another key')}.json"
    junk = _plant(tmp_path, f".{other_main}.{_owner.node()}-{_dead_pid()}-0000eeee.tmp", age=1)
    store.delete(KEY)
    assert store.load(KEY) is None
    assert not junk.exists()  # a stale leftover of another key goes too
    for path in tmp_path.iterdir():
        assert b"RT-new" not in path.read_bytes() and b"RT-old" not in path.read_bytes(), path.name
    assert store.load("another key") == token("other")


def test_logout_removes_a_whole_token_another_host_left_moments_ago(tmp_path: Path) -> None:
    # A writer on another host of the mount, killed between its fsync and its rename 5 s ago: not
    # stale yet (its host is judged by age), but a logout forgets it; else the next lock, finding
    # no token file, would adopt it and bring the logged-out login back.
    store = FileStore(tmp_path)
    store.save(KEY, token("old"))
    record = {"format": 1, "key": KEY, "written_at": time.time() - 5,
              "token": token("elsewhere").to_record()}
    left = _plant(tmp_path, f".{MAIN}.{'a' * 12}-4242-0123abcd.tmp", age=5,
                  content=json.dumps(record).encode())
    other = _plant(tmp_path, f".{MAIN}.{'a' * 12}-4243-0123abcd.tmp", age=5)  # half-written, young
    with store.lock(KEY):  # as TokenCache.forget() does it
        store.delete(KEY)
    assert not left.exists()
    assert other.exists()  # not a token: its writer may still be at work, the grace decides
    following = FileStore(tmp_path)
    with following.lock(KEY):
        assert following.load(KEY) is None
    assert not (tmp_path / MAIN).exists()


# -- generations: which record is newer, without comparing two hosts' clocks ------------------------------


def _ahead_writer(directory: Path, saved: Token, seconds: float) -> None:
    """Save ``saved`` from a process whose clock runs ``seconds`` ahead (another host's)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            real_time = time.time
            time.time = lambda: real_time() + seconds
            FileStore(directory).save(KEY, saved)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_a_leftover_newer_than_a_token_file_from_a_clock_ahead_is_adopted(tmp_path: Path) -> None:
    _ahead_writer(tmp_path, token("old"), seconds=3600)  # written_at an hour in the future
    _killed_writer(tmp_path, token("new"), at="rename")  # later, by a clock an hour behind it
    loaded = FileStore(tmp_path).load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-new"
    assert _leftovers(tmp_path) == []


def test_records_without_a_generation_still_load_and_are_ordered_by_time(tmp_path: Path) -> None:
    # As an older keyturn wrote them.
    older = {"format": 1, "key": KEY, "written_at": time.time() - 60,
             "token": token("older").to_record()}
    (tmp_path / MAIN).write_text(json.dumps(older))
    os.chmod(tmp_path / MAIN, 0o600)
    assert FileStore(tmp_path).load(KEY) == token("older")
    _killed_writer(tmp_path, token("new"), at="rename")  # generation 1, written after it
    loaded = FileStore(tmp_path).load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-new"
    assert json.loads((tmp_path / MAIN).read_bytes())["generation"] == 1
    FileStore(tmp_path).save(KEY, token("next"))
    assert json.loads((tmp_path / MAIN).read_bytes())["generation"] == 2


# -- prepared saves -----------------------------------------------------------------------------------


def test_a_prepared_save_writes_the_reserved_file_atomically_and_privately(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, token("old"))
    with store.lock(KEY):
        store.prepare_save(KEY)
        (reserved,) = _leftovers(tmp_path)
        info = os.stat(tmp_path / reserved)
        assert info.st_size == 256 * 1024 and info.st_mode & 0o777 == 0o600
        assert info.st_blocks * 512 >= 256 * 1024  # allocated, not a sparse promise
        assert store.load(KEY) == token("old")  # readers see the old token until the save
        assert _stored_refresh_token(tmp_path) == "RT-old"
        store.save(KEY, token("provisional"))
        assert os.stat(tmp_path / MAIN).st_ino == info.st_ino  # the reserved file became the token file
        assert os.stat(tmp_path / MAIN).st_size < 4096
        assert store.load(KEY) == token("provisional")
        assert len(_leftovers(tmp_path)) == 1  # a new reservation, for the save that follows
        store.save(KEY, token("final"))
        # The cache's second save: nothing is reserved for a third (an fsync and an allocation
        # that the release would only throw away).
        assert _leftovers(tmp_path) == []
        store.save(KEY, token("unprepared"))
        assert _leftovers(tmp_path) == []
    assert store.load(KEY) == token("unprepared")
    assert os.stat(tmp_path / MAIN).st_mode & 0o777 == 0o600
    with store.lock(KEY):  # the next holding reserves anew
        store.prepare_save(KEY)
        assert len(_leftovers(tmp_path)) == 1
    assert _leftovers(tmp_path) == []  # the release dropped what was left


def test_a_prepared_save_not_followed_by_another_leaves_one_reservation_for_release(
    tmp_path: Path,
) -> None:
    # A token endpoint that gave no refresh token: the cache keeps nothing, and saves once.
    store = FileStore(tmp_path)
    with store.lock(KEY):
        store.prepare_save(KEY)
        store.save(KEY, token("final"))
        assert len(_leftovers(tmp_path)) == 1
    assert _leftovers(tmp_path) == []
    assert store.load(KEY) == token("final")


def test_without_fallocate_the_reservation_is_written_with_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    store = FileStore(tmp_path, reserve=100_000)
    with store.lock(KEY):
        store.prepare_save(KEY)
        (reserved,) = _leftovers(tmp_path)
        info = os.stat(tmp_path / reserved)
        assert info.st_size == 100_000 and info.st_blocks * 512 >= 100_000
        store.save(KEY, token("new"))
    assert store.load(KEY) == token("new")


def test_a_reservation_removed_meanwhile_gives_way_to_an_ordinary_save(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with store.lock(KEY):
        store.prepare_save(KEY)
        for name in _leftovers(tmp_path):
            (tmp_path / name).unlink()  # as a sweep on another host would, past its grace
        store.save(KEY, token("new"))
    assert store.load(KEY) == token("new")
    assert _leftovers(tmp_path) == []


# -- a full disk: a real 2 MiB tmpfs ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a 2 MiB tmpfs, the real full disk these tests fill")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _fill(disk: Path) -> None:
    """Write a file until the disk has no byte left."""
    fd = os.open(disk / f"filler-{len(list(disk.glob('filler-*')))}", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            chunk = b"\xff" * size
            for _ in range(1 << 16):
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0


def test_a_disk_that_filled_up_after_prepare_save_does_not_lose_the_answer(small_disk: Path) -> None:
    store = FileStore(small_disk / "keyturn")
    store.save(KEY, token("old"))
    with store.lock(KEY):
        store.prepare_save(KEY)  # before the request is sent
        _fill(small_disk)  # while the server answers, something fills the disk
        store.save(KEY, token("provisional"))  # the rotated refresh token: kept
        assert store.load(KEY) == token("provisional")
        _fill(small_disk)  # and again
        store.save(KEY, token("final"))  # the reservation the first save left
        assert store.load(KEY) == token("final")
    _fill(small_disk)  # the release freed the last reservation
    # The disk really is full: an ordinary save fails, and leaves the token as it was.
    with pytest.raises(StoreError, match="No space left"):
        store.save(KEY, token("unprepared"))
    assert store.load(KEY) == token("final")
    assert _leftovers(store.path) == []


def test_prepare_save_on_a_full_disk_says_so_before_anything_is_sent(small_disk: Path) -> None:
    store = FileStore(small_disk / "keyturn")
    store.save(KEY, token("old"))
    _fill(small_disk)
    with store.lock(KEY), pytest.raises(StoreError) as info:
        store.prepare_save(KEY)
    assert f"no space left on {small_disk}" in str(info.value)
    assert "free some space" in str(info.value)
    assert _leftovers(store.path) == []
    assert store.load(KEY) == token("old")
