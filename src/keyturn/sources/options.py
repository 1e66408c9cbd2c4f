"""The keyword arguments every token source takes, as a ``TypedDict`` for the type checker.

Each source's constructor is typed ``**options: Unpack[SourceOptions]`` (plus its own keywords),
so ``ClientCredentials(clientid="x")`` and ``ClientCredentials(scope=42)`` are type errors, not a
``TypeError`` at run time or a scope nobody asked for. :class:`~keyturn.sources.base.Source`'s
``__init__`` spells the same arguments out with their defaults; tests/unit/sources/test_options.py
pins the two (names and types) together, and the profile's settings
(:data:`keyturn.registry.SHARED_SETTINGS`) to these. ``subject`` and ``seed`` are not here: a
source sets them itself (its identity, its first token).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypedDict

from .._tls import ClientCert, TlsVerify
from ..protocol.client_auth import PrivateKey
from ..secret import Secret
from ..stores.base import Store
from ..token import Token

__all__ = ["ClientCert", "OpenIDOptions", "PrivateKey", "SourceOptions", "TlsVerify"]

class SourceOptions(TypedDict, total=False):
    """The shared options (design.md §2, "Common keyword arguments")."""

    issuer: str | None
    token_endpoint: str | None
    client_id: str | None
    client_secret: str | Secret[str] | None
    private_key: PrivateKey | None
    auth_method: str | None
    signing_alg: str | None
    scope: str | Iterable[str] | None
    audience: str | None
    resource: str | Iterable[str] | None
    extra_params: Mapping[str, str] | None
    store: Store | None
    leeway: float
    verify: TlsVerify
    cert: ClientCert | None
    timeout: float
    allow_insecure_http: bool
    on_refresh: Callable[[Token], None] | None
    proxy: str | Secret[str] | None
    account: str | None
    revocation_endpoint: str | None
    token_response_hook: Callable[[dict[str, Any]], dict[str, Any]] | None


class OpenIDOptions(SourceOptions, total=False):
    """The options of the OpenID Connect logins (:class:`~keyturn.sources.oidc.OpenIDSource`):
    the shared ones and the ID Token checks."""

    id_token_algorithms: Collection[str]
    clock_skew: float
