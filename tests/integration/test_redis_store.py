"""RedisStore against a real redis-server (tests/support/redisfixture.py) and the real test provider: tokens
shared by processes, a lock that expires, fenced writes, herds, rotation, Redis going away."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import pickle
import signal
import threading
import time

import pytest
import redis

from keyturn import ClientCredentials, RedisStore, RefreshToken, StoreError, Token
from tests.support.processes import herd_context
from tests.support.redisfixture import start_redis

WAIT = 20.0  # bound of every polling loop (seconds)


def token(access: str, *, life: float = 300.0, refresh: str | None = None,
          refresh_life: float | None = None) -> Token:
    now = time.time()
    return Token(access_token=access, expires_at=now + life, issued_at=now, refresh_token=refresh,
                 refresh_expires_at=None if refresh_life is None else now + refresh_life)


def until(condition, what: str, bound: float = WAIT):
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def elsewhere():
    """A fresh context: as another thread would see it, holding none of this thread's locks."""
    return contextvars.Context()


def in_thread(call):
    """Run ``call`` in a fresh thread (its own context: its own view of held locks)."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    return result[0] if result else None


# -- records ----------------------------------------------------------------------------------------


def test_round_trip_and_delete(redis_url):
    store = RedisStore(redis_url)
    assert store.load("k") is None
    original = Token(access_token="at-1", expires_at=time.time() + 60, issued_at=time.time(),
                     scope=("a", "b"), refresh_token="rt-1", id_token="id-1",
                     extra={"custom": "x"})
    store.save("k", original)
    loaded = RedisStore(redis_url).load("k")  # another instance: as another process would
    assert loaded == original
    assert RedisStore(redis_url, prefix="other").load("k") is None
    store.delete("k")
    assert store.load("k") is None
    store.delete("never-saved")
    assert redis.Redis.from_url(redis_url).keys("*") == []
    with store.lock("k"):
        store.save("k", original)
        store.delete("k")
    # What is left is the fence counter alone (and the release signal, for a second), expiring.
    client = redis.Redis.from_url(redis_url)
    assert [k for k in client.keys("*") if not k.endswith(b":free")] == [store._names("k")[1].encode()]
    assert set(client.hgetall(store._names("k")[1])) == {b"issued", b"fence"}
    assert 0 < client.pttl(store._names("k")[1]) <= store.retention * 1000


def test_records_expire_after_the_last_token_that_could_be_needed(redis_url):
    store = RedisStore(redis_url, retention=200)
    client = redis.Redis.from_url(redis_url)

    def ttl(key: str) -> float:
        return client.pttl(store._names(key)[1]) / 1000

    store.save("access-only", token("a", life=300))
    assert 490 < ttl("access-only") <= 500
    store.save("refresh-unknown", token("a", life=300, refresh="r"))
    assert 90 * 86400 - 10 < ttl("refresh-unknown") <= 90 * 86400
    store.save("refresh-known", token("a", life=300, refresh="r", refresh_life=7 * 86400))
    assert 7 * 86400 + 190 < ttl("refresh-known") <= 7 * 86400 + 200
    # A refresh-token record never expires before its refresh token, whatever the access token.
    store.save("refresh-known", token("a", life=-10, refresh="r", refresh_life=3600))
    assert 3790 < ttl("refresh-known") <= 3800
    # An expired access token alone is kept for the retention only.
    store.save("access-only", token("a", life=-5))
    assert 190 < ttl("access-only") <= 200
    # Never shorter than four leases: the hash holds the fence counter of a lock being held.
    short = RedisStore(redis_url, retention=0, lease=30)
    short.save("access-only", token("a", life=-5))
    assert 110 < ttl("access-only") <= 120


def test_a_damaged_record_is_reported_and_treated_as_absent(redis_url, caplog):
    store = RedisStore(redis_url)
    store.save("k", token("a"))
    redis.Redis.from_url(redis_url).hset(store._names("k")[1], "record", b"{not json")
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.redis"):
        assert store.load("k") is None
    assert "damaged" in caplog.text
    store.save("k", token("b"))
    assert store.load("k").access_token == "b"


# -- the lock ---------------------------------------------------------------------------------------


def _count_under_lock(url, key, rounds, start, queue):
    store = RedisStore(url)
    client = redis.Redis.from_url(url)
    start.wait()
    overlaps = 0
    for _ in range(rounds):
        with store.lock(key):
            # Anyone else inside the lock at the same time shows up here.
            if not client.set("inside", os.getpid(), nx=True):
                overlaps += 1
            value = int(client.get("counter") or 0)  # read-modify-write: lost without the lock
            client.set("counter", value + 1)
            client.delete("inside")
    queue.put(overlaps)


def test_lock_excludes_other_processes(redis_url):
    context = herd_context()
    start, queue = context.Event(), context.Queue()
    processes = [context.Process(target=_count_under_lock, args=(redis_url, "k", 25, start, queue))
                 for _ in range(4)]
    for process in processes:
        process.start()
    start.set()
    overlaps = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert overlaps == [0, 0, 0, 0]
    assert int(redis.Redis.from_url(redis_url).get("counter")) == 100


def test_threads_and_tasks_of_one_process_queue_on_one_lock(redis_url):
    store = RedisStore(redis_url)
    first = store.lock("k")
    first.acquire()
    assert in_thread(lambda: store.lock("k").try_acquire()) is False

    async def waiter() -> int | None:
        async with store.lock("k") as lock:
            return lock.fence

    async def main() -> int | None:
        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.05)
        assert not task.done()
        await asyncio.to_thread(first.release)
        return await task

    fence = asyncio.run(main())
    assert fence is not None and first.fence is None


def test_a_cancelled_async_waiter_leaves_no_lock_behind(redis_url):
    store = RedisStore(redis_url)
    holder = store.lock("k")
    holder.acquire()

    async def main() -> None:
        task = asyncio.create_task(store.lock("k").aacquire())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(holder.release)
        lock = store.lock("k")
        await asyncio.wait_for(lock.aacquire(), WAIT)
        await lock.__aexit__(None, None, None)

    asyncio.run(main())


def _hold_lock(url, key, lease, held):
    store = RedisStore(url, lease=lease)
    store.lock(key).acquire()
    held.set()
    threading.Event().wait()  # hold until killed


def test_a_dead_holders_lock_is_taken_over_after_its_lease(redis_url):
    store = RedisStore(redis_url, lease=0.6)
    lock_name = store._names("k")[0]
    client = redis.Redis.from_url(redis_url)
    context = herd_context()
    held = context.Event()
    child = context.Process(target=_hold_lock, args=(redis_url, "k", 0.6, held))
    child.start()
    try:
        assert held.wait(60)
        # While the holder lives, its watchdog renews the lease: the lock outlives several leases.
        owner = client.get(lock_name)
        renewals, last = 0, client.pttl(lock_name)
        deadline = time.monotonic() + WAIT
        while renewals < 6:  # six renewals, a third of a lease apart: two leases
            assert time.monotonic() < deadline, "the lease was not renewed"
            now = client.pttl(lock_name)
            renewals += now > last
            last = now
            time.sleep(0.01)
        assert client.get(lock_name) == owner
        assert in_thread(lambda: store.lock("k").try_acquire()) is False
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        lock = store.lock("k")
        until(lock.try_acquire, "the dead holder's lease to expire", bound=10)
        assert client.get(lock_name) != owner
        lock.release()
    finally:
        if child.is_alive():
            child.kill()
            child.join(30)


def test_release_never_deletes_another_holders_lock(redis_url):
    stalled = RedisStore(redis_url, lease=0.3, max_hold=0)  # stops renewing at once
    lock = stalled.lock("k")
    lock.acquire()
    other = RedisStore(redis_url).lock("k")
    until(other.try_acquire, "the stalled holder's lease to end")
    lock.release()  # late: the lock is someone else's now
    assert RedisStore(redis_url).lock("k").try_acquire() is False
    other.release()


# -- fencing ----------------------------------------------------------------------------------------


def test_a_writer_whose_lease_expired_cannot_overwrite_a_newer_token(redis_url, caplog):
    stalled_store = RedisStore(redis_url, lease=0.3, max_hold=0)
    store = RedisStore(redis_url)
    store.save("k", token("old"))
    late = stalled_store.lock("k")
    late.acquire()  # this thread holds a lock that nobody renews: it will run out
    newer = store.lock("k")
    other = elsewhere()
    other.run(until, newer.try_acquire, "the stalled lease to end")
    assert newer.fence > late.fence
    other.run(store.save, "k", token("newer"))
    other.run(newer.release)
    assert late.fence is not None
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.redis"):
        stalled_store.save("k", token("late"))  # its fence is older than the stored record's
        stalled_store.delete("k")
    late.release()
    assert store.load("k").access_token == "newer"
    assert "another process saved a newer one" in caplog.text


def _stalled_writer(url, key, held, resume, done):
    store = RedisStore(url, lease=0.5)
    with store.lock(key):
        held.set()
        resume.wait(60)  # the parent freezes this process (SIGSTOP) here, then thaws it
        store.save(key, token("late"))
    done.set()


def test_a_frozen_process_cannot_overwrite_the_token_saved_while_it_was_frozen(redis_url):
    """SIGSTOP freezes the holder and its lease watchdog, as a long GC pause or a suspended VM
    would: its lease runs out, another process saves, and the thawed writer's save is refused."""
    context = herd_context()
    held, resume, done = context.Event(), context.Event(), context.Event()
    child = context.Process(target=_stalled_writer, args=(redis_url, "k", held, resume, done))
    child.start()
    try:
        assert held.wait(60)
        os.kill(child.pid, signal.SIGSTOP)
        store = RedisStore(redis_url)
        lock = store.lock("k")
        until(lock.try_acquire, "the frozen holder's lease to end", bound=10)
        store.save("k", token("newer"))
        lock.release()
        os.kill(child.pid, signal.SIGCONT)
        resume.set()
        assert done.wait(60)
        child.join(30)
        assert child.exitcode == 0
        assert store.load("k").access_token == "newer"
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.join(30)


