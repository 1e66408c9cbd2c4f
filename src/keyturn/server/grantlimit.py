"""How many device grants one client and one address may open (RFC 8628 §3.1 needs no client
authentication, so without a limit anyone can fill the storage with pending grants).

New grants are counted in the storage (every replica sees them) per client and per address, in
fixed windows as long as a device code lives: a grant made in one window is pending at most
until the end of the next, so at most twice each limit are pending at once. Past a limit, the
request is refused with 429 and ``temporarily_unavailable`` (RFC 8628 has no code of its own for
it) and a Retry-After for the end of the window.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from .config import ClientConfig, ServerConfig
from .errors import unavailable
from .ratelimit import address_key, take
from .storage.base import ServerStorage

__all__ = ["PendingGrantLimit"]


class PendingGrantLimit:
    def __init__(self, config: ServerConfig, storage: ServerStorage) -> None:
        self._storage = storage
        self._window = config.lifetimes.device_code
        self._per_client = config.rate_limits.pending_per_client
        self._per_address = config.rate_limits.pending_per_address

    def __repr__(self) -> str:
        return (f"PendingGrantLimit(per_client={self._per_client}, "
                f"per_address={self._per_address}, window={self._window})")

    def take(self, client: ClientConfig, address: str, now: float) -> None:
        """Count one new grant of ``client`` from ``address``; past a limit, nothing is counted
        and :class:`~.errors.TemporarilyUnavailable` (429) is raised."""
        # Quoted: a client id may hold ":" (any TOML key), and must not run into another key.
        # An IPv6 address counts by its /64, as every per-address limit (ratelimit.address_key).
        keys = ((f"grants:{quote(client.client_id, safe='')}", self._per_client),
                (f"grants@{address_key(address)}", self._per_address))
        if not take(self._storage, self._window, now, keys):
            window_end = (math.floor(now / self._window) + 1) * self._window
            raise unavailable("too many device authorization requests pending: try again later",
                              retry_after=math.ceil(window_end - now), status=429)
