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
  and a rotated refresh token is never used twice.
* A failed refresh raises to every waiter and leaves the cache as it was. While the old token is
  still valid the leader serves it instead and tries again after a short backoff.
* **What a server gave is kept before anything else can fail.** The fetch gets a *keeper*
  (:class:`_Keeper`): immediately before a non-idempotent request (a rotating refresh token, a code)
  is sent, the transport has it confirm that this process still holds the lock (a Redis or a lease
  lock can be lost by a holder that stalled) and that the store can save; the moment the answer is
  parsed, the keeper saves it — the new refresh token, the identity already validated, the access
  token marked unusable until its checks pass — from a worker thread that neither Ctrl-C nor a
  task cancellation stops. Only then does the grant validate (an ID Token, a key fetch). A failure
  there leaves a store from which the next call refreshes, never a spent refresh token.
* ``on_refresh`` is called once the flight is over and the token saved, outside the lock: a callback
  may itself ask the source for a token. It gets the final token, or — when the refresh failed after
  the server answered — the token that was kept (its refresh token is what must be persisted).

The transaction is written once, as a generator of store and fetch operations, and run by a sync
and an async driver, so the rules above exist once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final, TypeVar

from .errors import InvalidGrant, KeyturnError, StoreError
from .paths import DEFAULT_LEEWAY
from .protocol.http import Keeper, Received
from .secret import Secret
from .stores.base import LockLost, Store, StoreLock
from .token import Token, fingerprint, monotonic_deadlines

__all__ = ["TokenCache"]

log = logging.getLogger("keyturn.cache")

Fetch = Callable[[Token | None, Keeper | None], Token]
AsyncFetch = Callable[[Token | None, Keeper | None], Awaitable[Token]]

# Operations of a transaction; the drivers carry them out.
_LOCK: Final = "lock"
_LOAD: Final = "load"
_FETCH: Final = "fetch"
_SAVE: Final = "save"
_DELETE: Final = "delete"
Op = tuple[str, Any]
R = TypeVar("R")
#: A transaction's steps (store operations and fetches) and its result, run by either driver.
Steps = Generator[Op, Any, R]
Transaction = Steps["_Entry | None"]

#: After a failed refresh while the old token is still valid, wait this long before trying again.
FAILURE_BACKOFF: Final = (2.0, 60.0)
#: How often a leader starts its transaction over after losing the lock to another holder.
LOCK_LOST_RETRIES: Final = 3
#: Pauses between tries at saving what a server answered (the last one is not slept).
KEEP_RETRY_DELAYS: Final = (0.1, 0.4, 0.0)


def successor(token: Token, previous: Token | None) -> Token:
    """``token`` carrying the refresh token to use next."""
    if previous is not None and token.refresh_token is None and previous.refresh_token:
        # RFC 6749 §6: the server "MAY issue a new refresh token"; when it does not, the old
        # one stays valid and must be kept.
        return token.with_refresh_token(previous.refresh_token)
    return token


def pending(received: Received, previous: Token | None) -> Token:
    """What is kept the moment a server answered, before the answer is checked: the new refresh
    token and no usable access token — until the checks pass nobody may use it; a refresh is the
    way on. A refresh's answer also carries on what it refreshed (``previous``): the identity
    validated before (its ID Token and claims), and its refresh token when the server did not
    rotate. A new login carries on nothing."""
    token = received.token
    before = previous if received.refresh else None
    identity = before if before is not None and before.claims else None
    return Token(
        access_token="", token_type=token.token_type, expires_at=0.0, issued_at=token.issued_at,
        scope=token.scope, refresh_token=successor(token, before).refresh_token,
        id_token=identity.id_token if identity is not None else None,
        refresh_expires_at=token.refresh_expires_at,
        extra={"id_token_claims": identity.claims} if identity is not None else {},
    )


