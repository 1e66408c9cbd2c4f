"""keyturn: one call, ``get_access_token()``, for every OAuth 2.0 / OpenID Connect grant.

Public names are loaded lazily: ``import keyturn`` imports no HTTP stack, so that ``keyturn token``
and a program that only needs an error class start fast.
"""

from __future__ import annotations

# Not ``typing``: it costs ``keyturn token``'s fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

__version__ = "0.1.0"

_LAZY = {
    "AccessDenied": "keyturn.errors",
    "AuthorizationCode": "keyturn.sources.authorization_code",
    "ClientCredentials": "keyturn.sources.client_credentials",
    "ConfigError": "keyturn.errors",
    "DeviceCode": "keyturn.sources.device_code",
    "DeviceVerification": "keyturn.protocol.device",
    "DiscoveryError": "keyturn.errors",
    "ExpiredToken": "keyturn.errors",
    "FileStore": "keyturn.stores.file",
    "InvalidClient": "keyturn.errors",
    "InvalidGrant": "keyturn.errors",
    "InvalidIdToken": "keyturn.errors",
    "InvalidResponse": "keyturn.errors",
    "JwtBearer": "keyturn.sources.jwt_bearer",
    "KeyturnError": "keyturn.errors",
    "LoginRequired": "keyturn.errors",
    "LoginTimeout": "keyturn.errors",
    "Logout": "keyturn.logout",
    "MemoryStore": "keyturn.stores.memory",
    "OAuthError": "keyturn.errors",
    "RedisStore": "keyturn.stores.redis",
    "RefreshToken": "keyturn.sources.refresh_token",
    "StaticToken": "keyturn.sources.static",
    "Store": "keyturn.stores.base",
    "StoreError": "keyturn.errors",
    "Token": "keyturn.token",
    "TokenExchange": "keyturn.sources.token_exchange",
    "TransportError": "keyturn.errors",
    "UserLogin": "keyturn.sources.user_login",
    "from_profile": "keyturn.config",
}

__all__ = [
    "AccessDenied",
    "AuthorizationCode",
    "ClientCredentials",
    "ConfigError",
    "DeviceCode",
    "DeviceVerification",
    "DiscoveryError",
    "ExpiredToken",
    "FileStore",
    "InvalidClient",
    "InvalidGrant",
    "InvalidIdToken",
    "InvalidResponse",
    "JwtBearer",
    "KeyturnError",
    "LoginRequired",
    "LoginTimeout",
    "Logout",
    "MemoryStore",
    "OAuthError",
    "RedisStore",
    "RefreshToken",
    "StaticToken",
    "Store",
    "StoreError",
    "Token",
    "TokenExchange",
    "TransportError",
    "UserLogin",
    "from_profile",
]

if TYPE_CHECKING:
    from typing import Any

    from .config import from_profile as from_profile
    from .errors import AccessDenied as AccessDenied
    from .errors import ConfigError as ConfigError
    from .errors import DiscoveryError as DiscoveryError
    from .errors import ExpiredToken as ExpiredToken
    from .errors import InvalidClient as InvalidClient
    from .errors import InvalidGrant as InvalidGrant
    from .errors import InvalidIdToken as InvalidIdToken
    from .errors import InvalidResponse as InvalidResponse
    from .errors import KeyturnError as KeyturnError
    from .errors import LoginRequired as LoginRequired
    from .errors import LoginTimeout as LoginTimeout
    from .errors import OAuthError as OAuthError
    from .errors import StoreError as StoreError
    from .errors import TransportError as TransportError
    from .logout import Logout as Logout
    from .protocol.device import DeviceVerification as DeviceVerification
    from .sources.authorization_code import AuthorizationCode as AuthorizationCode
    from .sources.client_credentials import ClientCredentials as ClientCredentials
    from .sources.device_code import DeviceCode as DeviceCode
    from .sources.jwt_bearer import JwtBearer as JwtBearer
    from .sources.refresh_token import RefreshToken as RefreshToken
    from .sources.static import StaticToken as StaticToken
    from .sources.token_exchange import TokenExchange as TokenExchange
    from .sources.user_login import UserLogin as UserLogin
    from .stores.base import Store as Store
    from .stores.file import FileStore as FileStore
    from .stores.memory import MemoryStore as MemoryStore
    from .stores.redis import RedisStore as RedisStore
    from .token import Token as Token


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keyturn' has no attribute {name!r}")
    # importlib only here: ``keyturn token``'s fast path, which imports this package, never needs it.
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
