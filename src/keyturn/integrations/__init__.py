"""Adapters that let a token source authorize requests, httpx, pyFirecREST and globus-sdk calls.

Each adapter takes any token source (:class:`~keyturn.integrations.base.TokenSource`); a 401 is
answered by one flow (:mod:`keyturn.integrations.retry`) that every adapter drives. Every keyturn
source is all of them at once, with itself as the token source (:class:`Adapters`).
"""

from __future__ import annotations

from .base import Adapter, TokenSource
from .httpx_auth import HttpxAuth
from .requests_auth import RequestsAuth
from .sdk import SdkAuth

__all__ = ["Adapter", "Adapters", "HttpxAuth", "RequestsAuth", "SdkAuth", "TokenSource"]


class Adapters(SdkAuth, HttpxAuth, RequestsAuth):
    """Composed into every token source: requests' and httpx's ``auth=``, pyFirecREST's
    authorization and globus-sdk's authorizer, each authorizing with the source itself."""

    @property
    def token_source(self: TokenSource) -> TokenSource:
        return self
