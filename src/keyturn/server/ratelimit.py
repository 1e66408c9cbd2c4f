"""The server's rate limits, counted in its storage so that every replica sees every attempt.

Three things are limited: user codes typed on the ``/device`` page (per address, and for
everyone: a guessed code would hand a stranger's login to the guesser), passwords checked there
(per user name, whatever the address and the code: any live code will do, and anyone can make
one), and checks of a confidential client's secret against its slow hash (per client and address,
and per client: a wrong guess costs 0.1 s of CPU and 32 MiB). Every attempt is counted *before*
it is made (:func:`take`). An address is counted by :func:`address_key`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from .config import RateLimits
from .storage.base import ServerStorage

__all__ = ["NameAttempts", "NameTurn", "StoredSecretAttempts", "UserCodeAttempts", "address_key",
           "take"]

#: The storage setting that keys the digests of user names in counter keys.
_NAME_KEY_SETTING = "name_counter_key"


def address_key(address: str) -> str:
    """The budget an address is counted in: an IPv4 address itself, an IPv6 address by its /64.
    RFC 4291 §2.5.1: "For all unicast addresses, except those that start with the binary value
    000, Interface IDs are required to be 64 bits long": a host picks its own interface ids
    (RFC 8981 temporary addresses), so one machine holds a whole /64, and counting single IPv6
    addresses would give it 2**64 budgets. An IPv4
    client of a dual-stack socket (``::ffff:a.b.c.d``) is that IPv4 address; anything that is no
    address (``"unknown"``) stays as it is."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])  # without an IPv6 zone ("%eth0")
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def take(storage: ServerStorage, window: int, now: float,
         limits: Sequence[tuple[str, int]]) -> bool:
    """Count one attempt under every key *before* it is made; False, with nothing counted, when
    any key's limit is used up. Reading the counters first and counting a failure after it would
    let every request in flight at once through the check (concurrent guesses would overrun the
    limit)."""
    taken: list[str] = []
    for key, limit in limits:
        taken.append(key)
        if storage.hit(key, window, now) > limit:
            for counted in taken:
                storage.hit(counted, window, now, -1)
            return False
    return True


class StoredSecretAttempts:
    """:class:`~.clientauth.SecretAttempts` counted in the storage: per (client, address), so one
    caller's guesses cannot shut out a client at another address, and per client, so guesses
    spread over many addresses stop too."""

    def __init__(self, storage: ServerStorage, limits: RateLimits, address: str, now: float,
                 refused: Callable[[], None] | None = None) -> None:
        self._storage = storage
        #: Called when a check is refused (a /metrics counter).
        self._refused = refused
        self._limits = limits
        self._address = address_key(address)
        self._now = now

    def _keys(self, client_id: str) -> tuple[tuple[str, int], tuple[str, int]]:
        # Quoted: a client id may hold ":" (any TOML key), and must not run into the address.
        client = quote(client_id, safe="")
        return ((f"secret:{client}:{self._address}", self._limits.secret_per_address),
                (f"secret:{client}", self._limits.secret_per_client))

    def take(self, client_id: str) -> bool:
        allowed = take(self._storage, self._limits.window, self._now, self._keys(client_id))
        if not allowed and self._refused is not None:
            self._refused()
        return allowed

    def give_back(self, client_id: str) -> None:
        for key, _ in self._keys(client_id):
            self._storage.hit(key, self._limits.window, self._now, -1)


class UserCodeAttempts:
    """The user codes typed on the verification page: per address, and for everyone."""

    def __init__(self, storage: ServerStorage, limits: RateLimits) -> None:
        self._storage = storage
        self._limits = limits

    def _keys(self, address: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return ((f"wrong:{address_key(address)}", self._limits.per_address),
                ("wrong:*", self._limits.overall))

    def take(self, address: str, now: float) -> bool:
        """Count one attempt against both limits *before* it is made; False, with nothing
        counted, when either is used up."""
        return take(self._storage, self._limits.window, now, self._keys(address))

    def give_back(self, address: str, now: float) -> None:
        """A right code and the right password: the try :meth:`take` counted (at the same
        ``now``) was no guess."""
        for key, _ in self._keys(address):
            self._storage.hit(key, self._limits.window, now, -1)


@dataclass(frozen=True)
class NameTurn:
    """May this password be checked? If not, the person may try again in ``retry_after`` s."""

    allowed: bool
    retry_after: int = 0


def normalize_name(username: str) -> str:
    """One budget for every spelling of a name that an authenticator may take for the same one
    (LDAP and most directories compare names without case): NFKC, case-folded, stripped."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


class NameAttempts:
    """Failed sign-ins per user name, whatever the address and the user code, for every name
    typed (one that exists nowhere too: the limit must not tell which names exist).

    ``name_free`` failures per ``name_window``; past them each further failure needs a delay
    window of its own, ``name_delay`` seconds doubling with every failure up to
    ``name_delay_max``. Windows are fixed (aligned, as all counters of the storage are): every
    attempt is counted in every delay window, and an attempt past ``name_free`` is allowed only if
    it is the first in its window, so at most one failure falls in each. A right password gives
    the name its budget back.

    Names are counted under a keyed digest: the storage never holds what was typed (a password
    typed into the name field, the names of an attacker's list)."""

    def __init__(self, storage: ServerStorage, limits: RateLimits) -> None:
        self._storage = storage
        self._limits = limits
        self._secret: bytes | None = None
        delays: list[int] = []
        delay = min(limits.name_delay, limits.name_delay_max)
        while not delays or delays[-1] < limits.name_delay_max:
            delays.append(delay)
            delay = min(delay * 2, limits.name_delay_max)
        self.delays: tuple[int, ...] = tuple(delays)

    def __repr__(self) -> str:
        return f"NameAttempts(delays={self.delays})"

    def _key(self, username: str) -> str:
        if self._secret is None:
            self._secret = self._storage.setting(_NAME_KEY_SETTING,
                                                 lambda: secrets.token_hex(32)).encode()
        digest = hmac.new(self._secret, normalize_name(username).encode(), hashlib.sha256)
        return f"name:{digest.hexdigest()[:32]}"

    def take(self, username: str, now: float) -> NameTurn:
        """Count one check of this name's password *before* it is made (concurrent guesses cannot
        overrun the limit); with nothing counted, not allowed when the name must wait."""
        key = self._key(username)
        failures = self._storage.hit(key, self._limits.name_window, now) - 1  # before this one
        in_window = [self._storage.hit(f"{key}:{delay}", delay, now) for delay in self.delays]
        if failures < self._limits.name_free:
            return NameTurn(True)
        level = min(failures - self._limits.name_free, len(self.delays) - 1)
        if in_window[level] == 1:
            return NameTurn(True)
        self._storage.hit(key, self._limits.name_window, now, -1)
        for delay in self.delays:
            self._storage.hit(f"{key}:{delay}", delay, now, -1)
        delay = self.delays[level]
        window_end = (math.floor(now / delay) + 1) * delay
        return NameTurn(False, max(1, math.ceil(window_end - now)))

    def signed_in(self, username: str, now: float) -> None:
        """The right password: the name's failures are forgotten."""
        key = self._key(username)
        count = self._storage.hit(key, self._limits.name_window, now, 0)
        if count > 0:
            self._storage.hit(key, self._limits.name_window, now, -count)
