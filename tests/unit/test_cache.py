"""keyturn.cache.TokenCache: single flight, refresh ahead, failures, with a fake clock.

Concurrency here is real (threads and asyncio tasks) and deterministic: the fake provider's fetch
blocks on an event that the test opens only once every caller has provably joined the refresh —
each caller reads the fake clock before it joins, and the clock records who read it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest

from keyturn.cache import TokenCache
from keyturn.errors import InvalidClient, InvalidGrant, KeyturnError, TransportError
from keyturn.stores.memory import MemoryStore
from keyturn.token import Token
from tests.support.mode import Mode

WAIT = 10.0  # seconds: only a guard against a hang; a passing test never waits this long
LIFETIME = 3600.0
LEEWAY = 60.0


class FakeClock:
    """A monotonic and a wall clock that move only when told, and that record who read them."""

    def __init__(self) -> None:
        self.mono = 1_000.0
        self.wall_time = 1_700_000_000.0
        self._cond = threading.Condition()
        self._readers: set[object] = set()

    @staticmethod
    def _who() -> object:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        return task if task is not None else threading.get_ident()

    def clock(self) -> float:
        with self._cond:
            self._readers.add(self._who())
            self._cond.notify_all()
            return self.mono

    def wall(self) -> float:
        with self._cond:
            return self.wall_time

    def advance(self, seconds: float) -> None:
        with self._cond:
            self.mono += seconds
            self.wall_time += seconds

    def forget_readers(self) -> None:
        with self._cond:
            self._readers.clear()

    def wait_for_readers(self, who: Iterable[object]) -> None:
        wanted = set(who)
        with self._cond:
            assert self._cond.wait_for(lambda: wanted <= self._readers, timeout=WAIT), "callers missing"

    def has_read(self, who: Iterable[object]) -> bool:
        with self._cond:
            return set(who) <= self._readers


class FakeProvider:
    """Counts fetches, hands out numbered tokens, and can be gated or made to fail."""

    def __init__(self, clock: FakeClock, *, lifetime: float = LIFETIME) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[tuple[str, Token | None]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.agate: asyncio.Event | None = None
        self.entered = threading.Event()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self.calls)

    def close_gate(self) -> None:
        self.gate.clear()
        self.entered.clear()

    def _begin(self, kind: str, previous: Token | None) -> tuple[int, BaseException | None]:
        with self._lock:
            self.calls.append((kind, previous))
            return len(self.calls), (self.errors.pop(0) if self.errors else None)

    def token(self, n: int) -> Token:
        now = self.clock.wall()
        return Token(access_token=f"AT{n}", expires_at=now + self.lifetime, issued_at=now,
                     refresh_token=f"RT{n}")

    def fetch(self, previous: Token | None, keeper: Any = None) -> Token:
        n, error = self._begin("sync", previous)
        self.entered.set()
        assert self.gate.wait(WAIT), "gate never opened"
        if error is not None:
            raise error
        return self.token(n)

    async def afetch(self, previous: Token | None, keeper: Any = None) -> Token:
        n, error = self._begin("async", previous)
        self.entered.set()
        if self.agate is not None:
            await asyncio.wait_for(self.agate.wait(), WAIT)
        elif not self.gate.is_set():
            opened = await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, WAIT)
            assert opened, "gate never opened"
        if error is not None:
            raise error
        return self.token(n)


def make_cache(clock: FakeClock, provider: FakeProvider, *, store: Any = "memory", key: str = "k",
               leeway: float = LEEWAY, jitter: float = 0.0, seed: Token | None = None) -> TokenCache:
    return TokenCache(
        key=key, fetch=provider.fetch, afetch=provider.afetch,
        store=MemoryStore() if store == "memory" else store, seed=seed, leeway=leeway, jitter=jitter,
        clock=clock.clock, wall=clock.wall,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(clock: FakeClock) -> FakeProvider:
    return FakeProvider(clock)


def run_threads(target: Callable[[], Any], n: int) -> tuple[list[threading.Thread], list[Any]]:
    """Start n threads running target; results (values or exceptions) are appended to the list."""
    results: list[Any] = []
    lock = threading.Lock()

    def body() -> None:
        try:
            value: Any = target()
        except BaseException as exc:
            value = exc
        with lock:
            results.append(value)

    threads = [threading.Thread(target=body, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads, results


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a caller never returned"


async def spin_until(condition: Callable[[], bool], spins: int = 100_000) -> None:
    """Yield to the event loop (no timed sleep) until condition holds."""
    for _ in range(spins):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(fn)


def primed(clock: FakeClock, provider: FakeProvider, **kwargs: Any) -> TokenCache:
    """A cache holding AT1, with the provider's counters reset."""
    cache = make_cache(clock, provider, **kwargs)
    assert cache.access_token() == "AT1"
    return cache


