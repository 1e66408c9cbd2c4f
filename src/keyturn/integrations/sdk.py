"""A token source as an SDK's authorization object: pyFirecREST's ``auth_headers()`` and globus-sdk's
``GlobusAuthorizer`` (``get_authorization_header()`` / ``handle_missing_authorization()``).

Both are duck-typed by their SDKs, so neither is imported here. globus-sdk sends the request and
retries it itself, asking for the header before each attempt and calling
``handle_missing_authorization()`` after a 401 (in the same thread): the adapter keeps the token it
presented in a context variable, and on the 401 the 401-retry flow
(:mod:`keyturn.integrations.retry`) decides, from that token, whether there is a fresh one to retry
with. pyFirecREST never retries a 401, so it only gets the header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextvars import ContextVar

from ..token import Token
from .base import Adapter
from .retry import UNAUTHORIZED, drive, presented

__all__ = ["SdkAuth"]

#: The token the request globus-sdk is sending in this context went with: (id of its source, token).
_PRESENTED: ContextVar[tuple[int, Token] | None] = ContextVar("keyturn_globus_presented", default=None)


class SdkAuth(Adapter):
    """``Firecrest(authorization=SdkAuth(source))``, ``TransferClient(authorizer=SdkAuth(source))``;
    every keyturn source is one already."""

    def auth_headers(self) -> dict[str, str] | Awaitable[dict[str, str]]:
        """``{"Authorization": token.authorization()}``.

        Called on a running event loop while no valid token is cached, it returns an awaitable of
        the headers instead, so an async client that awaits awaitables (pyFirecREST's
        ``AsyncFirecrest``) never blocks its loop on a token request. Inside the refresh leeway the
        valid token is returned at once and the refresh runs in a task.
        """
        source = self.token_source
        # Only keyturn's sources can tell, without waiting, that a token request is due.
        needs_wait = getattr(source, "_needs_wait", None)
        if needs_wait is not None and needs_wait() and _on_event_loop():
            return self.aauth_headers()
        return {"Authorization": source.get_token().authorization()}

    async def aauth_headers(self) -> dict[str, str]:
        return {"Authorization": (await self.token_source.aget_token()).authorization()}

    # globus-sdk's GlobusAuthorizer protocol.
    def get_authorization_header(self) -> str:
        """The header value for the attempt globus-sdk is about to send: the current token's."""
        source = self.token_source
        token = source.get_token()
        _PRESENTED.set((id(source), token))
        return token.authorization()

    def handle_missing_authorization(self) -> bool:
        """After a 401: the flow invalidates the refused token and gets a fresh one; True when there
        is one, so globus-sdk retries (once: globus-sdk runs this once a request)."""
        source = self.token_source
        sent = _PRESENTED.get()
        _PRESENTED.set(None)
        # Not after our get_authorization_header: the current token is the one refused.
        token = sent[1] if sent is not None and sent[0] == id(source) else source.get_token()
        return drive(presented(token), source, UNAUTHORIZED) is not None


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
