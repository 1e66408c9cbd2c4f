"""What every adapter is built on: the token-source protocol, and the one adapter base.

An adapter (:class:`~keyturn.integrations.httpx_auth.HttpxAuth`,
:class:`~keyturn.integrations.requests_auth.RequestsAuth`, :class:`~keyturn.integrations.sdk.SdkAuth`)
takes any object with ``get_token``, ``aget_token`` and ``invalidate`` — a keyturn source, or an SDK
author's own — and authorizes requests with it. Every keyturn source composes all three with itself
as their token source (:class:`keyturn.integrations.Adapters`), so a source is directly an ``auth=``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..token import Token

__all__ = ["Adapter", "TokenSource"]


class TokenSource(Protocol):
    """What an adapter needs of a token source."""

    def get_token(self) -> Token:
        """The current token, refreshed if due."""
        ...

    async def aget_token(self) -> Token:
        """:meth:`get_token` without blocking the event loop."""
        ...

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget the access token; with ``access_token``, only if it is still the current one."""
        ...


class Adapter:
    """Base of the adapters: the token source they authorize with."""

    def __init__(self, source: TokenSource) -> None:
        self._token_source = source

    @property
    def token_source(self) -> TokenSource:
        return self._token_source

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.token_source!r})"
