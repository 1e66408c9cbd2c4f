"""The device authorization server's side of RFC 8628, as a state machine with no I/O.

Rules
-----
* A device authorization request (§3.1) creates a *device grant*: a device code for the polling
  client, a user code for the person, a lifetime (1800 s) and a polling interval (5 s).
* The person enters the user code on the verification page, signs in, and approves or denies.
* The client polls the token endpoint (§3.4) and is answered by :func:`decide_poll`, whose order of
  checks is the whole of §3.5:

  1. a code already redeemed, or issued to another client: ``invalid_grant`` (codes are single-use;
     the caller also revokes what the first redemption issued, as for a reused refresh token);
  2. past its lifetime: ``expired_token``;
  3. denied: ``access_denied``;
  4. approved: the token (and the grant becomes CONSUMED);
  5. pending and polled faster than ``interval``: ``slow_down``; otherwise ``authorization_pending``.
     Neither ends the flow.

Theory of operation
-------------------
After h11's ``_state.py``: a :class:`DeviceGrant` is an immutable value whose ``status`` moves
only along :data:`TRANSITIONS`; an event the table does not allow raises
:class:`DeviceGrantStateError`, which names the state. EXPIRED is never stored: it is what a
PENDING, APPROVED or DENIED grant *is* once ``now`` passes ``expires_at`` (:meth:`DeviceGrant.status_at`),
so no sweeper is needed for correctness. Time is always passed in; randomness comes from
:mod:`secrets`. Each change returns a new value with ``version`` + 1, which storage writes only if
the stored version is still the one read (compare-and-set): two replicas that redeem one code at
the same instant cannot both win.

::

    PENDING --approve--> APPROVED --redeem--> CONSUMED
       |
       +------deny-----> DENIED
    (PENDING, APPROVED, DENIED) --now >= expires_at--> EXPIRED

Why not authlib: its RFC 8628 grant (``authlib.oauth2.rfc8628``) is bound to its
``AuthorizationServer`` and to query methods on framework models, answers ``slow_down`` only
through a ``should_slow_down`` hook it leaves to the host, and does not make codes single-use
across replicas. These rules are about 150 lines here and sit beside the store that makes them
atomic.
"""

from __future__ import annotations

import enum
import hashlib
import math
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

# The RFC 8628 numbers are the client's too: one definition, in protocol/ (re-exported here).
from ..protocol.rfc8628 import (
    DEFAULT_INTERVAL,
    DEFAULT_LIFETIME,
    DEVICE_CODE_BYTES,
    USER_CODE_ALPHABET,
    USER_CODE_LENGTH,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_LIFETIME",
    "DEVICE_CODE_BYTES",
    "DIGITS",
    "LETTERS",
    "TRANSITIONS",
    "USER_CODE_ALPHABET",
    "USER_CODE_FORMATS",
    "USER_CODE_LENGTH",
    "DeviceGrant",
    "DeviceGrantStateError",
    "DeviceStatus",
    "Event",
    "PollOutcome",
    "UserCodeFormat",
    "UserCodeType",
    "decide_poll",
    "format_user_code",
    "hash_code",
    "new_device_grant",
    "normalize_user_code",
]

#: A poll that arrives this much early (network jitter) is still on time: at most 1 s, and 20 %
#: of the interval when that is less (tests use 1 s intervals).
_JITTER_FRACTION: Final = 0.2
_JITTER_MAX: Final = 1.0


class DeviceStatus(enum.Enum):
    PENDING = "pending"        # waiting for the person
    APPROVED = "approved"      # approved; the next poll gets the token
    DENIED = "denied"          # the person said no
    CONSUMED = "consumed"      # the token was issued: the code is spent
    EXPIRED = "expired"        # past expires_at (computed, never stored)


class Event(enum.Enum):
    APPROVE = "approve"
    DENY = "deny"
    REDEEM = "redeem"


_S, _E = DeviceStatus, Event
#: status -> {event: next status}. Anything not listed is illegal in that status.
TRANSITIONS: Final[Mapping[DeviceStatus, Mapping[Event, DeviceStatus]]] = {
    _S.PENDING: {_E.APPROVE: _S.APPROVED, _E.DENY: _S.DENIED},
    _S.APPROVED: {_E.REDEEM: _S.CONSUMED},
    _S.DENIED: {},
    _S.CONSUMED: {},
    _S.EXPIRED: {},
}


class DeviceGrantStateError(Exception):
    """An event the grant's status does not allow (approving twice, redeeming a pending code)."""

    def __init__(self, event: Event, status: DeviceStatus) -> None:
        super().__init__(f"device grant: cannot {event.value} in status {status.name}")
        self.event = event
        self.status = status


