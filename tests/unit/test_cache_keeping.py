"""The cache keeps what a server answered before anything else can fail (issue: a login is never lost).

The fetch functions here do what the transport does with the keeper the cache hands them —
``confirm()`` before sending, ``keep(token)`` as soon as the answer is parsed — and then fail or
succeed as each test needs. Stores are real (MemoryStore, FileStore in a temporary directory);
a store that refuses to save is a fault injected by wrapping a real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyturn.cache import TokenCache, pending
from keyturn.errors import InvalidGrant, InvalidIdToken, StoreError
from keyturn.protocol.http import Keeper, Received
from keyturn.stores.base import LocalLock, LockLost, Store, StoreLock
from keyturn.stores.file import FileStore
from keyturn.stores.memory import MemoryStore
from keyturn.token import Token
from tests.support.mode import Mode

WAIT = 10.0


def answer(n: int, *, refresh: bool = True, claims: dict[str, Any] | None = None) -> Token:
    now = time.time()
    extra = {"id_token_claims": claims} if claims else {}
    return Token(access_token=f"AT-{n}", expires_at=now + 3600, issued_at=now,
                 refresh_token=f"RT-{n}" if refresh else None,
                 id_token="id.token.x" if claims else None, extra=extra)


class Server:
    """Hands out numbered answers through the keeper, as the transport would."""

    def __init__(self, *, rotate: bool = True) -> None:
        self.rotate = rotate
        self.sent: list[str | None] = []  # the refresh token each request carried
        self.after_keep: Callable[[], None] | None = None

    def fetch(self, previous: Token | None, keeper: Keeper | None) -> Token:
        assert keeper is not None
        keeper.confirm()
        self.sent.append(previous.refresh_token if previous else None)
        token = answer(len(self.sent), refresh=self.rotate)
        keeper.keep(Received(token, refresh=True))
        if self.after_keep is not None:
            self.after_keep()  # validation of what came back: may raise
        return token

    async def afetch(self, previous: Token | None, keeper: Keeper | None) -> Token:
        return self.fetch(previous, keeper)


def cache_for(server: Server, store: Store | None, **kwargs: Any) -> TokenCache:
    return TokenCache(key="k", fetch=server.fetch, afetch=server.afetch, store=store,
                      seed=Token.refresh_only("RT-0"), **kwargs)


def test_a_failed_check_after_the_answer_leaves_the_new_refresh_token_in_the_store(
        tmp_path: Path, mode: Mode) -> None:
    server = Server()
    store = FileStore(tmp_path)
    cache = cache_for(server, store)

    def jwks_unavailable() -> None:
        raise InvalidIdToken("the id_token's key could not be fetched (JWKS answered 503)")

    server.after_keep = jwks_unavailable
    with pytest.raises(InvalidIdToken):
        mode.token(cache)
    kept = FileStore(tmp_path).load("k")  # what a fresh process finds
    assert kept is not None and kept.refresh_token == "RT-1"
    assert kept.access_token == "" and kept.expires_at == 0.0  # not usable before its checks
    # The next call (here or in a fresh process) refreshes with the new refresh token.
    server.after_keep = None
    fresh = cache_for(server, FileStore(tmp_path))
    assert mode.token(fresh).access_token == "AT-2"
    assert server.sent == ["RT-0", "RT-1"]


def test_the_kept_record_carries_the_identity_already_validated() -> None:
    previous = answer(0, claims={"sub": "alice"})
    kept = pending(Received(answer(1), refresh=True), previous)
    assert kept.claims == {"sub": "alice"} and kept.id_token == previous.id_token
    assert kept.refresh_token == "RT-1" and not kept.access_token
    # A server that does not rotate: the old refresh token is the one to keep (RFC 6749 §6).
    assert pending(Received(answer(1, refresh=False), refresh=True), previous).refresh_token == "RT-0"


def test_a_new_login_carries_on_nothing_of_the_login_before() -> None:
    """A refused login of alice, then bob logs in (a code or device code exchanged): what is kept
    is bob's alone — not alice's identity, not her refused refresh token."""
    previous = answer(0, claims={"sub": "alice"})
    kept = pending(Received(answer(1), refresh=False), previous)
    assert kept.claims == {} and kept.id_token is None and kept.refresh_token == "RT-1"
    assert pending(Received(answer(1, refresh=False), refresh=False), previous).refresh_token is None


def test_on_refresh_runs_after_the_flight_and_may_ask_for_a_token() -> None:
    server = Server()
    seen: list[str] = []
    cache: TokenCache

    def on_refresh(token: Token) -> None:
        seen.append(cache.access_token())  # joined the flight and hung for ever before

    cache = cache_for(server, MemoryStore(), on_refresh=on_refresh)
    worker = threading.Thread(target=cache.token, daemon=True)
    worker.start()
    worker.join(WAIT)
    assert not worker.is_alive(), "on_refresh deadlocked on its own refresh"
    assert seen == ["AT-1"]


def test_on_refresh_gets_the_refresh_token_the_server_did_not_rotate(mode: Mode) -> None:
    server = Server(rotate=False)
    seen: list[str | None] = []
    cache = cache_for(server, MemoryStore(), on_refresh=lambda t: seen.append(t.refresh_token))
    mode.token(cache)
    assert seen == ["RT-0"]  # not None: the README's on_refresh saves what it is given


def test_on_refresh_gets_the_kept_token_when_the_refresh_then_failed(mode: Mode) -> None:
    server = Server()
    seen: list[Token] = []
    cache = cache_for(server, MemoryStore(), on_refresh=seen.append)

    def bad_signature() -> None:
        raise InvalidIdToken("bad signature")

    server.after_keep = bad_signature
    with pytest.raises(InvalidIdToken):
        mode.token(cache)
    assert [t.refresh_token for t in seen] == ["RT-1"]


class TakenOverStore(MemoryStore):
    """A real MemoryStore whose lock check fails once, after another holder stored a newer token:
    what a Redis or lease lock does for a holder that stalled past its lease."""

    def __init__(self, newer: Token) -> None:
        super().__init__()
        self.newer = newer
        self.confirms = 0

    def lock(self, key: str) -> StoreLock:
        store, inner = self, super().lock(key)
        assert isinstance(inner, LocalLock)

        class Lapsed(LocalLock):
            def confirm(self) -> None:
                store.confirms += 1
                if store.confirms == 1:
                    store.save(key, store.newer)  # the other holder refreshed meanwhile
                    raise LockLost("taken over")

        return Lapsed(inner._lock)


def test_a_lost_lock_sends_nothing_and_adopts_what_the_new_holder_stored(mode: Mode) -> None:
    server = Server()
    store = TakenOverStore(newer=answer(99))
    cache = cache_for(server, store)
    assert mode.token(cache).access_token == "AT-99"
    assert server.sent == []  # the stalled holder never sent its spent refresh token
    assert store.confirms == 1


class LapsingStore(MemoryStore):
    """A real MemoryStore whose every lock is lost before its holder may send: a holder that
    stalls past its lease each time it tries."""

    def __init__(self) -> None:
        super().__init__()
        self.releases = 0

    def lock(self, key: str) -> StoreLock:
        store, inner = self, super().lock(key)
        assert isinstance(inner, LocalLock)

        class Lapsing(LocalLock):
            def confirm(self) -> None:
                raise LockLost("taken over")

            def release(self) -> None:
                store.releases += 1
                super().release()

        return Lapsing(inner._lock)


def test_a_leader_that_loses_the_lock_each_time_lets_go_of_it_and_gives_up_after_three_tries(
        mode: Mode) -> None:
    server = Server()
    store = LapsingStore()
    cache = cache_for(server, store)
    with pytest.raises(LockLost):
        mode.token(cache)
    assert server.sent == []
    assert store.releases == 3  # each try took the lock anew, and let go of it before the next
    assert store.lock("k").try_acquire()  # nothing left holding it


class FlakyStore(FileStore):
    """A real FileStore whose next ``failures`` saves fail, as a Redis or NFS hiccup would."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.saves = 0

    def save(self, key: str, token: Token) -> None:
        self.saves += 1
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("injected: the store did not answer")
        super().save(key, token)


