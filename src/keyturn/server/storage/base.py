"""What the authorization server keeps, behind one small interface.

Every piece of state lives here, never only in one process's memory, so that several server
processes (replicas behind a load balancer) can share one store: a device code made on one is
approved on a second and redeemed on a third. Changes that must not race are single operations
of the interface (compare-and-set on a device grant's version, "mark this refresh token used if
it is not", an atomic counter), which SQLite does with a transaction and Redis with a Lua script
or WATCH. A redemption (rotating a refresh token, redeeming a device code) is one such operation
too: spending the old credential, storing the new refresh token (and, for a rotation, keeping
the answer for a retry) happen together or not at all, so a storage error never leaves a
spent credential whose tokens nobody received. Codes and refresh tokens are kept as SHA-256 hashes only.

A backend implements :class:`ServerStorage`; :class:`~.sqlite.SQLiteStorage` is the default.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import strictjson
from ...errors import StoreError
from ..device_flow import DeviceGrant, DeviceStatus

__all__ = ["Login", "RefreshRecord", "Replay", "ServerStorage", "grant_from_json", "grant_to_json",
           "live_logins"]


@dataclass(frozen=True)
class RefreshRecord:
    """One refresh token (by hash). Tokens rotated from one login form a *family*: reusing a
    rotated token revokes the whole family (OAuth 2.0 Security BCP §4.14.2)."""

    token_hash: str
    family_id: str
    client_id: str
    subject: str
    scope: tuple[str, ...]
    created_at: float
    expires_at: float
    auth_time: float | None = None
    used_at: float | None = None
    #: The person's claims at sign-in (name, email), for the id_tokens of later refreshes.
    claims: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Login:
    """One person's login at one client (a family of rotated refresh tokens) as an operator sees
    it (``keyturn serve admin logins``): never a token, nor a token's hash."""

    family_id: str
    client_id: str
    subject: str
    scope: tuple[str, ...]
    #: The sign-in (the approval on /device), else the family's first token.
    signed_in_at: float
    #: The newest token's issue: the last refresh, or the sign-in's redemption.
    last_used_at: float
    #: When the newest token expires, and with it the login unless it is refreshed.
    expires_at: float

    @classmethod
    def of(cls, newest: RefreshRecord, first_issued: float) -> Login:
        return cls(family_id=newest.family_id, client_id=newest.client_id,
                   subject=newest.subject, scope=newest.scope,
                   signed_in_at=newest.auth_time if newest.auth_time is not None else first_issued,
                   last_used_at=newest.created_at, expires_at=newest.expires_at)


def live_logins(records: Iterable[RefreshRecord], now: float,
                revoked: Callable[[str], bool]) -> list[Login]:
    """The logins these refresh tokens (of one subject) make up: by family, from its newest
    token, those neither expired nor revoked; the most recently used first."""
    newest: dict[str, RefreshRecord] = {}
    first: dict[str, float] = {}
    for record in records:
        held = newest.get(record.family_id)
        if held is None or record.created_at > held.created_at:
            newest[record.family_id] = record
        first[record.family_id] = min(first.get(record.family_id, record.created_at),
                                      record.created_at)
    return newest_first(Login.of(record, first[family]) for family, record in newest.items()
                        if record.expires_at > now and not revoked(family))


def newest_first(logins: Iterable[Login]) -> list[Login]:
    return sorted(logins, key=lambda login: (-login.last_used_at, login.family_id))


def login_to_json(login: Login) -> str:
    data = dict(vars(login))  # as refresh_to_json
    data["scope"] = list(login.scope)
    return json.dumps(data, separators=(",", ":"))


def login_from_json(text: str) -> Login:
    data = _record(text, "login")
    data["scope"] = tuple(data["scope"])
    return Login(**data)


@dataclass(frozen=True)
class Replay:
    """The answer one redemption gave, kept for a short grace (``Lifetimes.retry_grace``) so that
    a client retrying the identical request (its answer was lost) gets it again instead of a
    revocation. ``key`` names the credential redeemed (``"rt:"`` for a refresh token, ``"dc:"``
    for a device code, and its hash);
    ``sealed`` is the answer encrypted under a key only that credential gives (:mod:`..replay`):
    the store never holds the tokens readable."""

    key: str
    #: What makes a retry identical (the client and the parameters), hashed.
    fingerprint: str
    expires_at: float
    sealed: str = field(repr=False)
    family_id: str
    #: The hash of the refresh token the answer carried: once it has been used, the client has
    #: moved on and the old credential coming back is a reuse again.
    successor_hash: str | None = None


def replay_to_json(replay: Replay) -> str:
    # vars(), not asdict(): every field is a plain value, and asdict's deep copy costs more than
    # the rest of the encoding (these are written on every token request).
    return json.dumps(vars(replay), separators=(",", ":"))


def replay_from_json(text: str) -> Replay:
    return Replay(**_record(text, "retry answer"))


def grant_to_json(grant: DeviceGrant) -> str:
    data = dict(vars(grant))  # as replay_to_json; the two containers are converted here
    data["status"] = grant.status.value
    data["scope"] = list(grant.scope)
    data["extra"] = dict(grant.extra)
    return json.dumps(data, separators=(",", ":"))


def _record(text: str, what: str) -> dict[str, Any]:
    """A record this server wrote; :class:`StoreError` (a clean 500, logged) if it was damaged."""
    try:
        data = strictjson.loads(text, as_written=True)
    except strictjson.JsonError as exc:
        raise StoreError(f"a {what} record in the server's storage is damaged: {exc.reason}") \
            from None
    if not isinstance(data, dict):
        raise StoreError(f"a {what} record in the server's storage is damaged: not an object")
    return data


