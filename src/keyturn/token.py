"""The :class:`Token` value type and the arithmetic of refreshing ahead of expiry.

A token's expiry is kept as wall-clock seconds (``expires_at``) because it is shared with other
processes and hosts through stores. Inside one process, the cache converts it once to the monotonic
clock (:func:`monotonic_deadlines`) so that a wall-clock jump never makes a token look fresh or stale.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._tokenformat import authorization
from .errors import StoreError
from .paths import refresh_margin  # the fast path's rule too; still keyturn.token.refresh_margin

__all__ = ["Deadlines", "Token", "fingerprint", "monotonic_deadlines", "refresh_margin"]

#: Wire fields of a token response that :class:`Token` keeps as attributes.
_KNOWN = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token",
     "refresh_token_expires_in", "issued_token_type"}
)


def fingerprint(secret: str | None) -> str:
    """A short, non-reversible tag of a secret, for correlating log lines without logging it."""
    if not secret:
        return "-"
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and what came with it.

    ``expires_at`` and ``issued_at`` are wall-clock seconds since the epoch; ``expires_at`` is None
    when the server did not say (the token is then used until a 401 invalidates it). ``scope`` is
    the granted scope as a tuple, or None when the server did not say.
    """

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    expires_at: float | None = None
    issued_at: float = 0.0
    scope: tuple[str, ...] | None = None
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # authorization()'s value, rendered once. keyturn's own adapters read it directly on every
    # request (a method call would be a third of their hook's cost); everyone else calls
    # authorization().
    _authorization: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_authorization", authorization(self.token_type, self.access_token))

    def __repr__(self) -> str:
        expiry = "never" if self.expires_at is None else f"{self.expires_at:.0f}"
        return (
            f"Token(type={self.token_type!r}, access=sha256:{fingerprint(self.access_token)}, "
            f"expires_at={expiry}, scope={self.scope!r}, "
            f"refresh={'yes' if self.refresh_token else 'no'}, "
            f"id_token={'yes' if self.id_token else 'no'})"
        )

    def __reduce__(self) -> Any:
        # Pickles end up in caches, queues and core dumps; a token must go through a store instead.
        raise TypeError("a keyturn Token holds secrets and cannot be pickled; use a keyturn store")

    @property
    def lifetime(self) -> float | None:
        """Seconds between issue and expiry as the server stated them, or None."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - self.issued_at)

    def expires_in(self, now: float) -> float | None:
        """Seconds of validity left at wall-clock time ``now`` (negative once expired)."""
        return None if self.expires_at is None else self.expires_at - now

    def authorization(self) -> str:
        """The value of the ``Authorization`` request header that presents this token.

        The scheme is the token type the server gave (``bearer``, what many servers answer, is sent
        as RFC 6750's ``Bearer``; ``DPoP`` or ``MAC`` as given): the rule of
        :func:`keyturn._tokenformat.authorization`, by which ``keyturn token --header`` renders it
        too. Rendered once, when the token is made: every adapter sends it on every request.
        """
        return self._authorization

    @property
    def claims(self) -> dict[str, Any]:
        """The claims of the id_token, once validated and attached by an OpenID Connect source."""
        value = self.extra.get("id_token_claims")
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def other_tokens(self) -> tuple[Token, ...]:
        """The tokens for other resource servers that came in the same answer: Globus Auth's
        ``other_tokens``, one per resource server, each with its ``extra["resource_server"]``
        and its own refresh token. () when the answer had none.

        The parser checked them as token answers and keeps them in ``extra["other_tokens"]`` as
        token records (what a store keeps), so a saved login still has them. A refresh whose
        answer has none (Globus answers a refresh with ``"other_tokens": []``) carries the ones
        of the token it refreshed on, as it does the refresh token when the server does not
        rotate (:func:`keyturn._keeping.successor`); they are the tokens of that first answer,
        not refreshed themselves: each one's refresh token refreshes it."""
        records = self.extra.get("other_tokens")
        if not isinstance(records, list):
            return ()
        return tuple(Token.from_record(record) for record in records if isinstance(record, Mapping))

    def with_refresh_token(self, refresh_token: str | None) -> Token:
        """This token carrying ``refresh_token`` (servers that do not rotate omit it on refresh)."""
        return replace(self, refresh_token=refresh_token)

    def with_extra(self, extra: Mapping[str, Any]) -> Token:
        """This token with ``extra`` instead of its own (a refresh carrying Globus Auth's
        ``other_tokens`` on)."""
        return replace(self, extra=extra)

    # -- persistence: plain JSON-able records, used by every store ---------------------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "issued_at": self.issued_at,
            "scope": list(self.scope) if self.scope is not None else None,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "refresh_expires_at": self.refresh_expires_at,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Token:
        try:
            access = record["access_token"]
            if not isinstance(access, str):
                raise TypeError("access_token")
            scope = record.get("scope")
            return cls(
                access_token=access,
                token_type=str(record.get("token_type") or "Bearer"),
                expires_at=_opt_float(record.get("expires_at")),
                issued_at=float(record.get("issued_at") or 0.0),
                scope=tuple(str(s) for s in scope) if isinstance(scope, list) else None,
                refresh_token=_opt_str(record.get("refresh_token")),
                id_token=_opt_str(record.get("id_token")),
                refresh_expires_at=_opt_float(record.get("refresh_expires_at")),
                extra=dict(record.get("extra") or {}),
            )
        # OverflowError: an integer beyond a double in a number field (float() of it). A token file
        # is checked before (keyturn._record.token_fault, which this never refuses after); another
        # store's record may be as damaged.
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise StoreError(f"stored token record is malformed ({exc.__class__.__name__})") from None

    @classmethod
    def refresh_only(cls, refresh_token: str) -> Token:
        """A placeholder holding only a refresh token: already expired, so the first call refreshes."""
        return cls(access_token="", expires_at=0.0, refresh_token=refresh_token)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """When, on the monotonic clock, a cached token should be refreshed and when it is dead."""

    refresh_at: float
    expires_at: float


_NEVER = float("inf")


def monotonic_deadlines(
    token: Token,
    *,
    wall_now: float,
    mono_now: float,
    leeway: float,
    jitter: float = 0.1,
    rng: random.Random | None = None,
) -> Deadlines:
    """Convert the token's wall-clock expiry to monotonic deadlines, once, at adoption.

    ``jitter`` is the fraction of the margin by which the refresh moment is brought forward at
    random, so that a fleet that got its tokens in the same second does not refresh in the same
    second.
    """
    if token.expires_at is None:
        return Deadlines(_NEVER, _NEVER)
    remaining = token.expires_at - wall_now
    expires = mono_now + remaining
    margin = refresh_margin(token.lifetime, leeway)
    spread = (rng or random).uniform(0.0, margin * jitter) if jitter > 0 and margin > 0 else 0.0
    return Deadlines(refresh_at=expires - margin - spread, expires_at=expires)
