"""A token source as an SDK's authorization object: pyFirecREST's ``auth_headers()`` and globus-sdk's
``GlobusAuthorizer`` (``get_authorization_header()`` / ``handle_missing_authorization()``).

Both are duck-typed by their SDKs, so neither is imported here. globus-sdk sends the request and
retries it itself, asking for the header before each attempt and calling
``handle_missing_authorization()`` after a 401, in the same thread, within one call of its own
(globus-sdk is synchronous): the adapter keeps the token it presented in a thread-local, and on the
401 the 401-retry flow (:mod:`keyturn.integrations.retry`) decides, from that token, whether there
is a fresh one to retry with. pyFirecREST never retries a 401, so it only gets the header.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from .base import Adapter
from .retry import UNAUTHORIZED, presented, resume

__all__ = ["SdkAuth"]

_A = TypeVar("_A", bound="SdkAuth")


class SdkAuth(Adapter):
    """``Firecrest(authorization=SdkAuth(source))``, ``TransferClient(authorizer=SdkAuth(source))``;
    every keyturn source is one already."""

    _presented: threading.local

    def __new__(cls: type[_A], *args: Any, **kwargs: Any) -> _A:
        self = super().__new__(cls)
        # ``.token``: the token of the request globus-sdk is sending in this thread. A thread-local,
        # not a context variable: setting one of those costs more than the rest of the hook, and
        # what the header and the 401 have in common is the thread. Made here, not in __init__: a
        # keyturn source is its own adapter and runs no adapter __init__.
        self._presented = threading.local()
        return self

    def auth_headers(self) -> dict[str, str] | Awaitable[dict[str, str]]:
        """``{"Authorization": token.authorization()}``.

        Called on a running event loop while no valid token is cached, it returns an awaitable of
        the headers instead, so an async client that awaits awaitables (pyFirecREST's
        ``AsyncFirecrest``) never blocks its loop on a token request. Inside the refresh leeway the
        valid token is returned at once and the refresh runs in a task.
        """
        # Off an event loop (asyncio's C check: None, no exception raised) nothing can be blocked.
        if _get_running_loop() is not None:
            # Only keyturn's sources can tell, without waiting, that a token request is due.
            needs_wait = getattr(self.token_source, "_needs_wait", None)
            if needs_wait is not None and needs_wait():
                return self.aauth_headers()
        return {"Authorization": self.get_token()._authorization}  # authorization(), rendered once

    async def aauth_headers(self) -> dict[str, str]:
        return {"Authorization": (await self.aget_token()).authorization()}

    # globus-sdk's GlobusAuthorizer protocol.
    def get_authorization_header(self) -> str:
        """The header value for the attempt globus-sdk is about to send: the current token's."""
        token = self.get_token()
        self._presented.token = token
        return token._authorization  # authorization(), rendered when the token was made

    def handle_missing_authorization(self) -> bool:
        """After a 401: the flow invalidates the refused token and gets a fresh one; True when there
        is one, so globus-sdk retries (once: globus-sdk runs this once a request)."""
        source = self.token_source
        presented_here = self._presented
        token = getattr(presented_here, "token", None)
        presented_here.token = None
        if token is None:  # not after our get_authorization_header: the current token was refused
            token = source.get_token()
        return resume(presented(source, token), UNAUTHORIZED) is not None


#: The running event loop or None (asyncio exports it for event loops; get_running_loop raises).
_get_running_loop = asyncio._get_running_loop
