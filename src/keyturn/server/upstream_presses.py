"""How often "Sign in with NAME" may be pressed (review R19, M2).

Each press with a valid user code writes a login into the storage (kept 5 minutes) and may send
a request to the upstream. A right code is given back to the wrong-code budget at once (no
password is guessed here), so the presses themselves are counted, with the storage's counters
(:func:`~.ratelimit.take`, counted before the press is served, so presses sent all at once
cannot overrun it): ``upstream_presses_per_code`` per ``window`` for one user code (which
bounds the logins one device code can make), ``upstream_presses_per_address`` per ``window``
from one address (an IPv6 /64, :func:`~.ratelimit.address_key`; a campus behind one NAT
address shares it). Past either, the press gets a 429 page and nothing is stored or sent.
"""

from __future__ import annotations

from .config import RateLimits
from .device_flow import hash_code
from .ratelimit import address_key, take
from .storage.base import ServerStorage

__all__ = ["take_press"]


def take_press(storage: ServerStorage, limits: RateLimits, *, address: str, user_code: str,
               now: float) -> bool:
    """Count one press; False (nothing counted) when the address or the code has used its."""
    return take(storage, limits.window, now, [
        (f"upstream-press:code:{hash_code(user_code)}", limits.upstream_presses_per_code),
        (f"upstream-press:address:{address_key(address)}", limits.upstream_presses_per_address),
    ])