def replace_fetch(cache: TokenCache, fetch: Callable[..., Token]) -> None:
    """Answer the cache's refreshes with ``fetch``, in both drivers (the ``mode`` fixture uses either)."""

    async def afetch(previous: Token | None, keeper: Any = None) -> Token:
        return fetch(previous, keeper)

    cache._fetch = fetch
    cache._afetch = afetch


# -- the fast path ----------------------------------------------------------------------------------


def test_first_call_fetches_then_serves_from_memory(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    cache = make_cache(clock, provider)
    assert cache.current is None
    assert [mode.access_token(cache) for _ in range(100)] == ["AT1"] * 100
    assert provider.calls == [(mode.name, None)]
    token = mode.token(cache)
    assert token.access_token == "AT1" and token.refresh_token == "RT1"
    clock.advance(LIFETIME - LEEWAY - 1)
    assert mode.access_token(cache) == "AT1"
    assert provider.count == 1
    clock.advance(1)
    assert mode.access_token(cache) == "AT2"
    assert provider.count == 2
    # The refresh was given the previous token, so its refresh token.
    assert provider.calls[1][1] is not None and provider.calls[1][1].refresh_token == "RT1"
    assert provider.calls[1][0] == mode.name


def test_token_without_expiry_is_never_refreshed(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    store = MemoryStore()
    store.save("k", Token(access_token="forever"))
    cache = make_cache(clock, provider, store=store)
    clock.advance(10 * 365 * 86400)
    assert mode.access_token(cache) == "forever"
    assert provider.count == 0


# -- single flight ----------------------------------------------------------------------------------


def test_64_threads_at_expiry_make_one_fetch(clock: FakeClock, provider: FakeProvider) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME + 1)  # expired: nobody may be served the old token
    provider.close_gate()
    clock.forget_readers()
    threads, results = run_threads(cache.access_token, 64)
    assert provider.entered.wait(WAIT)
    clock.wait_for_readers(t.ident for t in threads)  # all 64 are in, the fetch is still running
    assert provider.count == 2
    provider.gate.set()
    join_all(threads)
    assert results == ["AT2"] * 64
    assert provider.count == 2


async def test_50_tasks_at_expiry_make_one_fetch(clock: FakeClock, provider: FakeProvider) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME + 1)
    provider.agate = asyncio.Event()
    provider.entered.clear()
    clock.forget_readers()
    tasks = [asyncio.create_task(cache.aaccess_token()) for _ in range(50)]
    await spin_until(lambda: provider.entered.is_set() and clock.has_read(tasks))
    assert provider.count == 2
    assert not any(task.done() for task in tasks)
    provider.agate.set()
    assert await asyncio.gather(*tasks) == ["AT2"] * 50
    assert [kind for kind, _ in provider.calls] == ["sync", "async"]


async def test_50_tasks_on_an_empty_cache_make_one_fetch(clock: FakeClock, provider: FakeProvider) -> None:
    cache = make_cache(clock, provider)
    provider.agate = asyncio.Event()
    tasks = [asyncio.create_task(cache.atoken()) for _ in range(50)]
    await spin_until(lambda: provider.entered.is_set() and clock.has_read(tasks))
    provider.agate.set()
    tokens = await asyncio.gather(*tasks)
    assert {token.access_token for token in tokens} == {"AT1"}
    assert provider.count == 1