def test_a_save_that_fails_once_is_tried_again(tmp_path: Path, mode: Mode) -> None:
    server = Server()
    store = FlakyStore(tmp_path, failures=1)
    cache = cache_for(server, store)
    assert mode.token(cache).access_token == "AT-1"
    assert FileStore(tmp_path).load("k").access_token == "AT-1"  # type: ignore[union-attr]


def test_a_store_that_stays_down_keeps_the_token_in_memory_and_saves_it_next_time(
        tmp_path: Path, mode: Mode) -> None:
    server = Server()
    FileStore(tmp_path).save("k", Token.refresh_only("RT-0"))  # the login as stored
    store = FlakyStore(tmp_path, failures=100)
    cache = cache_for(server, store, leeway=0.0)
    token = mode.token(cache)
    assert token.access_token == "AT-1"  # served from memory: the caller is not failed
    assert FileStore(tmp_path).load("k").refresh_token == "RT-0"  # type: ignore[union-attr]
    store.failures = 0
    mode.invalidate(cache)  # the next call refreshes
    assert mode.token(cache).access_token == "AT-2"
    # The refresh token that only this process held was used — never the spent RT-0 again.
    assert server.sent == ["RT-0", "RT-1"]
    assert FileStore(tmp_path).load("k").refresh_token == "RT-2"  # type: ignore[union-attr]


