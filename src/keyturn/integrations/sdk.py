"""A token source as an SDK's authorization object: pyFirecREST's ``auth_headers()`` and globus-sdk's
``GlobusAuthorizer`` (``get_authorization_header()`` / ``handle_missing_authorization()``).

Both are duck-typed by their SDKs, so neither is imported here. globus-sdk sends the request and
retries it itself; this adapter drives the 401-retry flow (:mod:`keyturn.integrations.retry`)
across its two calls, keeping each request's flow in a context variable (globus-sdk makes both calls
of one request in the same thread). pyFirecREST never retries a 401, so it only gets the header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextvars import ContextVar

from .base import Adapter, TokenSource
from .retry import UNAUTHORIZED, AuthFlow, authorize, drive

__all__ = ["SdkAuth"]

#: The flow of the request globus-sdk is sending in this context: (id of its source, the flow).
_SENDING: ContextVar[tuple[int, AuthFlow] | None] = ContextVar("keyturn_globus_flow", default=None)


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
        if _needs_wait(source) and _on_event_loop():
            return self.aauth_headers()
        return {"Authorization": source.get_token().authorization()}

    async def aauth_headers(self) -> dict[str, str]:
        return {"Authorization": (await self.token_source.aget_token()).authorization()}

    # globus-sdk's GlobusAuthorizer protocol.
    def get_authorization_header(self) -> str:
        """The header value for the request globus-sdk is about to send (a new flow each time)."""
        source = self.token_source
        flow = authorize()
        token = drive(flow, source, None)
        _SENDING.set((id(source), flow))
        return token.authorization() if token is not None else ""

    def handle_missing_authorization(self) -> bool:
        """After a 401: tell the flow, which invalidates the refused token and gets a fresh one;
        True when there is one, so globus-sdk retries (once: globus-sdk runs this once a request)."""
        source = self.token_source
        sending = _SENDING.get()
        _SENDING.set(None)
        if sending is None or sending[0] != id(source):
            # Not called after our get_authorization_header: the current token is the refused one.
            flow = authorize()
            drive(flow, source, None)
        else:
            flow = sending[1]
        return drive(flow, source, UNAUTHORIZED) is not None


def _needs_wait(source: TokenSource) -> bool:
    """True when getting a token would wait for a token request. Only keyturn's sources can tell;
    with any other source the token is fetched as it comes."""
    needs_wait = getattr(source, "_needs_wait", None)
    return bool(needs_wait()) if needs_wait is not None else False


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