@pytest.mark.parametrize("leader", ["thread", "task"])
async def test_threads_and_tasks_together_make_one_fetch(
    clock: FakeClock, provider: FakeProvider, leader: str
) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME + 1)
    provider.close_gate()
    clock.forget_readers()
    threads: list[threading.Thread] = []
    results: list[Any] = []
    tasks: list[asyncio.Task[str]] = []
    if leader == "thread":
        threads, results = run_threads(cache.access_token, 16)
        assert await in_thread(lambda: provider.entered.wait(WAIT))
        tasks = [asyncio.create_task(cache.aaccess_token()) for _ in range(16)]
    else:
        tasks = [asyncio.create_task(cache.aaccess_token()) for _ in range(16)]
        await spin_until(provider.entered.is_set)
        threads, results = run_threads(cache.access_token, 16)
    await spin_until(lambda: clock.has_read(tasks))
    await in_thread(lambda: clock.wait_for_readers(t.ident for t in threads))
    assert provider.count == 2
    provider.gate.set()
    assert await asyncio.gather(*tasks) == ["AT2"] * 16
    await in_thread(lambda: join_all(threads))
    assert results == ["AT2"] * 16
    assert provider.count == 2
    assert provider.calls[1][0] == ("sync" if leader == "thread" else "async")


def test_inside_the_leeway_one_refreshes_and_the_others_get_the_old_token(
    clock: FakeClock, provider: FakeProvider
) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME - LEEWAY / 2)  # due for refresh, still valid
    provider.close_gate()
    # If a caller below blocked on the refresh, this guard opens the gate and its answer is AT2.
    guard = threading.Timer(WAIT, provider.gate.set)
    guard.start()
    try:
        threads, results = run_threads(cache.access_token, 1)
        assert provider.entered.wait(WAIT)
        others = [cache.access_token() for _ in range(10)]
        others += [cache.token().access_token for _ in range(10)]
        assert others == ["AT1"] * 20
        assert not provider.gate.is_set()
        assert provider.count == 2
        provider.gate.set()
        join_all(threads)
    finally:
        guard.cancel()
    assert results == ["AT2"]
    assert cache.access_token() == "AT2"
    assert provider.count == 2


async def test_inside_the_leeway_async_callers_get_the_old_token(
    clock: FakeClock, provider: FakeProvider
) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME - LEEWAY / 2)
    provider.agate = asyncio.Event()
    provider.entered.clear()
    leader = asyncio.create_task(cache.aaccess_token())
    await spin_until(provider.entered.is_set)
    assert [await cache.aaccess_token() for _ in range(10)] == ["AT1"] * 10
    assert not leader.done()
    provider.agate.set()
    assert await leader == "AT2"
    assert await cache.aaccess_token() == "AT2"
    assert provider.count == 2


async def test_sync_call_on_the_event_loop_never_blocks_it(clock: FakeClock, provider: FakeProvider) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME - LEEWAY / 2)
    provider.agate = asyncio.Event()
    provider.entered.clear()
    # A sync call from a coroutine (pyFirecREST does this): old token now, refresh in a task.
    assert cache.access_token() == "AT1"
    await spin_until(provider.entered.is_set)
    assert provider.calls[-1][0] == "async"
    assert cache.access_token() == "AT1"
    provider.agate.set()
    await spin_until(lambda: cache.current is not None and cache.current.access_token == "AT2")
    assert cache.access_token() == "AT2"
    assert provider.count == 2


async def test_sync_call_on_the_loop_with_an_expired_token_during_an_async_refresh(
    clock: FakeClock, provider: FakeProvider
) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME + 1)
    provider.agate = asyncio.Event()
    provider.entered.clear()
    leader = asyncio.create_task(cache.aaccess_token())
    await spin_until(provider.entered.is_set)
    # Waiting here would deadlock the loop that runs the refresh: a clear error instead.
    with pytest.raises(KeyturnError, match="aget_access_token"):
        cache.access_token()
    provider.agate.set()
    assert await leader == "AT2"


# -- failures ---------------------------------------------------------------------------------------


def test_failed_refresh_raises_to_every_waiter_and_leaves_the_cache_as_it_was(
    clock: FakeClock, provider: FakeProvider
) -> None:
    store = MemoryStore()
    cache = primed(clock, provider, store=store)
    before = cache.current
    clock.advance(LIFETIME + 1)
    provider.close_gate()
    provider.errors.append(InvalidClient("invalid_client", "bad secret", status=401))
    clock.forget_readers()
    threads, results = run_threads(cache.access_token, 8)
    assert provider.entered.wait(WAIT)
    clock.wait_for_readers(t.ident for t in threads)
    provider.gate.set()
    join_all(threads)
    assert len(results) == 8
    assert all(type(result) is InvalidClient for result in results)
    assert all(result.error_description == "bad secret" for result in results)
    assert provider.count == 2
    assert cache.current is before
    assert store.load("k") is before
    # The next call tries again, with the same previous token.
    assert cache.access_token() == "AT3"
    assert provider.count == 3
    assert provider.calls[2][1] is not None and provider.calls[2][1].refresh_token == "RT1"