def hash_code(code: str) -> str:
    """What storage keeps instead of a device code or a refresh token: a stolen database gives
    no usable code. SHA-256 is enough: the codes are 256-bit random, so nothing is to be guessed."""
    return hashlib.sha256(code.encode()).hexdigest()


UserCodeType = Literal["letters", "digits"]


@dataclass(frozen=True, kw_only=True)
class UserCodeFormat:
    """One alphabet of user codes (configuration ``user_code_type``)."""

    name: UserCodeType
    alphabet: str
    length: int

    @property
    def count(self) -> int:
        """How many codes there are: what a guess must find one of (docs/server.md)."""
        return int(len(self.alphabet) ** self.length)


#: RFC 8628 §6.1's base-20 letters, 8 of them: 20**8 = 2.56e10 codes (the default).
LETTERS: Final = UserCodeFormat(name="letters", alphabet=USER_CODE_ALPHABET, length=USER_CODE_LENGTH)
#: Digits, for keypads and locales without A-Z keyboards (as DIRAC offers). RFC 8628 §6.1: "Pure
#: numeric codes are also a good choice for usability, ... though the length of such a code needs
#: to be longer to maintain high entropy." Its example, 9 digits (10**9), has 25.6 times fewer
#: codes than the letters; the length here is the shortest with at least as many codes as
#: LETTERS (11 digits, 10**11), so docs/server.md's guessing odds hold for both alphabets.
DIGITS: Final = UserCodeFormat(name="digits", alphabet="0123456789",
                               length=math.ceil(math.log10(LETTERS.count)))
USER_CODE_FORMATS: Final[Mapping[UserCodeType, UserCodeFormat]] = {LETTERS.name: LETTERS, DIGITS.name: DIGITS}
#: Shown between groups of 4 (``BCDF-GHJK``, ``1234-5678-901``); ignored on entry.
_GROUP: Final = 4


def generate_user_code(*, user_codes: UserCodeFormat) -> str:
    # One draw of a number below base**length, written in that base: each character is uniform
    # and independent, as with one secrets.choice per character, at a fraction of the cost.
    alphabet, base = user_codes.alphabet, len(user_codes.alphabet)
    number = secrets.randbelow(base ** user_codes.length)
    chars = []
    for _ in range(user_codes.length):
        number, digit = divmod(number, base)
        chars.append(alphabet[digit])
    return "".join(chars)


def format_user_code(code: str) -> str:
    """A stored code as shown, in groups of 4: ``BCDFGHJK`` as ``BCDF-GHJK``, ``12345678901`` as
    ``1234-5678-901``."""
    return "-".join(code[start:start + _GROUP] for start in range(0, len(code), _GROUP))


def normalize_user_code(typed: str, *, user_codes: UserCodeFormat) -> str | None:
    """What the person typed, as stored; None when it cannot be a code of this format (too few
    or too many of the alphabet's characters). Each character of the alphabet counts, whatever is
    around it: an errant space or dash, a zero-width space or soft hyphen pasted along, a
    full-width digit or dash of a CJK input method. Dropping them costs no entropy: every try is
    counted, and names at most one code."""
    # RFC 8628 §6.1: "When processing the inputted user code, the server should strip dashes and
    # other punctuation that it added for readability (making the inclusion of such punctuation
    # by the user optional). For codes using only characters in the A-Z range as with the
    # base-20 charset defined above, the user's input should be uppercased before comparison to
    # account for the fact that the user may input the equivalent lowercase characters. Further
    # stripping of all characters outside the user_code charset is recommended to reduce
    # instances where an errantly typed character (like a space character) invalidates
    # otherwise valid input."
    # NFKC first: a full-width 1 or B (U+FF11, U+FF22) is the same character as 1 or B to the
    # person (and the ligature U+FB00 is "ff"). Upper-cased one character at a time, and kept
    # only when that gives one character of the alphabet: "ß" (upper-cased "SS") is outside the
    # charset, so dropped.
    alphabet = frozenset(user_codes.alphabet)
    kept = "".join(upper for upper in (ch.upper() for ch in unicodedata.normalize("NFKC", typed))
                   if upper in alphabet)
    return kept if len(kept) == user_codes.length else None