def test_a_late_writer_may_still_save_before_the_new_holder_does(redis_url):
    """The late writer's token is newer than the stored one: it is kept until the new holder saves
    (so a process that lost a rotated refresh token finds it in the store)."""
    stalled_store = RedisStore(redis_url, lease=0.3, max_hold=0)
    store = RedisStore(redis_url)
    store.save("k", token("old"))
    late = stalled_store.lock("k")
    late.acquire()
    newer, other = store.lock("k"), elsewhere()
    other.run(until, newer.try_acquire, "the stalled lease to end")
    stalled_store.save("k", token("late"))
    assert store.load("k").access_token == "late"
    other.run(store.save, "k", token("newest"))  # the new holder, with its fence
    stalled_store.save("k", token("late again"))  # now older than the stored record: refused
    assert store.load("k").access_token == "newest"
    late.release()
    other.run(newer.release)


def test_a_fence_from_before_the_record_expired_is_refused(redis_url):
    stalled_store = RedisStore(redis_url, lease=0.3, max_hold=0)
    late = stalled_store.lock("k")
    late.acquire()
    redis.Redis.from_url(redis_url).flushall()  # as if the lock and the record had expired
    store, other = RedisStore(redis_url), elsewhere()
    newer = store.lock("k")
    assert other.run(newer.try_acquire)
    other.run(store.save, "k", token("new"))
    other.run(newer.release)
    stalled_store.save("k", token("late"))
    assert store.load("k").access_token == "new"
    late.release()


