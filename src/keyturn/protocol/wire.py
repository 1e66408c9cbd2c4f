"""The protocol facts that more than the protocol needs: the wire grant types, and the client
authentication method chosen when none is named.

The token requests (:mod:`keyturn.protocol.grants`, :mod:`keyturn.protocol.authcode`) and the
client authentication (:mod:`keyturn.protocol.client_auth`) enforce them; the registry of grants
(:mod:`keyturn.registry`) and the cache key (:mod:`keyturn.cachekey`) read them, because a
profile must derive a source's cache key the same way without importing the sources.

Standard library only, and not even that: ``keyturn token``'s fast path imports this module
through the registry and the cache key (see ``python -X importtime -c "import keyturn.config"``),
so no typing at run time, and ``keyturn/protocol/__init__.py`` imports nothing.
"""

from __future__ import annotations

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "GRANT_AUTHORIZATION_CODE",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_DEVICE_CODE",
    "GRANT_JWT_BEARER",
    "GRANT_REFRESH_TOKEN",
    "GRANT_TOKEN_EXCHANGE",
    "auth_method_for",
]

# -- the wire grant types: what the token request's grant_type says -------------------------------

#: RFC 6749 §4.1.3: grant_type "REQUIRED. Value MUST be set to "authorization_code"."
GRANT_AUTHORIZATION_CODE: Final = "authorization_code"
#: RFC 6749 §4.4.2: grant_type "REQUIRED. Value MUST be set to "client_credentials"."
GRANT_CLIENT_CREDENTIALS: Final = "client_credentials"
#: RFC 6749 §6: grant_type "REQUIRED. Value MUST be set to "refresh_token"."
GRANT_REFRESH_TOKEN: Final = "refresh_token"
#: RFC 8628 §3.4: grant_type "Value MUST be set to "urn:ietf:params:oauth:grant-type:device_code"."
GRANT_DEVICE_CODE: Final = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 7523 §2.1: "The value of the "grant_type" is "urn:ietf:params:oauth:grant-type:jwt-bearer"."
GRANT_JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: RFC 8693 §2.1: "The value "urn:ietf:params:oauth:grant-type:token-exchange" indicates that a
#: token exchange is being performed."
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"


# -- the client authentication method ------------------------------------------------------------

def auth_method_for(auth_method: str | None, *, client_secret: object, private_key: object,
                    has_client_cert: bool) -> str:
    """``auth_method`` when given, else the method the given credentials call for: a private key
    signs a JWT (RFC 7523 §2.2), a secret goes in HTTP Basic, a certificate is mutual TLS
    (RFC 8705 §2), and nothing is a public client.

    :meth:`keyturn.protocol.client_auth.ClientAuth.create` makes this choice for a source, and a
    profile makes it for the cache key (:meth:`keyturn.config.Profile.cache_key`): one rule, so
    the two keys agree.
    """
    if auth_method:
        return auth_method
    if private_key is not None:
        return "private_key_jwt"
    if client_secret:
        # RFC 6749 §2.3.1: "The authorization server MUST support the HTTP Basic authentication
        # scheme for authenticating clients that were issued a client password."
        return "client_secret_basic"
    if has_client_cert:
        return "tls_client_auth"
    return "none"