@dataclass(frozen=True)
class DeviceGrant:
    """One device authorization, as stored. The device code itself is never kept: only its hash."""

    device_code_hash: str
    user_code: str                   # normalized: 8 letters or 11 digits, no dash
    client_id: str
    scope: tuple[str, ...]
    created_at: float
    expires_at: float
    interval: int
    status: DeviceStatus = DeviceStatus.PENDING
    subject: str | None = None       # who approved
    auth_time: float | None = None
    last_poll_at: float | None = None
    family_id: str | None = None     # the refresh-token family its redemption created
    version: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)

    def status_at(self, now: float) -> DeviceStatus:
        # RFC 8628 §3.2, expires_in: "The lifetime in seconds of the "device_code" and "user_code"."
        if self.status is not DeviceStatus.CONSUMED and now >= self.expires_at:
            return DeviceStatus.EXPIRED
        return self.status

    def fire(self, event: Event, now: float, **changes: object) -> DeviceGrant:
        current = self.status_at(now)
        following = TRANSITIONS[current].get(event)
        if following is None:
            raise DeviceGrantStateError(event, current)
        return replace(self, status=following, version=self.version + 1, **changes)  # type: ignore[arg-type]

    def approve(self, subject: str, now: float) -> DeviceGrant:
        return self.fire(Event.APPROVE, now, subject=subject, auth_time=now)

    def deny(self, now: float) -> DeviceGrant:
        return self.fire(Event.DENY, now)


def new_device_grant(
    *, client_id: str, scope: tuple[str, ...], now: float, lifetime: int = DEFAULT_LIFETIME,
    interval: int = DEFAULT_INTERVAL, user_codes: UserCodeFormat,
) -> tuple[str, DeviceGrant]:
    """A fresh device code (returned once, to the client) and the grant to store."""
    # RFC 8628 §5.2: "the device code ... MUST ... have sufficient entropy"; §3.2 leaves the
    # format to the server.
    device_code = secrets.token_urlsafe(DEVICE_CODE_BYTES)
    grant = DeviceGrant(
        device_code_hash=hash_code(device_code), user_code=generate_user_code(user_codes=user_codes),
        client_id=client_id, scope=scope, created_at=now, expires_at=now + lifetime,
        interval=interval,
    )
    return device_code, grant


@dataclass(frozen=True)
class PollOutcome:
    """What one poll gets: an RFC 8628 §3.5 error code, or ``error is None`` and a token to issue.

    ``updated`` is the grant to write back (compare-and-set on ``version``), or None if nothing
    changes. ``reused`` says a spent code came back: the caller revokes what it issued."""

    error: str | None
    description: str
    updated: DeviceGrant | None
    reused: bool = False


def _too_soon(grant: DeviceGrant, now: float) -> bool:
    if grant.last_poll_at is None:
        return False
    jitter = min(_JITTER_MAX, grant.interval * _JITTER_FRACTION)
    return now - grant.last_poll_at < grant.interval - jitter


def decide_poll(grant: DeviceGrant | None, *, client_id: str, now: float) -> PollOutcome:
    """The answer to one token request with this device code (see the module header for the order)."""
    if grant is None:
        # RFC 6749 §5.2, invalid_grant: "The provided authorization grant ... is invalid, expired,
        # revoked ..."
        return PollOutcome("invalid_grant", "unknown device_code", None)
    if grant.client_id != client_id:
        # RFC 6749 §5.2, invalid_grant: "... or was issued to another client."
        return PollOutcome("invalid_grant", "the device_code was issued to another client", None)
    status = grant.status_at(now)
    if status is DeviceStatus.CONSUMED:
        # Single use: a code redeemed once is spent. A second redemption means the first answer
        # went to someone else too, so what it issued is revoked (reused=True).
        return PollOutcome("invalid_grant", "the device_code was already used", None, reused=True)
    if status is DeviceStatus.EXPIRED:
        # RFC 8628 §3.5, expired_token: "The "device_code" has expired, and the device
        # authorization session has concluded. The client MAY commence a new device authorization
        # request but SHOULD wait for user interaction before restarting".
        return PollOutcome("expired_token", "the device code expired before it was approved", None)
    if status is DeviceStatus.DENIED:
        # RFC 8628 §3.5, access_denied: "The authorization request was denied."
        return PollOutcome("access_denied", "the request was denied", None)
    if status is DeviceStatus.APPROVED:
        return PollOutcome(None, "", grant.fire(Event.REDEEM, now, last_poll_at=now))
    polled = replace(grant, last_poll_at=now, version=grant.version + 1)
    if _too_soon(grant, now):
        # RFC 8628 §3.5, slow_down: "A variant of "authorization_pending", the authorization
        # request is still pending and polling should continue, but the interval MUST be increased
        # by 5 seconds for this and all subsequent requests." The server keeps expecting its own
        # interval (a client that adds only 1 s, as oidc-agent does, must still get through).
        return PollOutcome("slow_down", "polling too fast: wait the interval between requests",
                           polled)
    # RFC 8628 §3.5, authorization_pending: "The authorization request is still pending as the end
    # user hasn't yet completed the user-interaction steps".
    return PollOutcome("authorization_pending", "waiting for the user to approve", polled)
