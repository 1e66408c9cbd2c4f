"""keyturn: one call, ``get_access_token()``, for every OAuth 2.0 / OpenID Connect grant.

Public names are loaded lazily: ``import keyturn`` imports no HTTP stack, so that ``keyturn token``
and a program that only needs an error class start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "AccessDenied": "keyturn.errors",
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
    "KeyturnError": "keyturn.errors",
    "LoginRequired": "keyturn.errors",
    "MemoryStore": "keyturn.stores.memory",
    "OAuthError": "keyturn.errors",
    "RedisStore": "keyturn.stores.redis",
    "RefreshToken": "keyturn.sources.refresh_token",
    "StaticToken": "keyturn.sources.static",
    "Store": "keyturn.stores.base",
    "StoreError": "keyturn.errors",
    "Token": "keyturn.token",
    "TransportError": "keyturn.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .errors import (
        AccessDenied,
        ConfigError,
        DiscoveryError,
        ExpiredToken,
        InvalidClient,
        InvalidGrant,
        InvalidIdToken,
        InvalidResponse,
        KeyturnError,
        LoginRequired,
        OAuthError,
        StoreError,
        TransportError,
    )
    from .protocol.device import DeviceVerification
    from .sources.client_credentials import ClientCredentials
    from .sources.device_code import DeviceCode
    from .sources.refresh_token import RefreshToken
    from .sources.static import StaticToken
    from .stores.base import Store
    from .stores.file import FileStore
    from .stores.memory import MemoryStore
    from .stores.redis import RedisStore
    from .token import Token


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keyturn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