async def test_failed_async_refresh_raises_to_every_task(clock: FakeClock, provider: FakeProvider) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME + 1)
    provider.agate = asyncio.Event()
    provider.entered.clear()
    provider.errors.append(TransportError("could not connect", url="https://as.example/token"))
    clock.forget_readers()
    tasks = [asyncio.create_task(cache.aaccess_token()) for _ in range(10)]
    await spin_until(lambda: provider.entered.is_set() and clock.has_read(tasks))
    provider.agate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(type(result) is TransportError for result in results)
    assert provider.count == 2
    assert await cache.aaccess_token() == "AT3"


def test_failed_refresh_of_a_still_valid_token_serves_it_and_backs_off(
    clock: FakeClock, provider: FakeProvider, caplog: pytest.LogCaptureFixture, mode: Mode
) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME - LEEWAY / 2)
    provider.errors.append(TransportError("could not connect"))
    with caplog.at_level(logging.WARNING, logger="keyturn.cache"):
        assert mode.access_token(cache) == "AT1"
    assert provider.count == 2
    warnings = [r for r in caplog.records if r.name == "keyturn.cache" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "AT1" not in caplog.text
    # Backing off: no request per call while the provider is unwell.
    assert [mode.access_token(cache) for _ in range(50)] == ["AT1"] * 50
    clock.advance(1.5)
    assert mode.access_token(cache) == "AT1"
    assert provider.count == 2
    # A second failure doubles the pause.
    clock.advance(1)
    provider.errors.append(TransportError("could not connect"))
    assert mode.access_token(cache) == "AT1"
    assert provider.count == 3
    clock.advance(3.5)
    assert mode.access_token(cache) == "AT1"
    assert provider.count == 3
    clock.advance(1)
    assert mode.access_token(cache) == "AT4"
    assert provider.count == 4


def test_backoff_never_serves_a_token_past_its_expiry(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME - 1)
    provider.errors.append(TransportError("down"))
    assert mode.access_token(cache) == "AT1"
    clock.advance(1)  # expired now, although the 2 s backoff has not passed
    provider.errors.append(TransportError("still down"))
    with pytest.raises(TransportError):
        mode.access_token(cache)


def test_invalid_grant_recovers_a_refresh_token_rotated_by_another_process(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    store = MemoryStore()
    cache = primed(clock, provider, store=store)
    clock.advance(LIFETIME + 1)
    rotated = Token(access_token="OTHER", expires_at=clock.wall() + LIFETIME, issued_at=clock.wall(),
                    refresh_token="RT-other")

    def fetch_that_loses_the_race(previous: Token | None, keeper: Any = None) -> Token:
        # Another process, not sharing our lock, rotated RT1 a moment ago.
        store.save("k", rotated)
        raise InvalidGrant("invalid_grant", "refresh token already used", status=400)

    replace_fetch(cache, fetch_that_loses_the_race)
    assert mode.access_token(cache) == "OTHER"
    assert cache.current is rotated


def test_invalid_grant_without_a_newer_refresh_token_is_raised(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    store = MemoryStore()
    cache = primed(clock, provider, store=store)
    clock.advance(LIFETIME + 1)
    provider.errors.append(InvalidGrant("invalid_grant", "revoked"))
    with pytest.raises(InvalidGrant, match="revoked"):
        mode.access_token(cache)
    assert provider.count == 2
    # The refused refresh token is dropped, so that nobody sends it again.
    stored = store.load("k")
    assert stored is not None and stored.refresh_token is None


def test_kept_refresh_token_when_the_server_does_not_rotate(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME + 1)
    replace_fetch(cache, lambda previous, keeper=None: Token(
        access_token="AT-norotate", expires_at=clock.wall() + 60, issued_at=clock.wall()))
    assert mode.token(cache).refresh_token == "RT1"


# -- short-lived tokens, no store --------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.1])
def test_short_lived_tokens_do_not_cause_a_fetch_per_call(
    clock: FakeClock, jitter: float, mode: Mode
) -> None:
    provider = FakeProvider(clock, lifetime=30)  # shorter than the 60 s leeway
    cache = make_cache(clock, provider, jitter=jitter)
    assert {mode.access_token(cache) for _ in range(100)} == {"AT1"}
    clock.advance(13)  # the leeway is capped at 15 s, minus at most 10 % jitter
    assert {mode.access_token(cache) for _ in range(100)} == {"AT1"}
    assert provider.count == 1
    clock.advance(2)
    assert mode.access_token(cache) == "AT2"
    assert provider.count == 2


def test_store_none_fetches_every_call(clock: FakeClock, provider: FakeProvider, mode: Mode) -> None:
    cache = make_cache(clock, provider, store=None, seed=Token.refresh_only("RT0"))
    assert [mode.access_token(cache) for _ in range(3)] == ["AT1", "AT2", "AT3"]
    previous = [call[1] for call in provider.calls]
    assert [p.refresh_token if p else None for p in previous] == ["RT0", "RT1", "RT2"]
    assert cache.current is None


def test_store_none_still_single_flight(clock: FakeClock, provider: FakeProvider) -> None:
    cache = make_cache(clock, provider, store=None)
    provider.close_gate()
    threads, results = run_threads(cache.access_token, 8)
    assert provider.entered.wait(WAIT)
    clock.wait_for_readers(t.ident for t in threads)
    provider.gate.set()
    join_all(threads)
    assert results == ["AT1"] * 8
    assert provider.count == 1


# -- invalidate -------------------------------------------------------------------------------------------


def test_invalidate_with_a_stale_token_is_a_no_op(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    store = MemoryStore()
    cache = primed(clock, provider, store=store)
    stored = store.load("k")
    mode.invalidate(cache, "AT0-some-older-token")
    assert store.load("k") is stored
    assert mode.access_token(cache) == "AT1"
    assert provider.count == 1


def test_invalidate_the_current_token_forces_one_refresh(
    clock: FakeClock, provider: FakeProvider, mode: Mode
) -> None:
    store = MemoryStore()
    cache = primed(clock, provider, store=store)
    for _ in range(5):  # fifty 401s for the same token cause one refresh, not fifty
        mode.invalidate(cache, "AT1")
    stored = store.load("k")
    assert stored is not None and stored.refresh_token == "RT1"
    assert stored.expires_at is not None and stored.expires_at <= clock.wall()
    assert [mode.access_token(cache) for _ in range(5)] == ["AT2"] * 5
    assert provider.count == 2
    assert provider.calls[1][1] is not None and provider.calls[1][1].refresh_token == "RT1"
    mode.invalidate(cache, "AT1")  # a late 401 for the old token
    assert mode.access_token(cache) == "AT2"
    assert provider.count == 2


class SignallingStore(MemoryStore):
    """A MemoryStore whose lock() says when someone starts waiting for a key's lock."""

    def __init__(self) -> None:
        super().__init__()
        self.lock_requested = threading.Event()

    def lock(self, key: str) -> Any:
        self.lock_requested.set()
        return super().lock(key)


def test_a_token_invalidated_during_a_failed_refresh_is_not_served_again(
    clock: FakeClock, provider: FakeProvider
) -> None:
    store = SignallingStore()
    cache = primed(clock, provider, store=store)
    clock.advance(LIFETIME - LEEWAY / 2)  # due, still valid
    provider.close_gate()
    provider.errors.append(TransportError("could not connect"))
    leader, leader_results = run_threads(cache.access_token, 1)
    assert provider.entered.wait(WAIT)
    # Meanwhile a request with AT1 got a 401: the server no longer takes AT1.
    store.lock_requested.clear()
    invalidator, _ = run_threads(lambda: cache.invalidate("AT1"), 1)
    assert store.lock_requested.wait(WAIT)  # AT1 is forgotten in memory; the store is locked
    provider.gate.set()
    join_all(leader + invalidator)
    assert type(leader_results[0]) is TransportError
    # The refused token must not come back as "still valid while the provider is unwell".
    assert cache.access_token() == "AT3"
    assert provider.count == 3


def test_invalidate_without_argument(clock: FakeClock, provider: FakeProvider, mode: Mode) -> None:
    cache = primed(clock, provider)
    mode.invalidate(cache)
    assert mode.access_token(cache) == "AT2"
    assert provider.count == 2


def test_forget_drops_everything(clock: FakeClock, provider: FakeProvider, mode: Mode) -> None:
    store = MemoryStore()
    cache = primed(clock, provider, store=store)
    forgotten = mode.forget(cache)
    assert forgotten is not None and forgotten.access_token == "AT1"
    assert store.load("k") is None
    assert mode.access_token(cache) == "AT2"
    assert provider.calls[1][1] is None


# -- sharing a store ----------------------------------------------------------------------------------


def test_two_caches_sharing_a_store_adopt_each_others_token(clock: FakeClock, mode: Mode) -> None:
    store = MemoryStore()
    one, two = FakeProvider(clock), FakeProvider(clock)
    first = make_cache(clock, one, store=store, key="shared")
    second = make_cache(clock, two, store=store, key="shared")
    assert mode.access_token(first) == "AT1"
    assert mode.access_token(second) == "AT1"
    assert (one.count, two.count) == (1, 0)
    clock.advance(LIFETIME - 10)
    assert mode.access_token(first) == "AT2"
    assert mode.access_token(second) == "AT2"
    assert (one.count, two.count) == (2, 0)
    # Another key is another token.
    third = make_cache(clock, FakeProvider(clock), store=store, key="other")
    assert mode.access_token(third) == "AT1"
    shared = store.load("shared")
    assert shared is not None and shared.access_token == "AT2"


# -- cancellation --------------------------------------------------------------------------------------


async def test_cancelled_waiters_do_not_cancel_the_refresh(clock: FakeClock, provider: FakeProvider) -> None:
    cache = primed(clock, provider)
    clock.advance(LIFETIME + 1)
    provider.agate = asyncio.Event()
    provider.entered.clear()
    clock.forget_readers()
    leader = asyncio.create_task(cache.aaccess_token())
    waiter = asyncio.create_task(cache.aaccess_token())
    other = asyncio.create_task(cache.aaccess_token())
    await spin_until(lambda: provider.entered.is_set() and clock.has_read([leader, waiter, other]))
    leader.cancel()  # the caller that started the refresh gives up
    waiter.cancel()  # and so does one that was waiting for it
    for task in (leader, waiter):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not other.done()
    provider.agate.set()
    assert await other == "AT2"
    assert await cache.aaccess_token() == "AT2"
    assert provider.count == 2


async def test_wait_for_timeout_does_not_cancel_the_refresh(clock: FakeClock, provider: FakeProvider) -> None:
    cache = make_cache(clock, provider)
    provider.agate = asyncio.Event()
    impatient = asyncio.create_task(asyncio.wait_for(cache.aaccess_token(), timeout=WAIT))
    patient = asyncio.create_task(cache.aaccess_token())
    await spin_until(provider.entered.is_set)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    provider.agate.set()
    assert await patient == "AT1"
    assert provider.count == 1


# -- wrapping ------------------------------------------------------------------------------------------


def _other_cache(clock: FakeClock, provider: FakeProvider) -> TokenCache:
    return make_cache(clock, provider)


@pytest.mark.parametrize("method", ["token", "access_token"])
def test_refuses_to_wrap_a_token_cache(
    clock: FakeClock, provider: FakeProvider, mode: Mode, method: str
) -> None:
    inner = _other_cache(clock, provider)
    # The other cache's token / access_token as fetch, or its atoken / aaccess_token as afetch.
    fetch: Callable[..., Token] = provider.fetch
    afetch: Callable[..., Awaitable[Token]] = provider.afetch
    if mode.is_async:
        afetch = getattr(inner, "a" + method)
    else:
        fetch = getattr(inner, method)
    with pytest.raises(TypeError, match="TokenCache"):
        TokenCache(key="k", fetch=fetch, afetch=afetch, store=None)


def test_refuses_to_wrap_itself_later(clock: FakeClock, provider: FakeProvider) -> None:
    cache = make_cache(clock, provider)
    with pytest.raises(TypeError):
        TokenCache(key="k", fetch=cache.token, afetch=cache.atoken, store=MemoryStore())
