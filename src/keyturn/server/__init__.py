"""keyturn's RFC 8628 device authorization server (``keyturn serve``, ``keyturn demo``).

Layout: :mod:`.device_flow` (the device grant's rules, no I/O), :mod:`.service` (the
:class:`~.service.AuthorizationServer`: discovery, revocation, introspection, userinfo) with
:mod:`.token_endpoint` (device authorization and the token endpoint), :mod:`.verification` (the
``/device`` page's decisions) and :mod:`.ratelimit`; :mod:`.errors` (the OAuth errors, rendered
once) and :mod:`.reply`; :mod:`.app` (the thin starlette layer), :mod:`.pages` (the ``/device``
page), :mod:`.storage` (SQLite, Redis, memory), :mod:`.tokens` (signing), :mod:`.config`,
:mod:`.passwords` (hashes and the pluggable authenticator), :mod:`.runner`. The commands
(``keyturn serve``, ``python -m keyturn.server``) and the demo's walk-through (``demo``, a client
program) live in :mod:`keyturn.cli`.
Names are loaded lazily: importing this package imports neither starlette nor uvicorn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Authenticator",
    "ServerConfig",
    "ServerThread",
    "User",
    "create_app",
    "demo",
    "demo_config",
    "hash_password",
    "load_config",
    "serve",
]

_LAZY = {
    "Authenticator": "keyturn.server.passwords",
    "ServerConfig": "keyturn.server.config",
    "ServerThread": "keyturn.server.runner",
    "User": "keyturn.server.passwords",
    "create_app": "keyturn.server.app",
    "demo": "keyturn.cli.walkthrough",
    "demo_config": "keyturn.server.config",
    "hash_password": "keyturn.server.passwords",
    "load_config": "keyturn.server.config",
    "serve": "keyturn.server.runner",
}

if TYPE_CHECKING:
    from ..cli.walkthrough import demo as demo
    from .app import create_app as create_app
    from .config import ServerConfig as ServerConfig
    from .config import demo_config as demo_config
    from .config import load_config as load_config
    from .passwords import Authenticator as Authenticator
    from .passwords import User as User
    from .passwords import hash_password as hash_password
    from .runner import ServerThread as ServerThread
    from .runner import serve as serve


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keyturn.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
