"""A file system that cannot lock (NFS without lockd: flock answers ENOLCK): FileStore says so once
and locks with lease lock files, which exclude other processes (and hosts), renew while held, are
taken over from a dead or stalled holder, and are never removed from under their next holder.

The fault is injected by replacing ``fcntl.flock`` with one that raises ENOLCK — in this process
and, for the tests with several processes, in each forked child; everything else is real. Forked
children also stop themselves (SIGSTOP) at a chosen point of a takeover, or have their fsync or
flock slowed down (a slow NFS server), for the tests of a stalled claimer and of async locking."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from keyturn import FileStore, Token
from keyturn.errors import ConfigError
from keyturn.stores import _leasefile, _leaselock, _owner
from keyturn.stores.base import LockLost
from keyturn.stores.file import file_name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and signals")

KEY = "keyturn:v1:lease"
FORK = multiprocessing.get_context("fork")


def _no_flock(fd: int, operation: int) -> None:
    raise OSError(errno.ENOLCK, "No locks available")


def _break_flock() -> None:
    """In a child process: flock fails as on an NFS mount without lockd."""
    fcntl.flock = _no_flock  # type: ignore[assignment]


@pytest.fixture
def no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcntl, "flock", _no_flock)


def _lease_file(directory: Path, key: str = KEY) -> Path:
    return directory / f"{file_name(key)}.lease"


def _record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_bytes())
    return record


def _plant(path: Path, *, node: str, pid: int, expires: float, ident: str = "a" * 32) -> None:
    """A lease file as another holder wrote it."""
    body: dict[str, object] = {"id": ident, "host": "elsewhere", "node": node, "pid": pid,
                               "expires_ms": int(expires * 1000)}
    path.write_text(json.dumps({**body, "check": _leasefile.digest(body)}))


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _spawn(target: Callable[..., None], *args: object) -> tuple[Any, Connection]:
    mine, theirs = FORK.Pipe()
    process = FORK.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    theirs.close()
    return process, mine


def _until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- in one process ---------------------------------------------------------------------------------


def test_failing_flock_switches_to_lease_files_with_one_warning(
    tmp_path: Path, no_flock: None, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.file"):
        with store.lock(KEY):
            store.save(KEY, Token(access_token="t1"))
            record = _record(_lease_file(tmp_path))
            assert os.stat(_lease_file(tmp_path)).st_mode & 0o777 == 0o600
        with store.lock(KEY):
            pass
        with store.lock("another key"):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "lease lock files" in warnings[0] and "per process" not in warnings[0]
    assert store.lease_locks
    assert record["pid"] == os.getpid() and record["host"] == _owner.hostname()
    assert record["node"] == _owner.node() and len(record["id"]) == 32
    assert record["expires_ms"] / 1000 == pytest.approx(time.time() + 30, abs=5)
    assert not _lease_file(tmp_path).exists()  # released: removed
    assert not list(tmp_path.glob("*.claim"))
    assert store.load(KEY) == Token(access_token="t1")


def test_lease_lock_excludes_other_instances_and_threads(tmp_path: Path, no_flock: None) -> None:
    first, second = FileStore(tmp_path), FileStore(tmp_path)
    held = first.lock(KEY)
    held.acquire()
    assert not second.lock(KEY).try_acquire()  # another instance: the lease file
    assert not first.lock(KEY).try_acquire()  # another thread's lock object: the thread lock
    other = second.lock("another key")
    assert other.try_acquire()
    other.release()
    started, acquired = threading.Event(), threading.Event()

    def contender() -> None:
        started.set()
        with second.lock(KEY):
            acquired.set()

    thread = threading.Thread(target=contender, daemon=True)
    thread.start()
    assert started.wait(10)
    assert not acquired.wait(0.3)  # still held: the blocking acquire waits
    held.release()
    assert acquired.wait(10)
    thread.join(10)


async def test_async_acquire_polls_the_lease_lock(tmp_path: Path, no_flock: None) -> None:
    held = FileStore(tmp_path).lock(KEY)
    held.acquire()
    waiter = asyncio.ensure_future(FileStore(tmp_path).lock(KEY).aacquire())
    await asyncio.sleep(0.2)
    assert not waiter.done()
    held.release()
    await asyncio.wait_for(waiter, 10)
    assert not FileStore(tmp_path).lock(KEY).try_acquire()


def test_confirm_renews_from_any_thread_and_flock_confirm_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = FileStore(tmp_path / "flock")
    with plain.lock(KEY) as lock:
        lock.confirm()  # flock: held until released, nothing to check
    assert not plain.lease_locks and not list((tmp_path / "flock").glob("*.lease"))

    monkeypatch.setattr(fcntl, "flock", _no_flock)
    store = FileStore(tmp_path / "lease")
    with store.lock(KEY) as lock:
        before = _record(_lease_file(store.path))["expires_ms"]
        _until(lambda: int(time.time() * 1000) + 30_000 > before, "the clock to move on")
        errors: list[BaseException] = []

        def confirm() -> None:
            try:
                lock.confirm()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=confirm)  # the cache confirms from a worker thread
        thread.start()
        thread.join(10)
        assert errors == []
        after = _record(_lease_file(store.path))
        assert after["expires_ms"] > before
        assert after["id"] == _record(_lease_file(store.path))["id"]


def test_the_holder_renews_a_short_lease_while_it_holds_it(tmp_path: Path, no_flock: None) -> None:
    # The skew leaves a slow renewal thread (a loaded machine) 2 s of slack; the lease still runs
    # out three times over without renewals.
    store = FileStore(tmp_path, lease=0.6, skew=2.0)
    other = FileStore(tmp_path, lease=0.6, skew=2.0)
    with store.lock(KEY):
        seen = {_record(_lease_file(tmp_path))["expires_ms"]}

        def renewed_thrice() -> bool:
            assert not other.lock(KEY).try_acquire()  # never stale while its holder lives
            seen.add(_record(_lease_file(tmp_path))["expires_ms"])
            return len(seen) >= 4

        _until(renewed_thrice, "three renewals")
    lock = other.lock(KEY)
    assert lock.try_acquire()
    lock.release()


def test_expired_lease_of_another_host_is_taken_over_after_the_skew(
    tmp_path: Path, no_flock: None
) -> None:
    store = FileStore(tmp_path, skew=10.0)
    store.lock(KEY)  # the directory
    path = _lease_file(tmp_path)
    # Expired 5 s ago by this clock, but that host's clock may be up to 10 s behind: still held.
    _plant(path, node="0" * 12, pid=_dead_pid(), expires=time.time() - 5)
    assert not store.lock(KEY).try_acquire()  # a pid of another node says nothing
    _plant(path, node="0" * 12, pid=1, expires=time.time() - 11)
    lock = store.lock(KEY)
    assert lock.try_acquire()
    assert _record(path)["pid"] == os.getpid()
    lock.release()
    assert not path.exists() and not list(tmp_path.glob("*.claim"))


def test_unreadable_lock_file_is_held_until_it_is_old(tmp_path: Path, no_flock: None) -> None:
    store = FileStore(tmp_path, lease=30.0, skew=10.0)
    store.lock(KEY)
    path = _lease_file(tmp_path)
    path.write_bytes(b'{"id": "half-writ')  # a holder between its create and its write, or damage
    assert not store.lock(KEY).try_acquire()
    os.utime(path, (time.time() - 41, time.time() - 41))
    lock = store.lock(KEY)
    assert lock.try_acquire()
    lock.release()


def test_a_claim_left_by_a_dead_claimer_is_taken_over(tmp_path: Path, no_flock: None) -> None:
    store = FileStore(tmp_path)
    store.lock(KEY)
    path = _lease_file(tmp_path)
    stale = "b" * 32
    _plant(path, node="0" * 12, pid=1, expires=time.time() - 60, ident=stale)
    claim = path.with_name(f"{path.name}.{stale}.claim")
    # A live claimer is at work: leave the stale lock to it.
    _plant(claim, node=_owner.node(), pid=os.getpid(), expires=time.time() + 30, ident="c" * 32)
    assert not store.lock(KEY).try_acquire()
    assert path.exists()
    # The claimer died before it removed the lock file: its claim is stale, then so is the lock.
    _plant(claim, node=_owner.node(), pid=_dead_pid(), expires=time.time() + 30, ident="c" * 32)
    lock = store.lock(KEY)
    assert lock.try_acquire()
    assert _record(path)["pid"] == os.getpid()
    lock.release()
    assert sorted(p.name for p in tmp_path.iterdir() if ".lease" in p.name) == []


def test_a_contender_with_an_outdated_finding_never_removes_the_next_holders_file(
    tmp_path: Path,
) -> None:
    # The race of the module's docstring, step by step: two contenders find X's lock stale; the
    # faster takes it over; the slower then acts on what it found.
    path = tmp_path / "k.lease"
    _plant(path, node="0" * 12, pid=1, expires=time.time() - 3600, ident="d" * 32)
    slow, fast = (_leaselock.LeaseLock(path, lease=30.0, skew=10.0) for _ in range(2))
    found = _leasefile.read(path)
    assert found is not None and slow._stale(found)
    assert fast.try_take()
    new_holder = _record(path)["id"]
    assert not slow._remove(path, found, 0)
    assert _record(path)["id"] == new_holder
    assert not slow.try_take()
    fast.confirm()
    fast.release()
    assert not path.exists() and not list(tmp_path.glob("*.claim"))


def test_lease_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="lease"):
        FileStore(lease=0)
    with pytest.raises(ConfigError):
        FileStore(skew=-1)


# -- across processes ---------------------------------------------------------------------------------

ROUNDS = 10
PROCESSES = 8


def _increment(directory: str, rounds: int, locked: bool, start: Any, conn: Connection) -> None:
    _break_flock()
    store = FileStore(directory)
    counter, inside = Path(directory) / "counter", Path(directory) / "inside"
    overlaps = 0
    start.wait()
    for _ in range(rounds):
        lock = store.lock(KEY) if locked else None
        if lock is not None:
            lock.acquire()
        try:
            try:
                os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                overlaps += 1  # somebody else is between acquire and release too
            value = int(counter.read_text() or "0")  # "": read while another writes (unlocked)
            time.sleep(0.002)  # widens the read-modify-write window that the lock must protect
            counter.write_text(str(value + 1))
            inside.unlink(missing_ok=True)
        finally:
            if lock is not None:
                lock.release()
    conn.send((overlaps, store.lease_locks))


def _run_incrementers(directory: Path, locked: bool) -> tuple[int, int, list[bool]]:
    (directory / "counter").write_text("0")
    start = FORK.Event()
    children = [_spawn(_increment, str(directory), ROUNDS, locked, start)
                for _ in range(PROCESSES)]
    start.set()
    results = [conn.recv() for _, conn in children]
    for process, _ in children:
        process.join(30)
        assert process.exitcode == 0
    return (int((directory / "counter").read_text()), sum(r[0] for r in results),
            [r[1] for r in results])


def test_lease_lock_excludes_8_processes_no_lost_update(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.lock(KEY)  # the directory
    # They start by racing to take over a stale lock: the claim decides, one wins.
    _plant(_lease_file(tmp_path), node="0" * 12, pid=1, expires=time.time() - 3600)
    total, overlaps, lease_locks = _run_incrementers(tmp_path, locked=True)
    assert lease_locks == [True] * PROCESSES
    assert overlaps == 0
    assert total == PROCESSES * ROUNDS
    assert not _lease_file(tmp_path).exists() and not list(tmp_path.glob("*.claim"))


def test_without_the_lock_the_same_processes_lose_updates(tmp_path: Path) -> None:
    # The counter above can fail: unlocked, the same workload overlaps and loses increments.
    total, overlaps, _ = _run_incrementers(tmp_path, locked=False)
    assert overlaps > 0 or total < PROCESSES * ROUNDS


def _hold(directory: str, conn: Connection) -> None:
    _break_flock()
    lock = FileStore(directory).lock(KEY)
    lock.acquire()
    conn.send("held")
    conn.recv()  # until killed


def test_holder_killed_with_sigkill_is_taken_over_at_once(tmp_path: Path, no_flock: None) -> None:
    process, conn = _spawn(_hold, str(tmp_path))
    assert conn.recv() == "held"
    assert _record(_lease_file(tmp_path))["pid"] == process.pid
    lock = FileStore(tmp_path).lock(KEY)
    assert not lock.try_acquire()
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    assert process.exitcode == -signal.SIGKILL
    # Its process is gone from this host: no need to wait for its 30 s lease.
    assert lock.try_acquire()
    assert _record(_lease_file(tmp_path))["pid"] == os.getpid()
    lock.release()


def _stop(pid: int, path: Path) -> float:
    """SIGSTOP the child ``pid``; once it is stopped, the expiry of its lease file (it cannot
    renew it any more)."""
    os.kill(pid, signal.SIGSTOP)
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    return float(_record(path)["expires_ms"]) / 1000


def _stall(directory: str, conn: Connection) -> None:
    _break_flock()
    store = FileStore(directory, lease=1.0, skew=0.2)
    lock = store.lock(KEY)
    lock.acquire()
    conn.send("held")
    conn.recv()  # sent once this process was stopped past its lease, then continued
    try:
        lock.confirm()
        outcome = "confirmed"
    except LockLost as exc:
        outcome = f"lost: {exc}"
    lock.release()
    conn.send(outcome)


def test_holder_stopped_past_its_lease_loses_the_lock_to_the_next(
    tmp_path: Path, no_flock: None
) -> None:
    process, conn = _spawn(_stall, str(tmp_path))
    assert conn.recv() == "held"
    expires = _stop(process.pid, _lease_file(tmp_path))
    try:
        lock = FileStore(tmp_path, lease=1.0, skew=0.2).lock(KEY)
        if time.time() < expires:
            assert not lock.try_acquire()  # its lease still runs
        _until(lock.try_acquire, "the stopped holder's lease to run out")
        assert time.time() > expires + 0.2  # not before its last renewal's expiry and the skew
        mine = _record(_lease_file(tmp_path))["id"]
    finally:
        os.kill(process.pid, signal.SIGCONT)
    conn.send("go")
    outcome = conn.recv()
    assert outcome.startswith("lost: ") and "nothing was sent" in outcome
    process.join(10)
    assert process.exitcode == 0
    # Its release left the new holder's file alone.
    assert _record(_lease_file(tmp_path))["id"] == mine
    lock.confirm()
    lock.release()
    assert not _lease_file(tmp_path).exists()


def test_holder_stopped_past_its_lease_cannot_confirm_even_if_nobody_took_over(
    tmp_path: Path, no_flock: None
) -> None:
    process, conn = _spawn(_stall, str(tmp_path))
    assert conn.recv() == "held"
    path = _lease_file(tmp_path)
    expires = _stop(process.pid, path)
    try:
        _until(lambda: time.time() > expires + 0.1, "the stopped holder's lease to run out")
    finally:
        os.kill(process.pid, signal.SIGCONT)
    conn.send("go")
    outcome = conn.recv()
    assert outcome.startswith("lost: ") and "lease ran out" in outcome
    process.join(10)
    assert process.exitcode == 0
    assert not path.exists()  # nobody took it over: its release removed its own file


# -- saves are fenced: a holder that stalled writes nothing over its successor's token ------------------


def _token(name: str) -> Token:
    return Token(access_token=f"AT-{name}", expires_at=2_000_000_000.0, issued_at=1_700_000_000.0,
                 refresh_token=f"RT-{name}")


def _stalled_saver(directory: str, conn: Connection) -> None:
    _break_flock()
    store = FileStore(directory, lease=1.0, skew=0.2)
    lock = store.lock(KEY)
    lock.acquire()
    store.save(KEY, _token("2-kept"))  # the refresh token a server gave it, kept
    conn.send("kept")
    conn.recv()  # sent once this process was stopped past its lease, then continued
    outcomes: list[str] = []

    def final_save() -> None:  # from a worker thread, as the transport saves
        for attempt in (lambda: store.save(KEY, _token("2-final")), lambda: store.delete(KEY)):
            try:
                attempt()
                outcomes.append("written")
            except LockLost as exc:
                outcomes.append(f"lost: {exc}")

    worker = threading.Thread(target=final_save)
    worker.start()
    worker.join(10)
    lock.release()
    store.save(KEY + ":tool", _token("tool"))  # without the lock: as ever
    conn.send(outcomes)


def test_a_holder_stopped_past_its_lease_saves_nothing_over_the_next_holders_token(
    tmp_path: Path, no_flock: None
) -> None:
    process, conn = _spawn(_stalled_saver, str(tmp_path))
    assert conn.recv() == "kept"
    _stop(process.pid, _lease_file(tmp_path))
    try:
        successor = FileStore(tmp_path, lease=1.0, skew=0.2)
        lock = successor.lock(KEY)
        _until(lock.try_acquire, "the stopped holder's lease to run out")
        assert successor.load(KEY) == _token("2-kept")
        successor.save(KEY, _token("3"))  # it refreshed with RT-2-kept: RT-3 is the live one
        lock.release()
    finally:
        os.kill(process.pid, signal.SIGCONT)
    conn.send("go")
    outcomes = conn.recv()
    process.join(10)
    assert process.exitcode == 0
    assert len(outcomes) == 2 and all(o.startswith("lost: ") for o in outcomes), outcomes
    assert "lease ran out" in outcomes[0] and "the token was not saved" in outcomes[0]
    assert "was not removed" in outcomes[1]
    assert FileStore(tmp_path).load(KEY) == _token("3")
    assert FileStore(tmp_path).load(KEY + ":tool") == _token("tool")
    for path in tmp_path.iterdir():  # nor in a stray file that a next holder would adopt
        assert b"RT-2-final" not in path.read_bytes(), path.name


def test_a_save_checks_the_lock_file_itself_immediately_before_its_rename(
    tmp_path: Path, no_flock: None
) -> None:
    # A lease that has not run out here, yet the file holds another holder's record (its host's
    # clock ran ahead of the skew, or somebody removed the file by hand and another took it).
    store = FileStore(tmp_path)
    store.save(KEY, _token("1"))
    with store.lock(KEY):
        _plant(_lease_file(tmp_path), node="0" * 12, pid=4242, expires=time.time() + 30)
        with pytest.raises(LockLost, match=r"another process took it over.*not saved"):
            store.save(KEY, _token("2"))
        with pytest.raises(LockLost, match=r"another process took it over.*not removed"):
            store.delete(KEY)
    assert store.load(KEY) == _token("1")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert _record(_lease_file(tmp_path))["pid"] == 4242  # its release left the other's file


# -- a claimer that stalled under its claim gives up -------------------------------------------------


def _stalling_claimer(lock_path: str, releasing: bool, conn: Connection) -> None:
    path = Path(lock_path)
    lock = _leaselock.LeaseLock(path, lease=0.5, skew=0.1)
    if releasing:
        assert lock.try_take()
        conn.send("held")
        conn.recv()
    real_read = _leasefile.read
    reads = []

    def read(target: Path) -> _leasefile.Seen | None:
        seen = real_read(target)
        if target == path:
            reads.append(target)
            # Taking: the second reading is the one under the claim, which found X's record stale.
            # Releasing: the first, which found its own. Then the process stops (SIGSTOP).
            if len(reads) == (1 if releasing else 2):
                os.kill(os.getpid(), signal.SIGSTOP)
        return seen

    _leasefile.read = read  # type: ignore[assignment]
    if releasing:
        lock.release()
        conn.send("released")
    else:
        conn.send(lock.try_take())


@pytest.mark.parametrize("releasing", [False, True], ids=["taking-over", "releasing"])
def test_a_claimer_stopped_under_its_claim_never_removes_the_next_holders_file(
    tmp_path: Path, releasing: bool
) -> None:
    # C1 claims X (a stale holder's lock, or its own when releasing), reads X's file, and stops
    # past its claim's lease; C2 judges the claim stale, takes over and creates its lock file.
    # C1 resumes: it must not remove C2's file (and then, taking over, create one of its own).
    path = tmp_path / "k.lease"
    if not releasing:
        _plant(path, node="0" * 12, pid=1, expires=time.time() - 3600, ident="e" * 32)
    process, conn = _spawn(_stalling_claimer, str(path), releasing)
    if releasing:
        assert conn.recv() == "held"
        conn.send("release")
    _, status = os.waitpid(process.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    c2 = _leaselock.LeaseLock(path, lease=0.5, skew=0.1)
    try:
        _until(c2.try_take, "the stopped claimer's claim to go stale")
        mine = _record(path)["id"]
    finally:
        os.kill(process.pid, signal.SIGCONT)
    outcome = conn.recv()
    process.join(10)
    assert process.exitcode == 0
    assert outcome == ("released" if releasing else False)
    assert _record(path)["id"] == mine
    c2.confirm()
    c2.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- an expiry further ahead than any clock that agrees with ours -------------------------------------


def test_an_expiry_far_ahead_counts_by_the_files_age(tmp_path: Path) -> None:
    # A holder on a host whose clock ran a day ahead wrote this, then died: its expiry would block
    # everybody for a day. Judged like an unreadable file instead: stale once untouched for
    # lease + skew, held while fresh (a live holder's renewals touch it).
    path = tmp_path / "k.lease"
    _plant(path, node="0" * 12, pid=4242, expires=time.time() + 86400)
    lock = _leaselock.LeaseLock(path, lease=30.0, skew=10.0)
    assert not lock.try_take()
    os.utime(path, (time.time() - 39, time.time() - 39))
    assert not lock.try_take()
    os.utime(path, (time.time() - 41, time.time() - 41))
    assert lock.try_take()
    assert _record(path)["pid"] == os.getpid()
    lock.release()
    # Within lease + skew ahead, the expiry counts as ever.
    _plant(path, node="0" * 12, pid=4242, expires=time.time() + 35)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert not lock.try_take()


# -- async: the file system calls happen in a worker thread, never on the event loop ------------------

SLOW = 0.6  # seconds each slowed file system call takes (an NFS server that is slow to answer)


def _slowed(lease: bool) -> threading.Event:
    """In a child process: the lock's slow system call (a lease lock's fsync, or flock) takes
    SLOW seconds; the event is set while one is under way."""
    busy = threading.Event()
    name, module = ("fsync", os) if lease else ("flock", fcntl)
    real = getattr(module, name)

    def slow(*args: Any) -> Any:
        busy.set()
        time.sleep(SLOW)
        try:
            return real(*args)
        finally:
            busy.clear()

    if lease:
        _break_flock()
    setattr(module, name, slow)
    return busy


def _loop_stays_free(directory: str, lease: bool, conn: Connection) -> None:
    _slowed(lease)
    store = FileStore(directory)

    async def main() -> float:
        gaps = [0.0]
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.05)
        async with store.lock(KEY):
            other = FileStore(directory).lock(KEY)
            assert not await asyncio.to_thread(other.try_acquire)  # held (asked off the loop)
        done.set()
        await tick
        return max(gaps)

    conn.send(asyncio.run(main()))


@pytest.mark.parametrize("lease", [True, False], ids=["lease", "flock"])
def test_async_acquire_never_blocks_the_event_loop(tmp_path: Path, lease: bool) -> None:
    process, conn = _spawn(_loop_stays_free, str(tmp_path), lease)
    longest = conn.recv()
    process.join(10)
    assert process.exitcode == 0
    assert longest < SLOW / 2, f"the event loop stood still for {longest:.2f} s"


def _cancelled_acquirer(directory: str, lease: bool, conn: Connection) -> None:
    busy = _slowed(lease)
    store = FileStore(directory)

    async def main() -> str:
        task = asyncio.ensure_future(store.lock(KEY).aacquire())
        deadline = time.monotonic() + 10
        while not busy.is_set():  # the worker thread is in the slow call, taking the lock
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "acquired"

    outcome = asyncio.run(main())
    # The worker took the lock after the task had given up: it must not stay taken.
    other = FileStore(directory).lock(KEY)
    _until(other.try_acquire, "the cancelled acquisition's lock to be dropped")
    other.release()
    conn.send(outcome)


@pytest.mark.parametrize("lease", [True, False], ids=["lease", "flock"])
def test_a_cancelled_async_acquire_leaves_no_lock_behind(tmp_path: Path, lease: bool) -> None:
    process, conn = _spawn(_cancelled_acquirer, str(tmp_path), lease)
    assert conn.recv() == "cancelled"
    process.join(10)
    assert process.exitcode == 0
    lock = FileStore(tmp_path).lock(KEY)  # and from another process
    assert lock.try_acquire()
    lock.release()
    assert not _lease_file(tmp_path).exists()
