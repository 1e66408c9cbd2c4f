"""The numbers of the device authorization grant (RFC 8628), for both sides.

The client's polling state machine (:mod:`keyturn.protocol.device`) and the authorization
server (:mod:`keyturn.server.device_flow`) take them from here, so a default cannot drift between
the side that issues a code and the side that polls with it. Constants only: no I/O, no imports.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_LIFETIME",
    "DEVICE_CODE_BYTES",
    "SLOW_DOWN_STEP",
    "USER_CODE_ALPHABET",
    "USER_CODE_LENGTH",
]

#: RFC 8628 §3.2, interval: "If no value is provided, clients MUST use 5 as the default."
DEFAULT_INTERVAL: Final = 5
#: RFC 8628 §3.5, slow_down: "the interval MUST be increased by 5 seconds for this and all
#: subsequent requests."
SLOW_DOWN_STEP: Final = 5
#: design.md §6 (as DIRAC): a device code lives 1800 s; RFC 8628 §3.2 leaves it to the server.
DEFAULT_LIFETIME: Final = 1800
#: RFC 8628 §6.1: "The user code SHOULD be short, case-insensitive, and easy to type"; §6.1 also
#: suggests "base-20 character set BCDFGHJKLMNPQRSTVWXZ" (no vowels: no words; no digits: none of
#: 0/O, 1/I confusion) with 8 characters, which gives 20**8 = 2.56e10 codes (see docs/server.md).
USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH: Final = 8
#: RFC 8628 §5.2: the device code needs "sufficient entropy"; 32 random bytes give 43 url-safe
#: characters (design.md §6 asks for at least 42).
DEVICE_CODE_BYTES: Final = 32