class _Keeper:
    """Handed to a fetch by the transaction (see the module's docstring); used by the transport
    from a worker thread, under the lock the transaction holds."""

    __slots__ = ("_cache", "_lock", "_prepared", "kept", "previous", "refresh")

    def __init__(self, cache: TokenCache, lock: StoreLock, previous: Token | None) -> None:
        self._cache = cache
        self._lock = lock
        self._prepared = False
        self.previous = previous
        #: The token saved by :meth:`keep` (None until then, or when there was nothing to save).
        self.kept: Token | None = None
        #: Whether the last answer kept was a refresh's (None: nothing was handed over).
        self.refresh: bool | None = None

    def confirm(self) -> None:
        self._lock.confirm()
        if self._cache._keep and not self._prepared:
            self._cache.store.prepare_save(self._cache.key)
            self._prepared = True

    def keep(self, received: Received) -> None:
        self.refresh = received.refresh
        if not received.token.refresh_token:
            # No new refresh token: nothing that cannot be had again (a server that does not
            # rotate leaves the stored one valid).
            return
        kept = pending(received, self.previous)
        # Known before the save is tried: whatever happens next, the leader holds what the server
        # gave and will not throw it away.
        self.kept = kept
        if self._cache._keep:
            self._cache._save_kept(kept, self.previous)
        else:
            self._cache._seed = kept  # store=None: memory is the only place there is


class _Run:
    """One leader's refresh: the token this process fetched, and what its keepers kept."""

    __slots__ = ("fetched", "keepers")

    def __init__(self) -> None:
        self.fetched: Token | None = None
        self.keepers: list[_Keeper] = []

    @property
    def kept(self) -> Token | None:
        for keeper in reversed(self.keepers):
            if keeper.kept is not None:
                return keeper.kept
        return None


class _Entry:
    """The token in memory and its monotonic deadlines."""

    __slots__ = ("access_token", "expires_at", "refresh_at", "token")

    def __init__(self, token: Token, refresh_at: float, expires_at: float) -> None:
        self.token = token
        self.access_token = token.access_token
        self.refresh_at = refresh_at
        self.expires_at = expires_at


