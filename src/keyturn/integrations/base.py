"""What every adapter is built on: the token-source protocol, and the one adapter base.

An adapter (:class:`~keyturn.integrations.httpx_auth.HttpxAuth`,
:class:`~keyturn.integrations.requests_auth.RequestsAuth`, :class:`~keyturn.integrations.sdk.SdkAuth`)
takes any object with ``get_token``, ``aget_token`` and ``invalidate`` — a keyturn source, or an SDK
author's own — and authorizes requests with it. Every keyturn source composes all three with itself
as their token source (:class:`keyturn.integrations.Adapters`), so a source is directly an ``auth=``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol.http import RenewableSource

if TYPE_CHECKING:
    from ..token import Token

__all__ = ["Adapter", "TokenSource"]


#: What an adapter needs of a token source: ``get_token``, ``aget_token`` and ``invalidate`` (the
#: protocol the 401-retry flow's effects ask, :class:`keyturn.protocol.http.RenewableSource`; a
#: source that also has ``async ainvalidate`` is invalidated without a thread).
TokenSource = RenewableSource


class Adapter:
    """Base of the adapters: the token source they authorize with.

    The hooks take each request's token from ``self.get_token()`` (``self.aget_token()``): here they
    forward to the source; in a keyturn source (:class:`keyturn.integrations.Adapters`), which is
    its own adapter, they are the source's own methods, with no property in between on every
    request. The rare 401 is answered with :attr:`token_source` itself.
    """

    def __init__(self, source: TokenSource) -> None:
        self._token_source = source

    @property
    def token_source(self) -> TokenSource:
        return self._token_source

    def get_token(self) -> Token:
        return self._token_source.get_token()

    async def aget_token(self) -> Token:
        return await self._token_source.aget_token()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.token_source!r})"