def test_fences_grow_and_saves_outside_a_lock_are_newest(redis_url):
    store = RedisStore(redis_url)
    fences = []
    for _ in range(3):
        with store.lock("k") as lock:
            fences.append(lock.fence)
    assert fences == sorted(fences) and len(set(fences)) == 3
    store.save("k", token("unlocked"))  # a tool writing a token: accepted
    with store.lock("k"):
        store.save("k", token("locked"))
    assert store.load("k").access_token == "locked"


# -- herds against the real provider ----------------------------------------------------------------


def _herd_worker(issuer, client_id, secret, url, threads, barrier, queue, rounds):
    source = ClientCredentials(issuer=issuer, client_id=client_id, client_secret=secret,
                               store=RedisStore(url))
    for _ in range(rounds):
        go = threading.Event()
        results: list[str] = []

        def call() -> None:
            go.wait()
            results.append(source.get_access_token())

        pool = [threading.Thread(target=call) for _ in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        go.set()
        for thread in pool:
            thread.join()
        queue.put(sorted(set(results)) if len(results) == threads else ["missing"])


def test_8_processes_x_16_threads_at_expiry_make_one_request(fresh_stats, redis_url):
    provider = fresh_stats
    client = provider.clients["short"]  # 2 s tokens
    n, threads = 8, 16
    context = herd_context()
    barrier, queue = context.Barrier(n + 1), context.Queue()
    processes = [context.Process(target=_herd_worker, args=(
        provider.issuer, client.client_id, client.client_secret, redis_url, threads, barrier,
        queue, 2)) for _ in range(n)]
    for process in processes:
        process.start()
    try:
        rounds = []
        for round_ in range(2):
            if round_:
                # The second round starts once the first token expired: every process holds it.
                stored = RedisStore(redis_url).load(
                    ClientCredentials(issuer=provider.issuer, client_id=client.client_id,
                                      client_secret=client.client_secret).cache.key)
                time.sleep(max(0.0, stored.expires_at - time.time()) + 0.05)
            provider.reset_stats()
            barrier.wait(timeout=120)
            tokens = {t for _ in processes for t in queue.get(timeout=60)}
            rounds.append((tokens, provider.token_requests("short")))
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    (first, first_requests), (second, second_requests) = rounds
    assert len(first) == 1 and first_requests == 1
    assert len(second) == 1 and second_requests == 1 and second != first


def test_50_async_tasks_through_redis_make_one_request(fresh_stats, redis_url):
    provider = fresh_stats
    client = provider.clients["short"]
    sources = [ClientCredentials(issuer=provider.issuer, client_id=client.client_id,
                                 client_secret=client.client_secret, store=RedisStore(redis_url))
               for _ in range(5)]  # five "processes" in one: five caches, one Redis

    async def herd() -> set[str]:
        return set(await asyncio.gather(*(s.aget_access_token() for s in sources for _ in range(10))))

    assert len(asyncio.run(herd())) == 1
    assert provider.token_requests("short") == 1


def _refresh_worker(issuer, refresh_token, url, barrier, queue):
    source = RefreshToken(issuer=issuer, client_id="public", refresh_token=refresh_token,
                          store=RedisStore(url))
    barrier.wait()
    try:
        queue.put(("ok", source.get_access_token()))
    except Exception as exc:
        queue.put(("error", repr(exc)))


def test_processes_share_one_rotating_refresh_token_through_redis(fresh_stats, redis_url):
    provider = fresh_stats
    initial = provider.mint_refresh_token("public")
    context = herd_context()
    barrier, queue = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_refresh_worker,
                                 args=(provider.issuer, initial, redis_url, barrier, queue))
                 for _ in range(6)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert [r for r in results if r[0] == "error"] == []
    assert len({r[1] for r in results}) == 1
    assert provider.token_requests("public", "refresh_token") == 1
    # A process started later with the same, now spent, refresh token uses its successor from
    # Redis (the shared access token, or — if that is already due — a refresh with the rotated
    # refresh token); once that expires it refreshes again: never invalid_grant.
    late = RefreshToken(issuer=provider.issuer, client_id="public", refresh_token=initial,
                        store=RedisStore(redis_url))
    first = late.get_token()
    refreshes = provider.token_requests("public", "refresh_token")
    assert (first.access_token == results[0][1]) == (refreshes == 1)
    time.sleep(max(0.0, first.expires_at - time.time()) + 0.05)
    assert late.get_access_token() != first.access_token
    assert provider.token_requests("public", "refresh_token") == refreshes + 1