class _Flight:
    """One refresh in progress; its future gives the result to every waiter."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.future: concurrent.futures.Future[Token] = concurrent.futures.Future()
        # Running futures cannot be cancelled: a waiter that gives up never cancels the flight.
        self.future.set_running_or_notify_cancel()
        self.loop = loop


class _NullStore(Store):
    """``store=None``: nothing is kept, every call fetches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def load(self, key: str) -> Token | None:
        return None

    def save(self, key: str, token: Token) -> None:
        return None

    def delete(self, key: str) -> None:
        return None

    def lock(self, key: str) -> StoreLock:
        from .stores.base import LocalLock

        return LocalLock(self._lock)


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
        self._keep = store is not None
        self.store: Store = store if store is not None else _NullStore()
        self._seed = seed
        self._leeway = leeway
        self._jitter = jitter
        #: The monotonic clock, and the token in memory with its deadlines: read by the fast paths
        #: (here and in :meth:`keyturn.sources.base.Source.aget_access_token`) without a call.
        self.clock = clock
        self._wall = wall
        self.entry: _Entry | None = None
        self._mutex = threading.Lock()
        self._flight: _Flight | None = None
        self._failures = 0
        self._background: set[asyncio.Task[Token]] = set()
        self._on_refresh = on_refresh
        #: A refreshed token the store could not take, and the refresh token it replaced.
        self._unsaved: tuple[Token, Secret[str] | None] | None = None
        #: Set while on_refresh runs in this thread: a token it asks for starts no new refresh.
        self._notifying = threading.local()

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

    def _still_valid(self, entry: _Entry | None, now: float) -> bool:
        return entry is not None and bool(entry.access_token) and now < entry.expires_at

    def token(self) -> Token:
        """The current token, refreshed if due. Blocks only while no valid token exists."""
        entry = self.entry
        now = self.clock()
        if entry is not None and now < entry.refresh_at:
            return entry.token
        self._refuse_nested_refresh()
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
        run = _Run()
        try:
            for attempt in range(LOCK_LOST_RETRIES):
                try:
                    result = self._drive_sync(self._transaction(entry, run))
                    break
                except LockLost:
                    # Another holder took over a lock this one let lapse: start over, and most
                    # likely adopt what it stored.
                    if attempt == LOCK_LOST_RETRIES - 1:
                        raise
        except BaseException as exc:
            return self._failed(flight, entry, exc, run)
        return self._succeeded(flight, result, run)

    async def atoken(self) -> Token:
        """The current token, refreshed if due, without blocking the event loop."""
        entry = self.entry
        now = self.clock()
        if entry is not None and now < entry.refresh_at:
            return entry.token
        self._refuse_nested_refresh()
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

    async def _lead_async(self, flight: _Flight, entry: _Entry | None) -> Token:
        run = _Run()
        try:
            for attempt in range(LOCK_LOST_RETRIES):
                try:
                    result = await self._drive_async(self._transaction(entry, run))
                    break
                except LockLost:
                    if attempt == LOCK_LOST_RETRIES - 1:
                        raise
        except BaseException as exc:
            return self._failed(flight, entry, exc, run)
        return self._succeeded(flight, result, run)

    def _succeeded(self, flight: _Flight, entry: _Entry | None, run: _Run) -> Token:
        assert entry is not None
        self._failures = 0
        with self._mutex:
            self._flight = None
        flight.future.set_result(entry.token)
        if run.fetched is not None:
            self._notify(run.fetched)
        return entry.token

    def _notify(self, token: Token) -> None:
        """``on_refresh(token)``, after the flight and outside the lock; its failure is logged."""
        if self._on_refresh is None:
            return
        self._notifying.active = True
        try:
            self._on_refresh(token)
        except Exception as exc:
            log.error("on_refresh callback failed (%s); the token is kept in the store",
                      exc.__class__.__name__)
        finally:
            self._notifying.active = False

    def _refuse_nested_refresh(self) -> None:
        """A token asked for by on_refresh may not start a refresh: after a failed one, that
        would refresh, fail and call on_refresh again, without end."""
        if getattr(self._notifying, "active", False):
            raise KeyturnError(
                "on_refresh asked for a token that needs a refresh: it is given the token; do "
                "not call get_access_token() from it while no valid token exists"
            )

    def _failed(self, flight: _Flight, entry: _Entry | None, exc: BaseException,
                run: _Run) -> Token:
        kept = run.kept if run.fetched is None else None
        try:
            return self._failed_flight(flight, entry, exc)
        finally:
            if kept is not None:
                # The server answered, then something failed: what was kept is what to persist.
                self._notify(kept)

    def _failed_flight(self, flight: _Flight, entry: _Entry | None, exc: BaseException) -> Token:
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
            self.entry = _Entry(entry.token, min(now + delay, entry.expires_at), entry.expires_at)
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

    # -- what a server gave, saved ---------------------------------------------------------------------

    def _save_kept(self, token: Token, previous: Token | None) -> None:
        """Save ``token`` now, trying again briefly (a Redis that dropped a connection, an NFS
        hiccup); if the store still fails, this process holds the only copy (``_unsaved``): it is
        served from memory and saved, and used, at the next transaction."""
        error: StoreError | None = None
        for delay in KEEP_RETRY_DELAYS:
            try:
                self.store.save(self.key, token)
            except LockLost as exc:
                error = exc  # another holder took over: trying again cannot help
                break
            except StoreError as exc:
                error = exc
                time.sleep(delay)  # in the transport's worker thread, never on an event loop
                continue
            self._unsaved = None
            return
        # A Secret, not the token: this frame may be in a traceback rendered with its locals.
        spent = Secret(previous.refresh_token) if previous is not None and previous.refresh_token \
            else None
        self._unsaved = (token, spent)
        log.error("a refreshed token could not be saved (%s: %s); this process holds its refresh "
                  "token and saves it at its next refresh", type(error).__name__, error)

    # -- the transaction, written once ----------------------------------------------------------------

    def _fresh(self, token: Token) -> _Entry | None:
        """An entry for ``token`` if it need not be refreshed yet (jitter not applied here)."""
        if not token.access_token:
            return None
        deadlines = monotonic_deadlines(token, wall_now=self._wall(), mono_now=self.clock(),
                                        leeway=self._leeway, jitter=0.0)
        if self.clock() >= deadlines.refresh_at:
            return None
        return self._adopt(token)

    def _newer(self, stored: Token | None, entry: _Entry | None) -> _Entry | None:
        """An entry for the stored token if it is fresh and not the one we already hold."""
        if stored is None or (entry is not None and stored.access_token == entry.access_token):
            return None
        return self._fresh(stored)

    def _adopt(self, token: Token) -> _Entry:
        deadlines = monotonic_deadlines(token, wall_now=self._wall(), mono_now=self.clock(),
                                        leeway=self._leeway, jitter=self._jitter)
        entry = _Entry(token, deadlines.refresh_at, deadlines.expires_at)
        if self._keep:
            self.entry = entry
        else:
            self._seed = token
        return entry

    def _transaction(self, entry: _Entry | None, run: _Run) -> Transaction:
        """Adopt a fresh token another process stored, or, under the store's lock: re-read,
        adopt, or fetch, save and adopt."""
        previous = entry.token if entry is not None else self._seed
        if self.store.shared:
            # A look without the lock first: when another process has just refreshed, a herd
            # adopts its token at once instead of queueing for the lock one process at a time.
            peeked = yield (_LOAD, None)
            newer = self._newer(peeked, entry)
            if newer is not None:
                return newer
        lock: StoreLock = yield (_LOCK, None)
        stored = yield (_LOAD, None)
        if stored is not None:
            newer = self._newer(stored, entry)
            if newer is not None:
                self._unsaved = None
                return newer
            previous = stored
        spent: Secret[str] | None = None
        if self._unsaved is not None:
            unsaved, spent = self._unsaved
            stored_refresh = Secret(stored.refresh_token or "") if stored is not None else None
            if (stored_refresh == spent if spent is not None else stored is None) or (
                    stored_refresh == Secret(unsaved.refresh_token or "")):
                # The store still holds the refresh token this process spent (or, after a first
                # login it never took, nothing): the successor here in memory is the one to use —
                # and to save, now that the store may answer.
                previous = unsaved
                with contextlib.suppress(StoreError):
                    yield (_SAVE, unsaved)
                    self._unsaved = None
            else:
                # Someone logged out, or stored a new login, meanwhile: that wins.
                self._unsaved, spent = None, None
        keeper = _Keeper(self, lock, previous)
        run.keepers.append(keeper)
        try:
            token = yield (_FETCH, keeper)
        except InvalidGrant:
            # A refresh token another holder rotated under us (the store's lock lapsed, or was
            # per-process only): the newest one is in the store, not an error to report.
            latest = yield (_LOAD, None)
            # A Secret, not the token: this frame re-raises the refusal (keyturn.secret).
            used = Secret(previous.refresh_token or "" if previous is not None else "")
            if latest is None or not latest.refresh_token or Secret(latest.refresh_token) in (
                    used, spent):
                if previous is not None and used:
                    # The server refused the refresh token for good: drop it (keeping a still-valid
                    # access token) so that nobody sends it again, then report the refusal.
                    yield (_SAVE, previous.with_refresh_token(None))
                    self._seed = None
                raise
            fresh = self._fresh(latest)
            if fresh is not None:
                return fresh
            previous = latest
            keeper = _Keeper(self, lock, previous)
            run.keepers.append(keeper)
            token = yield (_FETCH, keeper)
        if keeper.refresh is not False:  # a new login carries on nothing of the one before
            token = successor(token, previous)
        try:
            yield (_SAVE, token)
        except LockLost as exc:
            if keeper.kept is None:
                raise
            # Another holder took over after this one stalled, and used what was kept: its token is
            # the newest now; this one's access token still works, from memory.
            self._unsaved = None
            log.warning("the refreshed token was not saved: %s", exc)
        except StoreError as exc:
            if keeper.kept is None:
                raise
            # The server answered and its refresh token was kept (in the store, or in memory when
            # the store failed then too): serve the new access token rather than fail the caller.
            if self._unsaved is not None:
                self._unsaved = (token, self._unsaved[1])
            log.warning("the refreshed token could not be saved (%s); its refresh token was kept "
                        "when the server answered, and this process uses the new access token",
                        exc.__class__.__name__)
        else:
            self._unsaved = None
        run.fetched = token
        return self._adopt(token)

    def _drive_sync(self, transaction: Steps[R]) -> R:
        store, key = self.store, self.key
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
                    if op == _LOCK:
                        reply = held.enter_context(store.lock(key))
                    elif op == _LOAD:
                        reply = store.load(key) if self._keep else None
                    elif op == _FETCH:
                        reply = self._fetch(arg.previous, arg)
                    elif op == _DELETE:
                        store.delete(key)
                    else:
                        assert arg is not None
                        store.save(key, arg)
                except Exception as exc:
                    error = exc

    async def _drive_async(self, transaction: Steps[R]) -> R:
        store, key = self.store, self.key
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
                    if op == _LOCK:
                        reply = await held.enter_async_context(store.lock(key))
                    elif op == _LOAD:
                        reply = await store.aload(key) if self._keep else None
                    elif op == _FETCH:
                        reply = await self._afetch(arg.previous, arg)
                    elif op == _DELETE:
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
        self._drive_sync(self._invalidation(access_token))

    async def ainvalidate(self, access_token: str | None = None) -> None:
        """:meth:`invalidate` without blocking the event loop, or a thread, on the store's lock."""
        await self._drive_async(self._invalidation(access_token))

    def _invalidation(self, access_token: str | None) -> Steps[None]:
        entry = self.entry
        if access_token is not None and entry is not None and entry.access_token != access_token:
            return
        self.entry = None
        if entry is not None:
            self._seed = Token.refresh_only(entry.token.refresh_token) if (
                entry.token.refresh_token) else self._seed
        if not self._keep:
            return
        yield (_LOCK, None)
        stored = yield (_LOAD, None)
        if stored is not None and (access_token is None or stored.access_token == access_token):
            yield (_SAVE, _expired(stored))

    def forget(self) -> Token | None:
        """Forget everything, in memory and in the store; return the newest token forgotten."""
        return self._drive_sync(self._forgetting())

    async def aforget(self) -> Token | None:
        """:meth:`forget` without blocking the event loop."""
        return await self._drive_async(self._forgetting())

    def _forgetting(self) -> Steps[Token | None]:
        entry, seed, unsaved = self.entry, self._seed, self._unsaved
        newest = entry.token if entry is not None else seed
        self.entry = None
        self._seed = None
        self._unsaved = None
        if self._keep:
            yield (_LOCK, None)
            newest = (yield (_LOAD, None)) or newest
            yield (_DELETE, None)
        # A refresh token only this process holds (its store failed) is newer than the store's.
        return unsaved[0] if unsaved is not None else newest

    def has_valid_token(self) -> bool:
        """True when a token that has not expired is cached (it may be due for a refresh)."""
        return self._still_valid(self.entry, self.clock())

    @property
    def current(self) -> Token | None:
        entry = self.entry
        return entry.token if entry is not None else None


def _expired(token: Token) -> Token:
    """The token marked as expired, its refresh token kept."""
    return Token(
        access_token=token.access_token, token_type=token.token_type, expires_at=0.0,
        issued_at=0.0, scope=token.scope, refresh_token=token.refresh_token,
        id_token=token.id_token, refresh_expires_at=token.refresh_expires_at, extra=token.extra,
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