def test_without_a_store_the_kept_refresh_token_is_what_the_next_call_uses(mode: Mode) -> None:
    server = Server()
    cache = cache_for(server, None)

    def bad_signature() -> None:
        raise InvalidIdToken("bad signature")

    server.after_keep = bad_signature
    with pytest.raises(InvalidIdToken):
        mode.token(cache)
    server.after_keep = None
    mode.token(cache)
    assert server.sent == ["RT-0", "RT-1"]  # never the spent RT-0 twice


def test_on_refresh_asking_for_a_token_after_a_failed_refresh_starts_no_refresh_loop(
        caplog: pytest.LogCaptureFixture, mode: Mode) -> None:
    server = Server()
    cache: TokenCache
    cache = cache_for(server, MemoryStore(), on_refresh=lambda t: cache.access_token())

    def bad_signature() -> None:
        raise InvalidIdToken("bad signature")

    server.after_keep = bad_signature
    with pytest.raises(InvalidIdToken):
        mode.token(cache)
    assert server.sent == ["RT-0"]  # one refresh; before, each nested call refreshed again
    assert "on_refresh callback failed" in caplog.text


def test_logout_forgets_and_returns_the_refresh_token_only_memory_held(tmp_path: Path, mode: Mode) -> None:
    server = Server()
    FileStore(tmp_path).save("k", Token.refresh_only("RT-0"))
    store = FlakyStore(tmp_path, failures=100)
    cache = cache_for(server, store)
    mode.token(cache)
    store.failures = 0
    newest = mode.forget(cache)
    assert newest is not None and newest.refresh_token == "RT-1"  # what logout() revokes
    assert FileStore(tmp_path).load("k") is None
    mode.token(cache)
    # The forgotten login does not come back from memory: the next fetch starts from nothing.
    assert server.sent == ["RT-0", None]


def test_a_refused_refresh_token_that_only_memory_held_never_falls_back_to_the_spent_one(
        tmp_path: Path, mode: Mode) -> None:
    server = Server()
    FileStore(tmp_path).save("k", Token.refresh_only("RT-0"))
    store = FlakyStore(tmp_path, failures=100)
    cache = cache_for(server, store, leeway=0.0)
    mode.token(cache)  # RT-1 lives only in memory; the store still says RT-0
    store.failures = 0
    mode.invalidate(cache)

    def refuse(previous: Token | None, keeper: Keeper | None) -> Token:
        server.sent.append(previous.refresh_token if previous else None)
        raise InvalidGrant("refresh token revoked")

    async def arefuse(previous: Token | None, keeper: Keeper | None) -> Token:
        return refuse(previous, keeper)

    cache._fetch, cache._afetch = refuse, arefuse
    with pytest.raises(InvalidGrant):
        mode.token(cache)
    assert server.sent == ["RT-0", "RT-1"]  # not RT-0 again after RT-1 was refused


def test_an_async_refresh_never_waits_for_a_default_executor_that_lock_waiters_filled(
        tmp_path: Path) -> None:
    """Requests that got a 401 invalidate the token in worker threads, which wait for the store's
    lock while a refresh holds it. When they fill the loop's default executor, the refresh must
    still save and let go of the lock (it once queued its save behind them: a deadlock)."""
    import asyncio
    import concurrent.futures

    answered: asyncio.Event

    async def slow_afetch(previous: Token | None, keeper: Keeper | None) -> Token:
        await answered.wait()
        return answer(1)

    store = FileStore(tmp_path)
    cache = TokenCache(key="k", fetch=Server().fetch, afetch=slow_afetch, store=store,
                       seed=Token.refresh_only("RT-0"))

    async def main() -> Token:
        nonlocal answered
        answered = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        refresh = asyncio.create_task(cache.atoken())
        while not cache._flight:  # the refresh holds the lock once its fetch waits
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        # Every worker of the default executor waits for the lock the refresh holds.
        waiting = [loop.run_in_executor(None, cache.invalidate) for _ in range(2)]
        await asyncio.sleep(0.1)
        answered.set()
        token = await asyncio.wait_for(refresh, WAIT)
        await asyncio.wait_for(asyncio.gather(*waiting), WAIT)
        return token

    assert asyncio.run(main()).access_token == "AT-1"
    assert FileStore(tmp_path).load("k") is not None
