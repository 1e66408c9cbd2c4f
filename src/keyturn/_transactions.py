"""The cache's transactions: refresh, invalidate, forget, each written once as steps.

Theory of operation
-------------------
A transaction is a generator of store operations and fetches (``(LOCK, None)``, ``(LOAD, None)``,
``(FETCH, keeper)``, ``(SAVE, token)``, ``(DELETE, None)``, ``(UNLOCK, None)``); the cache's sync
and async drivers (:meth:`keyturn.cache.TokenCache._drive_sync` and ``_drive_async``) carry them
out and send back the outcome, or throw in the error, so the rules below exist once for both
kinds of caller.

* **The refresh** (:meth:`Transactions.refreshing`), run by the one leader of a flight: under the
  store's lock (a file lock, a Redis lock) re-read the store — another process may have refreshed
  meanwhile — and adopt that token if it is fresh; otherwise fetch with the newest refresh token,
  save, and adopt. So N processes make one request, and a rotated refresh token is never used
  twice. A refresh token only this process holds (:attr:`keyturn._keeping.Keeping.unsaved`) is
  used, and saved, when the store still holds the one it replaced; what a server answered is kept
  by the fetch's keeper (:mod:`keyturn._keeping`) before anything else can fail. A leader that
  lost the lock to another holder (it let a Redis or a lease lock lapse) lets go of it and starts
  over, a few times: most likely it then adopts what that holder stored.
* **The invalidation** marks the stored access token expired (the refresh token stays) unless the
  cache already holds another one: fifty requests that got a 401 together cause one refresh.
* **The forgetting** deletes the stored token and returns the newest one forgotten, for a logout
  to revoke.
* **Adopting** a token makes it the cache's entry in memory with its two deadlines on the
  monotonic clock (:class:`Entry`); with ``store=None`` it only becomes the seed of the next fetch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._keeping import Keeper, Keeping, Run, successor
from .errors import InvalidGrant, StoreError
from .secret import Secret
from .stores.base import LockLost, StoreLock
from .token import Token, monotonic_deadlines

if TYPE_CHECKING:
    from .cache import TokenCache

__all__ = ["DELETE", "FETCH", "LOAD", "LOCK", "SAVE", "UNLOCK", "Entry", "Op", "Steps",
           "Transactions"]

# The cache's logger: a refresh that could not save is the cache's to report.
log = logging.getLogger("keyturn.cache")

# Operations of a transaction; the drivers carry them out.
LOCK: Final = "lock"
LOAD: Final = "load"
FETCH: Final = "fetch"
SAVE: Final = "save"
DELETE: Final = "delete"
UNLOCK: Final = "unlock"  # release the lock the transaction holds, to start over
Op = tuple[str, Any]
R = TypeVar("R")
#: A transaction's steps (store operations and fetches) and its result, run by either driver.
Steps = Generator[Op, Any, R]

#: How often a leader starts its refresh over after losing the lock to another holder.
LOCK_LOST_RETRIES: Final = 3


class Entry:
    """The token in memory and its monotonic deadlines."""

    __slots__ = ("access_token", "expires_at", "refresh_at", "token")

    def __init__(self, token: Token, refresh_at: float, expires_at: float) -> None:
        self.token = token
        self.access_token = token.access_token
        self.refresh_at = refresh_at
        self.expires_at = expires_at


class Transactions:
    """The steps of one cache's transactions (see the module's docstring); ``cache`` gives them
    the entry in memory and the monotonic clock, ``keeping`` the rest of what the cache holds."""

    __slots__ = ("_jitter", "_leeway", "_wall", "keeping")

    def __init__(self, keeping: Keeping, *, leeway: float, jitter: float,
                 wall: Callable[[], float]) -> None:
        self.keeping = keeping
        self._leeway = leeway
        self._jitter = jitter
        self._wall = wall

    # -- adopting a token ----------------------------------------------------------------------------

    def _fresh(self, cache: TokenCache, token: Token) -> Entry | None:
        """An entry for ``token`` if it need not be refreshed yet (jitter not applied here)."""
        if not token.access_token:
            return None
        deadlines = monotonic_deadlines(token, wall_now=self._wall(), mono_now=cache.clock(),
                                        leeway=self._leeway, jitter=0.0)
        if cache.clock() >= deadlines.refresh_at:
            return None
        return self._adopt(cache, token)

    def _newer(self, cache: TokenCache, stored: Token | None, entry: Entry | None) -> Entry | None:
        """An entry for the stored token if it is fresh and not the one we already hold."""
        if stored is None or (entry is not None and stored.access_token == entry.access_token):
            return None
        return self._fresh(cache, stored)

    def _adopt(self, cache: TokenCache, token: Token) -> Entry:
        deadlines = monotonic_deadlines(token, wall_now=self._wall(), mono_now=cache.clock(),
                                        leeway=self._leeway, jitter=self._jitter)
        entry = Entry(token, deadlines.refresh_at, deadlines.expires_at)
        if self.keeping.durable:
            cache.entry = entry
        else:
            self.keeping.seed = token
        return entry

    # -- the refresh ---------------------------------------------------------------------------------

    def refreshing(self, cache: TokenCache, entry: Entry | None, run: Run) -> Steps[Entry | None]:
        """:meth:`refresh`, started over after a LockLost, up to :data:`LOCK_LOST_RETRIES` times."""
        for attempt in range(LOCK_LOST_RETRIES):
            try:
                return (yield from self.refresh(cache, entry, run))
            except LockLost:
                # Another holder took over a lock this one let lapse: start over, and most
                # likely adopt what it stored.
                if attempt == LOCK_LOST_RETRIES - 1:
                    raise
            yield (UNLOCK, None)
        raise AssertionError("unreachable")

    def refresh(self, cache: TokenCache, entry: Entry | None, run: Run) -> Steps[Entry | None]:
        """Adopt a fresh token another process stored, or, under the store's lock: re-read,
        adopt, or fetch, save and adopt."""
        keeping = self.keeping
        previous = entry.token if entry is not None else keeping.seed
        if keeping.store.shared:
            # A look without the lock first: when another process has just refreshed, a herd
            # adopts its token at once instead of queueing for the lock one process at a time.
            peeked = yield (LOAD, None)
            newer = self._newer(cache, peeked, entry)
            if newer is not None:
                return newer
        lock: StoreLock = yield (LOCK, None)
        stored = yield (LOAD, None)
        if stored is not None:
            newer = self._newer(cache, stored, entry)
            if newer is not None:
                keeping.unsaved = None
                return newer
            previous = stored
        spent: Secret[str] | None = None
        if keeping.unsaved is not None:
            unsaved, spent = keeping.unsaved
            stored_refresh = Secret(stored.refresh_token or "") if stored is not None else None
            if (stored_refresh == spent if spent is not None else stored is None) or (
                    stored_refresh == Secret(unsaved.refresh_token or "")):
                # The store still holds the refresh token this process spent (or, after a first
                # login it never took, nothing): the successor here in memory is the one to use —
                # and to save, now that the store may answer.
                previous = unsaved
                with contextlib.suppress(StoreError):
                    yield (SAVE, unsaved)
                    keeping.unsaved = None
            else:
                # Someone logged out, or stored a new login, meanwhile: that wins.
                keeping.unsaved, spent = None, None
        keeper = Keeper(keeping, lock, previous)
        run.keepers.append(keeper)
        try:
            token = yield (FETCH, keeper)
        except InvalidGrant:
            # A refresh token another holder rotated under us (the store's lock lapsed, or was
            # per-process only): the newest one is in the store, not an error to report.
            latest = yield (LOAD, None)
            # A Secret, not the token: this frame re-raises the refusal (keyturn.secret).
            used = Secret(previous.refresh_token or "" if previous is not None else "")
            if latest is None or not latest.refresh_token or Secret(latest.refresh_token) in (
                    used, spent):
                if previous is not None and used:
                    # The server refused the refresh token for good: drop it (keeping a still-valid
                    # access token) so that nobody sends it again, then report the refusal.
                    yield (SAVE, previous.with_refresh_token(None))
                    keeping.seed = None
                raise
            fresh = self._fresh(cache, latest)
            if fresh is not None:
                return fresh
            previous = latest
            keeper = Keeper(keeping, lock, previous)
            run.keepers.append(keeper)
            token = yield (FETCH, keeper)
        if keeper.refresh is not False:  # a new login carries on nothing of the one before
            token = successor(token, previous)
        try:
            yield (SAVE, token)
        except LockLost as exc:
            if keeper.kept is None:
                raise
            # Another holder took over after this one stalled, and used what was kept: its token is
            # the newest now; this one's access token still works, from memory.
            keeping.unsaved = None
            log.warning("the refreshed token was not saved: %s", exc)
        except StoreError as exc:
            if keeper.kept is None:
                raise
            # The server answered and its refresh token was kept (in the store, or in memory when
            # the store failed then too): serve the new access token rather than fail the caller.
            if keeping.unsaved is not None:
                keeping.unsaved = (token, keeping.unsaved[1])
            log.warning("the refreshed token could not be saved (%s); its refresh token was kept "
                        "when the server answered, and this process uses the new access token",
                        exc.__class__.__name__)
        else:
            keeping.unsaved = None
        run.fetched = token
        return self._adopt(cache, token)

    # -- forgetting ----------------------------------------------------------------------------------

    def invalidation(self, cache: TokenCache, access_token: str | None) -> Steps[None]:
        """Forget the access token (keep the refresh token), in memory and in the store; with
        ``access_token``, only if it is still the one held."""
        keeping = self.keeping
        entry = cache.entry
        if access_token is not None and entry is not None and entry.access_token != access_token:
            return
        cache.entry = None
        if entry is not None:
            keeping.seed = Token.refresh_only(entry.token.refresh_token) if (
                entry.token.refresh_token) else keeping.seed
        if not keeping.durable:
            return
        yield (LOCK, None)
        stored = yield (LOAD, None)
        if stored is not None and (access_token is None or stored.access_token == access_token):
            yield (SAVE, _expired(stored))

    def forgetting(self, cache: TokenCache) -> Steps[Token | None]:
        """Forget everything, in memory and in the store; the result is the newest token forgotten."""
        keeping = self.keeping
        entry, seed, unsaved = cache.entry, keeping.seed, keeping.unsaved
        newest = entry.token if entry is not None else seed
        cache.entry = None
        keeping.seed = None
        keeping.unsaved = None
        if keeping.durable:
            yield (LOCK, None)
            newest = (yield (LOAD, None)) or newest
            yield (DELETE, None)
        # A refresh token only this process holds (its store failed) is newer than the store's.
        return unsaved[0] if unsaved is not None else newest


def _expired(token: Token) -> Token:
    """The token marked as expired, its refresh token kept."""
    return Token(
        access_token=token.access_token, token_type=token.token_type, expires_at=0.0,
        issued_at=0.0, scope=token.scope, refresh_token=token.refresh_token,
        id_token=token.id_token, refresh_expires_at=token.refresh_expires_at, extra=token.extra,
    )
