"""The verification page's decisions (RFC 8628 §3.3): look a typed user code up, approve or deny.

No HTTP here (:mod:`.pages` renders the page): a typed code is counted against the rate limits
*before* it is looked up, a password check against its user name's limit *before* it is made, and
the person's decision is written with compare-and-set, so two tabs (or two replicas) deciding one
grant at once cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import RateLimits
from .device_flow import DeviceGrant, DeviceStatus, UserCodeFormat, normalize_user_code
from .metrics import Metrics
from .passwords import User
from .ratelimit import NameAttempts, NameTurn, UserCodeAttempts
from .storage.base import ServerStorage

__all__ = ["CodeLookup", "Verification"]

#: Compare-and-set retries: another request changed the grant between read and write.
_SWAP_TRIES = 5


@dataclass(frozen=True)
class CodeLookup:
    """The verification page's look-up of a typed user code."""

    grant: DeviceGrant | None
    limited: bool = False


class Verification:
    """The person's side of a device grant, over the server's storage."""

    def __init__(self, storage: ServerStorage, limits: RateLimits, *,
                 user_codes: UserCodeFormat) -> None:
        self._storage = storage
        self._user_codes = user_codes
        self._attempts = UserCodeAttempts(storage, limits)
        self._names = NameAttempts(storage, limits)
        #: Where refusals and decisions are counted (AuthorizationServer gives its /metrics').
        self.metrics: Metrics | None = None

    def __repr__(self) -> str:
        return "Verification()"

    def lookup_user_code(self, typed: str, address: str, now: float) -> CodeLookup:
        """The pending grant for a typed code. Each try counts against two limits (this address,
        everyone); past either, no code is even looked up until the window ends. A wrong code
        stays counted; so does a right one, until :meth:`signed_in` (a wrong password guesses
        too)."""
        if not self._attempts.take(address, now):
            if self.metrics is not None:
                self.metrics.rate_limited("user_code")
            return CodeLookup(None, limited=True)
        # RFC 8628 §6.1: "Further stripping of all characters outside the user_code charset is
        # recommended" (normalize_user_code); a try that names no code is still counted.
        code = normalize_user_code(typed, user_codes=self._user_codes)
        grant = self._storage.device_grant_by_user_code(code) if code else None
        if grant is None or grant.status_at(now) is not DeviceStatus.PENDING:
            return CodeLookup(None)
        return CodeLookup(grant)

    def signed_in(self, address: str, now: float) -> None:
        """A right code and the right password: the try :meth:`lookup_user_code` counted (with
        the same ``now``) is given back."""
        self._attempts.give_back(address, now)

    def take_password_check(self, username: str, now: float) -> NameTurn:
        """May the password typed for ``username`` be checked now? Counted as a failure until
        :meth:`password_accepted`. Any live user code will do and anyone can make one, so the
        limits per code and address alone would let many addresses guess one person's password:
        this limit is the name's, whatever the address and the code, and holds for names that
        exist nowhere too (the same answers, so that it tells nobody which names exist)."""
        turn = self._names.take(username, now)
        if not turn.allowed and self.metrics is not None:
            self.metrics.rate_limited("password")
        return turn

    def password_accepted(self, username: str, now: float) -> None:
        """The right password for ``username``: its failures are forgotten."""
        self._names.signed_in(username, now)

    def settle(self, device_code_hash: str, user: User | None, now: float) -> DeviceStatus | None:
        """Approve (a user) or deny (None) a pending grant; the grant's status after, or None."""
        for _ in range(_SWAP_TRIES):
            grant = self._storage.device_grant(device_code_hash)
            if grant is None or grant.status_at(now) is not DeviceStatus.PENDING:
                return None
            if user is not None:
                updated = replace(grant.approve(user.subject, now), extra=dict(user.claims))
            else:
                updated = grant.deny(now)
            if self._storage.swap_device_grant(updated):
                if self.metrics is not None:
                    self.metrics.device_grant("approved" if user is not None else "denied")
                return updated.status
        return None
