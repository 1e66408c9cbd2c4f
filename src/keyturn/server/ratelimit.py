"""The server's rate limits, counted in its storage so that every replica sees every attempt.

Two things are limited: user codes typed on the ``/device`` page (per address, and for everyone:
a guessed code would hand a stranger's login to the guesser), and checks of a confidential
client's secret against its slow hash (per client and address, and per client: a wrong guess
costs 0.1 s of CPU and 32 MiB). Every attempt is counted *before* it is made (:func:`take`).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from .config import RateLimits
from .storage.base import ServerStorage

__all__ = ["StoredSecretAttempts", "UserCodeAttempts", "take"]


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

    def __init__(self, storage: ServerStorage, limits: RateLimits, address: str, now: float) -> None:
        self._storage = storage
        self._limits = limits
        self._address = address
        self._now = now

    def _keys(self, client_id: str) -> tuple[tuple[str, int], tuple[str, int]]:
        # Quoted: a client id may hold ":" (any TOML key), and must not run into the address.
        client = quote(client_id, safe="")
        return ((f"secret:{client}:{self._address}", self._limits.secret_per_address),
                (f"secret:{client}", self._limits.secret_per_client))

    def take(self, client_id: str) -> bool:
        return take(self._storage, self._limits.window, self._now, self._keys(client_id))

    def give_back(self, client_id: str) -> None:
        for key, _ in self._keys(client_id):
            self._storage.hit(key, self._limits.window, self._now, -1)


class UserCodeAttempts:
    """The user codes typed on the verification page: per address, and for everyone."""

    def __init__(self, storage: ServerStorage, limits: RateLimits) -> None:
        self._storage = storage
        self._limits = limits

    def _keys(self, address: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return ((f"wrong:{address}", self._limits.per_address), ("wrong:*", self._limits.overall))

    def take(self, address: str, now: float) -> bool:
        """Count one attempt against both limits *before* it is made; False, with nothing
        counted, when either is used up."""
        return take(self._storage, self._limits.window, now, self._keys(address))

    def give_back(self, address: str, now: float) -> None:
        """A right code and the right password: the try :meth:`take` counted (at the same
        ``now``) was no guess."""
        for key, _ in self._keys(address):
            self._storage.hit(key, self._limits.window, now, -1)
