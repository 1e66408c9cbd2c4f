"""The cache: single-flight, refresh-ahead, for every grant and every store.

Theory of operation
-------------------
A :class:`TokenCache` wraps a grant's two fetch functions (sync and async, both driving the same
protocol flow) and a :class:`~keyturn.stores.base.Store`. It keeps the current token in memory with
two deadlines on the monotonic clock: ``refresh_at`` (expiry minus the leeway, minus a little
jitter) and ``expires_at``.

* Before ``refresh_at`` every caller gets the cached token: one attribute read and one clock read.
* After it, exactly one caller of this process becomes the *leader* of a refresh (a "flight"). The
  others either keep getting the old token, while it is still valid, or wait for the flight's
  result. Threads and asyncio tasks join the same flight; async callers wait without blocking the
  event loop.
* The leader runs one *transaction* under the store's lock (a file lock, a Redis lock): re-read the
  store — another process may have refreshed meanwhile — and adopt that token if it is fresh;
  otherwise fetch with the newest refresh token, save, and adopt. So N processes make one request,
  and a rotated refresh token is never used twice (:mod:`keyturn._transactions`).
* A failed refresh raises to every waiter and leaves the cache as it was. While the old token is
  still valid the leader serves it instead and tries again after a short backoff.
* **What a server gave is kept before anything else can fail**, by the fetch's *keeper*, and
  ``on_refresh`` is called once the flight is over and the token saved, outside the lock
  (:mod:`keyturn._keeping`).

The transactions (refresh, invalidate, forget) are written once, as generators of store and fetch
operations (:mod:`keyturn._transactions`), and run by this module's two drivers, a sync and an
async one — the cache's only sync/async twins — so the rules above exist once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from ._keeping import Keeping, Run
from ._keeping import pending as pending  # what a refresh keeps: importable from here, as before
from ._keeping import successor as successor
from ._transactions import DELETE, FETCH, LOAD, LOCK, UNLOCK, Entry, Steps, Transactions
from .errors import KeyturnError
from .paths import DEFAULT_LEEWAY
from .protocol.http import Keeper
from .stores.base import Store
from .token import Token, fingerprint

__all__ = ["TokenCache"]

log = logging.getLogger("keyturn.cache")

Fetch = Callable[[Token | None, Keeper | None], Token]
AsyncFetch = Callable[[Token | None, Keeper | None], Awaitable[Token]]
R = TypeVar("R")

#: After a failed refresh while the old token is still valid, wait this long before trying again.
FAILURE_BACKOFF: Final = (2.0, 60.0)


class _Flight:
    """One refresh in progress; its future gives the result to every waiter."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.future: concurrent.futures.Future[Token] = concurrent.futures.Future()
        # Running futures cannot be cancelled: a waiter that gives up never cancels the flight.
        self.future.set_running_or_notify_cancel()
        self.loop = loop