def grant_from_json(text: str) -> DeviceGrant:
    data = _record(text, "device grant")
    data["status"] = DeviceStatus(data["status"])
    data["scope"] = tuple(data["scope"])
    return DeviceGrant(**data)


def refresh_to_json(record: RefreshRecord) -> str:
    data = dict(vars(record))  # as grant_to_json
    data["scope"] = list(record.scope)
    data["claims"] = dict(record.claims)
    return json.dumps(data, separators=(",", ":"))


def refresh_from_json(text: str) -> RefreshRecord:
    data = _record(text, "refresh token")
    data["scope"] = tuple(data["scope"])
    return RefreshRecord(**data)


class ServerStorage(abc.ABC):
    """The server's state. Methods are synchronous and short (one round trip or transaction)."""

    #: Whether a call may wait on something outside this process (a SQLite write lock held by
    #: another process, a Redis server that stops answering): the endpoints then make their
    #: storage calls in the threadpool, so that one wait holds only the requests that need it,
    #: never the event loop and with it discovery, the JWKS and /health (review R19 P-H1/H2).
    may_wait: bool = True

    # -- device grants -----------------------------------------------------------------------------

    @abc.abstractmethod
    def create_device_grant(self, grant: DeviceGrant) -> bool:
        """Store a new grant; False if its user code is taken by a live grant (draw another)."""

    @abc.abstractmethod
    def device_grant(self, device_code_hash: str) -> DeviceGrant | None: ...

    @abc.abstractmethod
    def device_grant_by_user_code(self, user_code: str) -> DeviceGrant | None: ...

    @abc.abstractmethod
    def swap_device_grant(self, updated: DeviceGrant) -> bool:
        """Write ``updated`` if the stored grant still has ``updated.version - 1``; False if
        another request changed it first (read again and decide again)."""

    # -- refresh tokens and their families -----------------------------------------------------

    @abc.abstractmethod
    def add_refresh_token(self, record: RefreshRecord) -> None: ...

    @abc.abstractmethod
    def refresh_token(self, token_hash: str) -> RefreshRecord | None: ...

    @abc.abstractmethod
    def use_refresh_token(self, token_hash: str, now: float) -> bool:
        """Mark it used; True only for the first caller (rotation: a token works once)."""

    @abc.abstractmethod
    def rotate_refresh_token(self, token_hash: str, now: float, successor: RefreshRecord,
                             replay: Replay) -> bool:
        """In one atomic step: mark ``token_hash`` used, store ``successor`` and ``replay``.
        False, and nothing written, if the token is unknown or was already used."""

    @abc.abstractmethod
    def redeem_device_grant(self, updated: DeviceGrant, refresh: RefreshRecord | None,
                            replay: Replay | None = None) -> bool:
        """In one atomic step: :meth:`swap_device_grant` (the grant becomes CONSUMED), store the
        refresh token it issued (if any) and ``replay`` (the answer, for a retried poll). False,
        and nothing written, if another request changed the grant first."""

    @abc.abstractmethod
    def replay(self, key: str) -> Replay | None:
        """The answer kept under ``key`` (:attr:`Replay.key`), if it is still kept (the caller
        checks ``expires_at``: a backend may keep it a little longer)."""

    @abc.abstractmethod
    def revoke_family(self, family_id: str, until: float) -> None:
        """Every token of this login is dead (kept until ``until``, when all would have expired)."""

    @abc.abstractmethod
    def family_revoked(self, family_id: str) -> bool: ...

    @abc.abstractmethod
    def logins(self, subject: str, now: float) -> list[Login]:
        """The subject's live logins (:func:`live_logins`), for an operator: ``keyturn serve
        admin`` lists them and revokes one (:meth:`revoke_family`). Not on any request's path."""

    # -- revoked access tokens (RFC 7009), by jti --------------------------------------------------

    @abc.abstractmethod
    def revoke_jti(self, jti: str, until: float) -> None: ...

    @abc.abstractmethod
    def jti_revoked(self, jti: str) -> bool: ...

    # -- counters (rate limits) and settings (signing keys) ---------------------------------------

    @abc.abstractmethod
    def hit(self, key: str, window: int, now: float, amount: int = 1) -> int:
        """Count ``amount`` events under ``key`` in the fixed window of ``window`` seconds
        containing ``now``; returns the count so far in that window, these included (``amount=0``
        only reads it; a negative ``amount`` gives events back)."""

    @abc.abstractmethod
    def setting(self, name: str, make: Callable[[], str]) -> str:
        """The value stored under ``name``; if there is none, ``make()`` is stored and returned
        (the first of several racing replicas wins, and all get its value)."""

    @abc.abstractmethod
    def replace_setting(self, name: str, expected: str, value: str) -> bool:
        """Store ``value`` under ``name`` if it still holds ``expected``; False if another
        process changed it first (read again and decide again). Key rotation uses it."""

    # -- values taken once (an upstream sign-in's login, waiting for its callback) -------------

    @abc.abstractmethod
    def put_once(self, key: str, value: str, now: float, expires_at: float) -> bool:
        """Keep ``value`` under ``key`` until ``expires_at``; False (and nothing written) if an
        unexpired value is already kept there at ``now``."""

    @abc.abstractmethod
    def take_once(self, key: str, now: float) -> str | None:
        """The value kept under ``key``, removed in the same atomic step: of several replicas
        taking one key at once, one gets it and the others None. None too once it expired."""

    @abc.abstractmethod
    def peek_once(self, key: str, now: float) -> str | None:
        """The value kept under ``key`` (still unexpired), without taking it."""

    @abc.abstractmethod
    def purge(self, now: float) -> None:
        """Drop what has expired (housekeeping; correctness never depends on it)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise if the store cannot be reached (the health endpoint)."""

    def close(self) -> None:  # noqa: B027  (optional for backends)
        """Release connections."""