# -- Redis going away, secrets ------------------------------------------------------------------------


def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://keyturn:pw-SECRET-1@127.0.0.1:{port}/0"


def test_redis_down_is_a_clear_store_error(provider):
    url = _closed_port_url()
    store = RedisStore(url)
    with pytest.raises(StoreError) as info:
        store.load("k")
    message = str(info.value)
    assert "unreachable" in message and "fallback='memory'" in message
    assert url.replace("keyturn:pw-SECRET-1@", "") in message  # the URL, without credentials
    assert "pw-SECRET-1" not in message and "pw-SECRET-1" not in repr(info.value)
    client = provider.clients["basic"]
    source = ClientCredentials(issuer=provider.issuer, client_id=client.client_id,
                               client_secret=client.client_secret, store=store)
    with pytest.raises(StoreError, match="unreachable"):
        source.get_access_token()


def test_fallback_to_memory_warns_once_and_recovers(fresh_stats, tmp_path, caplog):
    provider = fresh_stats
    server = start_redis(tmp_path)
    try:
        store = RedisStore(server.url, fallback="memory", retry_after=0.2)
        client = provider.clients["basic"]
        source = ClientCredentials(issuer=provider.issuer, client_id=client.client_id,
                                   client_secret=client.client_secret, store=store)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="keyturn.stores.redis"):
            first = source.get_access_token()
            for _ in range(3):
                source.invalidate()
                assert source.get_access_token()
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1
        assert first and provider.token_requests("basic") == 4
        server.start()  # same port, empty
        until(lambda: not store.degraded, "the retry_after pause to end")
        source.invalidate()
        latest = source.get_access_token()
        assert RedisStore(server.url).load(source.cache.key).access_token == latest
        assert "answers again" in caplog.text
    finally:
        server.stop()


def test_the_password_never_appears_in_errors_reprs_or_logs(redis_server, redis_url, caplog):
    secret = "pw-SECRET-2"
    assert redis_server.command(f"ACL SETUSER keyturn on >{secret} ~* +@all").startswith(b"+OK")
    try:
        url = redis_url.replace("redis://", f"redis://keyturn:{secret}@")
        store = RedisStore(url)
        with caplog.at_level(logging.DEBUG):
            store.save("k", token("a"))
            with store.lock("k") as lock:
                assert secret not in repr(lock)
            assert store.load("k").access_token == "a"
        assert secret not in repr(store) and secret not in str(store)
        assert "keyturn@" not in repr(store)
        with pytest.raises(TypeError):
            pickle.dumps(store)
        wrong = RedisStore(url.replace(secret, "wrong-" + secret))
        with pytest.raises(StoreError) as info:
            wrong.load("k")
        assert "credentials" in str(info.value)
        assert secret not in str(info.value) and secret not in repr(info.value)
        assert secret not in caplog.text
    finally:
        with contextlib.suppress(Exception):
            redis_server.command("ACL DELUSER keyturn")