class TokenCache:
    """Serve a cached token until ``refresh_at``; then refresh once for all concurrent callers."""

    def __init__(
        self,
        *,
        key: str,
        fetch: Fetch,
        afetch: AsyncFetch,
        store: Store | None,
        seed: Token | None = None,
        leeway: float = DEFAULT_LEEWAY,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_refresh: Callable[[Token], None] | None = None,
    ) -> None:
        if any(isinstance(getattr(f, "__self__", None), TokenCache) for f in (fetch, afetch)):
            raise TypeError("a TokenCache cannot wrap another TokenCache")
        self.key = key
        self._fetch = fetch
        self._afetch = afetch
        #: What the cache holds besides the entry (the seed, a token the store could not take),
        #: where a server's answer is kept, and who is told of it (on_refresh).
        self._keeping = keeping = Keeping(key=key, store=store, seed=seed, on_refresh=on_refresh)
        self.store: Store = keeping.store
        self._transactions = Transactions(keeping, leeway=leeway, jitter=jitter, wall=wall)
        #: The monotonic clock, and the token in memory with its deadlines: read by the fast paths
        #: without a call, here and in :meth:`keyturn.sources.base.Source.aget_access_token` and
        #: :meth:`~keyturn.sources.base.Source.get_token`, which inline the one test
        #: ``entry is not None and clock() < entry.refresh_at`` (tests/unit/test_fast_paths.py
        #: holds them to the same boundary).
        self.clock = clock
        self.entry: Entry | None = None
        self._mutex = threading.Lock()
        self._flight: _Flight | None = None
        self._failures = 0
        self._background: set[asyncio.Task[Token]] = set()

    # -- the fast path -------------------------------------------------------------------------------

    def access_token(self) -> str:
        entry = self.entry
        if entry is not None and self.clock() < entry.refresh_at:
            return entry.access_token
        return self.token().access_token

    async def aaccess_token(self) -> str:
        entry = self.entry
        if entry is not None and self.clock() < entry.refresh_at:
            return entry.access_token
        return (await self.atoken()).access_token

    # -- joining or leading a flight -----------------------------------------------------------------

    def _join(self, loop: asyncio.AbstractEventLoop | None) -> tuple[_Flight, bool]:
        with self._mutex:
            if self._flight is not None:
                return self._flight, False
            self._flight = _Flight(loop)
            return self._flight, True

    def _still_valid(self, entry: Entry | None, now: float) -> bool:
        return entry is not None and bool(entry.access_token) and now < entry.expires_at

    def token(self) -> Token:
        """The current token, refreshed if due. Blocks only while no valid token exists."""
        entry = self.entry
        now = self.clock()
        if entry is not None and now < entry.refresh_at:
            return entry.token
        self._keeping.refuse_nested_refresh()
        loop = _running_loop()
        flight, leader = self._join(loop)
        if not leader:
            if entry is not None and self._still_valid(entry, now):
                return entry.token
            if flight.loop is not None and flight.loop is loop:
                raise KeyturnError(
                    "the token expired while an async refresh runs on this event loop; call "
                    "`await aget_access_token()` from async code"
                )
            return flight.future.result()
        if loop is not None and entry is not None and self._still_valid(entry, now):
            # A sync call on an event-loop thread (pyFirecREST's async client does this): refresh
            # in a task and serve the still-valid token now, so the loop is never blocked.
            flight.loop = loop
            task = loop.create_task(self._lead_async(flight, entry))
            # The loop keeps only a weak reference to tasks: hold this one until it is done.
            self._background.add(task)
            task.add_done_callback(self._background_done)
            return entry.token
        run = Run()
        try:
            result = self._drive_sync(self._transactions.refreshing(self, entry, run))
        except BaseException as exc:
            return self._failed(flight, entry, exc, run)
        return self._succeeded(flight, result, run)

    async def atoken(self) -> Token:
        """The current token, refreshed if due, without blocking the event loop."""
        entry = self.entry
        now = self.clock()
        if entry is not None and now < entry.refresh_at:
            return entry.token
        self._keeping.refuse_nested_refresh()
        loop = asyncio.get_running_loop()
        flight, leader = self._join(loop)
        if not leader:
            if entry is not None and self._still_valid(entry, now):
                return entry.token
            return await asyncio.shield(asyncio.wrap_future(flight.future))
        # The refresh runs in its own task: a caller that is cancelled while waiting does not
        # cancel the refresh that every other caller waits for.
        return await asyncio.shield(loop.create_task(self._lead_async(flight, entry)))

    def _background_done(self, task: asyncio.Task[Token]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its waiters got the error; a background refresh has nobody else to tell.
            log.warning("background token refresh failed (%s)",
                        type(task.exception()).__name__)

    async def _lead_async(self, flight: _Flight, entry: Entry | None) -> Token:
        run = Run()
        try:
            result = await self._drive_async(self._transactions.refreshing(self, entry, run))
        except BaseException as exc:
            return self._failed(flight, entry, exc, run)
        return self._succeeded(flight, result, run)

    def _succeeded(self, flight: _Flight, entry: Entry | None, run: Run) -> Token:
        assert entry is not None
        self._failures = 0
        with self._mutex:
            self._flight = None
        flight.future.set_result(entry.token)
        if run.fetched is not None:
            self._keeping.notify(run.fetched)
        return entry.token

    def _failed(self, flight: _Flight, entry: Entry | None, exc: BaseException,
                run: Run) -> Token:
        kept = run.kept if run.fetched is None else None
        try:
            return self._failed_flight(flight, entry, exc)
        finally:
            if kept is not None:
                # The server answered, then something failed: what was kept is what to persist.
                self._keeping.notify(kept)

    def _failed_flight(self, flight: _Flight, entry: Entry | None, exc: BaseException) -> Token:
        now = self.clock()
        # Unless invalidate() forgot it meanwhile (a server refused it with a 401): serve the
        # still-valid token while the provider is unwell; try again after a backoff that grows
        # with each failure but never reaches past the token's expiry.
        serve = (isinstance(exc, Exception) and entry is not None and self.entry is not None
                 and self._still_valid(entry, now))
        if serve:
            assert entry is not None
            self._failures += 1
            delay = min(FAILURE_BACKOFF[0] * 2 ** (self._failures - 1), FAILURE_BACKOFF[1])
            # Set before the flight ends, so no caller slips in between and skips the backoff.
            self.entry = Entry(entry.token, min(now + delay, entry.expires_at), entry.expires_at)
        with self._mutex:
            self._flight = None
        if serve:
            assert entry is not None
            log.warning("token refresh failed (%s); serving the cached token %s for up to %.0f s",
                        exc.__class__.__name__, fingerprint(entry.access_token),
                        entry.expires_at - now)
            flight.future.set_result(entry.token)
            return entry.token
        flight.future.set_exception(exc)
        raise exc

    # -- the two drivers, which carry out a transaction's steps (keyturn._transactions) -------------

    def _drive_sync(self, transaction: Steps[R]) -> R:
        store, key, durable = self.store, self.key, self._keeping.durable
        with contextlib.ExitStack() as held:
            reply: Any = None
            error: BaseException | None = None
            while True:
                try:
                    op, arg = transaction.throw(error) if error else transaction.send(reply)
                except StopIteration as stop:
                    result: R = stop.value
                    return result
                reply, error = None, None
                try:
                    if op == LOCK:
                        reply = held.enter_context(store.lock(key))
                    elif op == LOAD:
                        reply = store.load(key) if durable else None
                    elif op == FETCH:
                        reply = self._fetch(arg.previous, arg)
                    elif op == UNLOCK:
                        held.close()
                    elif op == DELETE:
                        store.delete(key)
                    else:
                        assert arg is not None
                        store.save(key, arg)
                except Exception as exc:
                    error = exc

    async def _drive_async(self, transaction: Steps[R]) -> R:
        store, key, durable = self.store, self.key, self._keeping.durable
        async with contextlib.AsyncExitStack() as held:
            reply: Any = None
            error: BaseException | None = None
            while True:
                try:
                    op, arg = transaction.throw(error) if error else transaction.send(reply)
                except StopIteration as stop:
                    result: R = stop.value
                    return result
                reply, error = None, None
                try:
                    if op == LOCK:
                        reply = await held.enter_async_context(store.lock(key))
                    elif op == LOAD:
                        reply = await store.aload(key) if durable else None
                    elif op == FETCH:
                        reply = await self._afetch(arg.previous, arg)
                    elif op == UNLOCK:
                        await held.aclose()
                    elif op == DELETE:
                        await store.adelete(key)
                    else:
                        assert arg is not None
                        # Runs to its end even if this task is cancelled (Store.asave): the lock
                        # is released only once the save is done.
                        await store.asave(key, arg)
                except Exception as exc:
                    error = exc

    # -- forgetting ----------------------------------------------------------------------------------

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget the access token (keep the refresh token), here and in the store.

        With ``access_token`` given (the one a server just refused), do nothing if the cache already
        holds another one: fifty requests that got a 401 together cause one refresh, not fifty.
        """
        self._drive_sync(self._transactions.invalidation(self, access_token))

    async def ainvalidate(self, access_token: str | None = None) -> None:
        """:meth:`invalidate` without blocking the event loop, or a thread, on the store's lock."""
        await self._drive_async(self._transactions.invalidation(self, access_token))

    def forget(self) -> Token | None:
        """Forget everything, in memory and in the store; return the newest token forgotten."""
        return self._drive_sync(self._transactions.forgetting(self))

    async def aforget(self) -> Token | None:
        """:meth:`forget` without blocking the event loop."""
        return await self._drive_async(self._transactions.forgetting(self))

    def has_valid_token(self) -> bool:
        """True when a token that has not expired is cached (it may be due for a refresh)."""
        return self._still_valid(self.entry, self.clock())

    @property
    def current(self) -> Token | None:
        entry = self.entry
        return entry.token if entry is not None else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
