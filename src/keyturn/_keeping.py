"""What a token a server gave becomes: kept in the store before anything else can fail, then
handed to ``on_refresh``.

Theory of operation
-------------------
* **What a server gave is kept before anything else can fail.** The cache's refresh transaction
  (:mod:`keyturn._transactions`) hands each fetch a *keeper* (:class:`Keeper`): immediately before
  a non-idempotent request (a rotating refresh token, a code) is sent, the transport has it confirm
  that this process still holds the lock (a Redis or a lease lock can be lost by a holder that
  stalled) and that the store can save; the moment the answer is parsed, the keeper saves it — the
  new refresh token, the identity already validated, the access token marked unusable until its
  checks pass (:func:`pending`) — from a worker thread that neither Ctrl-C nor a task cancellation
  stops. Only then does the grant validate (an ID Token, a key fetch). A failure there leaves a
  store from which the next call refreshes, never a spent refresh token.
* **A store that cannot save does not lose it.** :meth:`Keeping.save_kept` tries again briefly; if
  the store still fails, this process holds the only copy (:attr:`Keeping.unsaved`): it is served
  from memory, and saved and used at the next transaction.
* ``on_refresh`` is called once the flight is over and the token saved, outside the lock
  (:meth:`Keeping.notify`): a callback may itself ask the source for a token. It gets the final
  token, or — when the refresh failed after the server answered — the token that was kept (its
  refresh token is what must be persisted). A token it asks for starts no refresh of its own
  (:meth:`Keeping.refuse_nested_refresh`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from .errors import KeyturnError, StoreError
from .protocol.http import Received
from .secret import Secret
from .stores.base import LocalLock, LockLost, Store, StoreLock
from .token import Token

__all__ = ["KEEP_RETRY_DELAYS", "Keeper", "Keeping", "NullStore", "Run", "pending", "successor"]

# The cache's logger: what happens to a refreshed token is the cache's to report.
log = logging.getLogger("keyturn.cache")

#: Pauses between tries at saving what a server answered (the last one is not slept).
KEEP_RETRY_DELAYS: Final = (0.1, 0.4, 0.0)


def successor(token: Token, previous: Token | None) -> Token:
    """``token`` carrying what to use next of the login it refreshed: its refresh token when the
    server did not rotate, and Globus Auth's ``other_tokens`` when the answer brought none."""
    if previous is None:
        return token
    if token.refresh_token is None and previous.refresh_token:
        # RFC 6749 §6: the server "MAY issue a new refresh token"; when it does not, the old
        # one stays valid and must be kept.
        token = token.with_refresh_token(previous.refresh_token)
    others = _other_records(previous)
    if others and not _other_records(token):
        # Globus Auth answers a refresh with the one resource server's token ("other_tokens":
        # [] or none): the others, each with its own refresh token, are still the login's.
        token = token.with_extra({**token.extra, "other_tokens": others})
    return token


def _other_records(token: Token) -> list[object]:
    """The token records of ``token``'s ``other_tokens`` (Token.other_tokens), [] when none."""
    records = token.extra.get("other_tokens")
    return list(records) if isinstance(records, list) else []


def pending(received: Received, previous: Token | None) -> Token:
    """What is kept the moment a server answered, before the answer is checked: the new refresh
    token and no usable access token — until the checks pass nobody may use it; a refresh is the
    way on. A refresh's answer also carries on what it refreshed (``previous``): the identity
    validated before (its ID Token and claims), its refresh token when the server did not
    rotate, and its other tokens (Globus Auth's ``other_tokens``, each with its own refresh
    token) when the answer has none. A new login carries on nothing, but keeps the other tokens
    of its own answer: those refresh tokens too exist nowhere else."""
    token = received.token
    before = previous if received.refresh else None
    identity = before if before is not None and before.claims else None
    extra: dict[str, object] = {"id_token_claims": identity.claims} if identity is not None \
        else {}
    carried = successor(token, before)
    others = _other_records(carried)
    if others:
        extra["other_tokens"] = others
    return Token(
        access_token="", token_type=token.token_type, expires_at=0.0, issued_at=token.issued_at,
        scope=token.scope, refresh_token=carried.refresh_token,
        id_token=identity.id_token if identity is not None else None,
        refresh_expires_at=token.refresh_expires_at,
        extra=extra,
    )


class NullStore(Store):
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
        return LocalLock(self._lock)


class Keeping:
    """What one cache holds of its key besides the token in memory, and where what a server gave
    goes: the store (``durable``), or, with ``store=None``, memory only (:attr:`seed`)."""

    __slots__ = ("_notifying", "_on_refresh", "durable", "key", "seed", "store", "unsaved")

    def __init__(self, *, key: str, store: Store | None, seed: Token | None,
                 on_refresh: Callable[[Token], None] | None) -> None:
        self.key = key
        #: False with ``store=None``: then memory is the only place there is.
        self.durable = store is not None
        self.store: Store = store if store is not None else NullStore()
        #: The token to refresh from when the store has none (a refresh token given by the
        #: caller; with ``store=None``, the last token fetched).
        self.seed = seed
        #: A refreshed token the store could not take, and the refresh token it replaced.
        self.unsaved: tuple[Token, Secret[str] | None] | None = None
        self._on_refresh = on_refresh
        #: Set while on_refresh runs in this thread: a token it asks for starts no new refresh.
        self._notifying = threading.local()

    def save_kept(self, token: Token, previous: Token | None) -> None:
        """Save ``token`` now, trying again briefly (a Redis that dropped a connection, an NFS
        hiccup); if the store still fails, this process holds the only copy (``unsaved``): it is
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
            self.unsaved = None
            return
        # A Secret, not the token: this frame may be in a traceback rendered with its locals.
        spent = Secret(previous.refresh_token) if previous is not None and previous.refresh_token \
            else None
        self.unsaved = (token, spent)
        log.error("a refreshed token could not be saved (%s: %s); this process holds its refresh "
                  "token and saves it at its next refresh", type(error).__name__, error)

    def notify(self, token: Token) -> None:
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

    def refuse_nested_refresh(self) -> None:
        """A token asked for by on_refresh may not start a refresh: after a failed one, that
        would refresh, fail and call on_refresh again, without end."""
        if getattr(self._notifying, "active", False):
            raise KeyturnError(
                "on_refresh asked for a token that needs a refresh: it is given the token; do "
                "not call get_access_token() from it while no valid token exists"
            )


class Keeper:
    """Handed to a fetch by the refresh transaction (see the module's docstring); used by the
    transport from a worker thread, under the lock the transaction holds."""

    __slots__ = ("_keeping", "_lock", "_prepared", "kept", "previous", "refresh")

    def __init__(self, keeping: Keeping, lock: StoreLock, previous: Token | None) -> None:
        self._keeping = keeping
        self._lock = lock
        self._prepared = False
        self.previous = previous
        #: The token saved by :meth:`keep` (None until then, or when there was nothing to save).
        self.kept: Token | None = None
        #: Whether the last answer kept was a refresh's (None: nothing was handed over).
        self.refresh: bool | None = None

    def confirm(self) -> None:
        self._lock.confirm()
        if self._keeping.durable and not self._prepared:
            self._keeping.store.prepare_save(self._keeping.key)
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
        if self._keeping.durable:
            self._keeping.save_kept(kept, self.previous)
        else:
            self._keeping.seed = kept  # store=None: memory is the only place there is


class Run:
    """One leader's refresh: the token this process fetched, and what its keepers kept."""

    __slots__ = ("fetched", "keepers")

    def __init__(self) -> None:
        self.fetched: Token | None = None
        self.keepers: list[Keeper] = []

    @property
    def kept(self) -> Token | None:
        for keeper in reversed(self.keepers):
            if keeper.kept is not None:
                return keeper.kept
        return None
